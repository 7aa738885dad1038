"""Sample distances, the Gaussian KL, and noise floors.

A sample distance between model samples and target samples is only meaningful next to its
*noise floor*: the same distance between two fresh samples of the target itself. Report
``distance / floor`` (see :func:`relative_to_noise_floor`): about 1 means "as close as the
truth is to itself", much larger means the model is off.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

__all__ = ["mmd", "energy_distance", "sliced_wasserstein", "gaussian_kl", "relative_to_noise_floor", "noise_floor",
           "frechet_distance", "precision_recall", "digits_classifier", "frechet_digits_distance", "digits_scores"]


def _check_pair(x: torch.Tensor, y: torch.Tensor, fn: str) -> tuple[torch.Tensor, torch.Tensor]:
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{fn} expects torch tensors of shape [N, D]; {name} is a {type(t).__name__}")
        if t.ndim != 2:
            raise ValueError(f"{fn} expects samples of shape [N, D]; {name} has shape {tuple(t.shape)}")
        if len(t) < 2:
            raise ValueError(f"{fn} needs at least 2 samples in each set; {name} has {len(t)}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{fn}: {name} contains NaN or inf values")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"{fn}: x and y must have the same dimension D, got {x.shape[1]} and {y.shape[1]}")
    return x.detach().double(), y.detach().double().to(x.device)


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidths: tuple[float, ...] | None = None) -> float:
    """Unbiased estimate of the squared MMD with a sum of RBF kernels ``exp(-|a-b|^2 / (2 h^2))``.

    ``x: [N, D]``, ``y: [M, D]``. ``bandwidths`` default to the median pairwise distance of the
    pooled sample times ``(0.25, 0.5, 1, 2, 4)``. Returns a float (can be slightly negative
    when the distributions are equal, since the estimator is unbiased).
    """
    x, y = _check_pair(x, y, "mmd")
    if bandwidths is None:
        z = torch.cat([x, y])[:2000]
        med = torch.pdist(z).median().clamp_min(1e-12)
        bandwidths = tuple(float(med) * s for s in (0.25, 0.5, 1.0, 2.0, 4.0))
    dxx, dyy, dxy = torch.cdist(x, x).pow(2), torch.cdist(y, y).pow(2), torch.cdist(x, y).pow(2)
    n, m = len(x), len(y)
    total = 0.0
    for h in bandwidths:
        kxx, kyy, kxy = (torch.exp(-d / (2 * h * h)) for d in (dxx, dyy, dxy))
        total += float((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
                       + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * kxy.mean())
    return total


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` (U-statistics for the within-set terms).

    ``x: [N, D]``, ``y: [M, D]``. Zero exactly when the distributions are equal.
    """
    x, y = _check_pair(x, y, "energy_distance")
    n, m = len(x), len(y)
    exy = torch.cdist(x, y).mean()
    exx = torch.cdist(x, x).sum() / (n * (n - 1))
    eyy = torch.cdist(y, y).sum() / (m * (m - 1))
    return float(2 * exy - exx - eyy)


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, n_projections: int = 256, p: int = 2,
                       seed: int = 0) -> float:
    """Sliced Wasserstein-p distance, ``(E_theta W_p^p(theta.x, theta.y))^(1/p)`` over random unit directions.

    ``x: [N, D]``, ``y: [M, D]``; when ``N != M`` the 1-D quantile functions are compared on a
    common grid. Directions come from a fixed ``seed``, so the value is reproducible.
    """
    x, y = _check_pair(x, y, "sliced_wasserstein")
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(x.shape[1], n_projections, generator=g, dtype=torch.float64).to(x.device)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, _ = torch.sort(x @ theta, dim=0)
    py, _ = torch.sort(y @ theta, dim=0)
    if len(px) != len(py):
        q = (torch.arange(max(len(px), len(py)), dtype=torch.float64, device=x.device) + 0.5) / max(len(px), len(py))
        px = px[(q * len(px)).long()]
        py = py[(q * len(py)).long()]
    return float((px - py).abs().pow(p).mean() ** (1.0 / p))


def gaussian_kl(mu_q: torch.Tensor, logvar_q: torch.Tensor,
                mu_p: torch.Tensor | float = 0.0, logvar_p: torch.Tensor | float = 0.0) -> torch.Tensor:
    """``KL(N(mu_q, diag exp(logvar_q)) || N(mu_p, diag exp(logvar_p)))``, summed over the last dimension.

    Shapes broadcast; the result has the broadcast shape without its last dimension. The default
    ``p`` is the standard normal, as in the VAE's KL term:
    ``0.5 * sum(exp(lq - lp) + (mu_q - mu_p)^2 / exp(lp) - 1 + lp - lq)``.
    """
    mu_q, logvar_q = torch.as_tensor(mu_q), torch.as_tensor(logvar_q)
    mu_p = torch.as_tensor(mu_p, dtype=mu_q.dtype, device=mu_q.device)
    logvar_p = torch.as_tensor(logvar_p, dtype=mu_q.dtype, device=mu_q.device)
    if mu_q.ndim == 0:
        raise ValueError("gaussian_kl expects tensors with a last (event) dimension, e.g. shape [B, D]")
    kl = 0.5 * (torch.exp(logvar_q - logvar_p) + (mu_q - mu_p) ** 2 / torch.exp(logvar_p) - 1 + logvar_p - logvar_q)
    return kl.sum(-1)


def _check_repeats(repeats, fn: str) -> None:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"{fn}: repeats must be a positive whole number, got {repeats!r}")


def relative_to_noise_floor(distance: Callable[[torch.Tensor, torch.Tensor], float], samples: torch.Tensor,
                            sample_truth: Callable[[int], torch.Tensor], repeats: int = 1) -> dict[str, float]:
    """A sample distance next to its noise floor.

    ``distance(samples, truth_1)`` is compared with ``distance(truth_2, truth_1)`` where ``truth_1``
    and ``truth_2`` are two fresh draws of ``len(samples)`` points from ``sample_truth(n)``.
    Returns ``{"distance", "floor", "ratio"}``; a ratio near 1 means the model's samples are as
    close to the truth as the truth is to itself. Both numbers are noisy (a fresh sample of the truth scores
    0.4-0.8 against one unlucky floor of 2000 points on the toys): ``repeats=k`` averages each over ``k`` pairs of
    fresh draws (``truth_1``, ``truth_2``), taken in that order from ``sample_truth``.
    """
    _check_repeats(repeats, "relative_to_noise_floor")
    n = len(samples)
    ds, floors = [], []
    for _ in range(repeats):
        ref, fresh = sample_truth(n), sample_truth(n)
        if torch.equal(torch.as_tensor(ref), torch.as_tensor(fresh)):
            raise ValueError("relative_to_noise_floor: sample_truth(n) returned the same points twice, so the floor "
                             "would be 0; draw from one generator that advances (not one seeded anew inside sample_truth)")
        ds.append(float(distance(samples, ref)))
        floors.append(float(distance(fresh, ref)))
    d, floor = sum(ds) / repeats, sum(floors) / repeats
    if min(ds) < 0 or min(floors) < 0:
        raise ValueError(f"relative_to_noise_floor: the distance came out negative ({min(ds):.3g}, floor "
                         f"{min(floors):.3g}), so their ratio means nothing; use a distance that is never negative, such "
                         "as sliced_wasserstein (the unbiased energy_distance can be negative when the samples match)")
    ratio = d / floor if floor > 0 else math.inf
    return {"distance": d, "floor": floor, "ratio": ratio}


def noise_floor(statistic: Callable[[torch.Tensor], float | tuple[float, ...]], pool: torch.Tensor, n: int, *,
                repeats: int = 5, seed: int = 0) -> dict:
    """The noise floor of a comparison **at its own sample size**: the statistic a perfect model would get.

    ``statistic(samples)`` compares ``samples [n, ...]`` with a fixed reference set (which it holds itself), e.g.
    ``lambda s: frechet_digits_distance(s, x_test)`` or ``lambda s: precision_recall(x_test, s)``; it returns a float
    or a tuple of floats. The model's samples are replaced by ``n`` fresh real samples, drawn without replacement
    from ``pool [N, ...]`` (real data **disjoint from the reference**: the caller's duty), ``repeats`` times with a
    seeded generator. Statistics such as the Fréchet distance are biased by the sample sizes (fewer samples, larger
    distance), so a model evaluated on ``n`` samples must be compared with the floor at that same ``n``.

    Returns ``{"mean", "std", "values", "n"}``; ``mean`` and ``std`` (over the repeats) are floats, or tuples when
    ``statistic`` returns tuples. The chapters' toys use :func:`relative_to_noise_floor` (a sampler for the truth);
    this one serves finite data sets such as the digits.
    """
    if not isinstance(pool, torch.Tensor) or pool.ndim < 2:
        raise ValueError(f"noise_floor: pool must be a tensor of real samples [N, ...], got "
                         f"{type(pool).__name__ if not isinstance(pool, torch.Tensor) else tuple(pool.shape)}")
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= len(pool):
        raise ValueError(f"noise_floor: n must be a whole number of samples in 2..{len(pool)} (the pool's size), got {n!r}")
    _check_repeats(repeats, "noise_floor")
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(repeats):
        idx = torch.randperm(len(pool), generator=g)[:n].to(pool.device)
        v = statistic(pool[idx])
        values.append(tuple(float(a) for a in v) if isinstance(v, (tuple, list)) else float(v))
    t = torch.tensor(values, dtype=torch.float64)
    mean = t.mean(0)
    std = t.std(0) if repeats > 1 else torch.zeros_like(mean)
    if t.ndim == 1:
        return {"mean": float(mean), "std": float(std), "values": values, "n": n}
    return {"mean": tuple(mean.tolist()), "std": tuple(std.tolist()), "values": values, "n": n}


# --- evaluation without a likelihood (chapter 05) ------------------------------------------------------------------
def _as_f64(t, name: str, fn: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(t)
    except Exception as err:  # noqa: BLE001
        raise TypeError(f"{fn}: {name} should be a tensor or an array, got {type(t).__name__}") from err
    t = t.detach().to("cpu", torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError(f"{fn}: {name} contains NaN or inf values")
    return t


def _psd_sqrt(s: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a (numerically) positive semi-definite matrix; negative round-off eigenvalues -> 0."""
    w, v = torch.linalg.eigh(0.5 * (s + s.T))
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The Fréchet distance of FID: the **squared** 2-Wasserstein distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``,

    ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^{1/2} S2 S1^{1/2})^{1/2})``.

    ``mu: [D]``, ``sigma: [D, D]`` (tensors or arrays). The trace term uses the symmetric form with ``eigh`` in float64
    (never ``sqrtm(S1 @ S2)`` of a non-symmetric product), so the result is real and ``>= 0`` even for nearly singular,
    non-commuting covariances. Take ``math.sqrt`` of it for W2 itself.
    """
    fn = "frechet_distance"
    mu1, mu2 = _as_f64(mu1, "mu1", fn), _as_f64(mu2, "mu2", fn)
    s1, s2 = _as_f64(sigma1, "sigma1", fn), _as_f64(sigma2, "sigma2", fn)
    if mu1.ndim != 1 or mu2.shape != mu1.shape:
        raise ValueError(f"{fn}: the means must be vectors of the same length [D], got {tuple(mu1.shape)} and {tuple(mu2.shape)}")
    d = len(mu1)
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if s.shape != (d, d):
            raise ValueError(f"{fn}: {name} must be a [D, D] = [{d}, {d}] covariance matrix, got shape {tuple(s.shape)}")
        if not torch.allclose(s, s.T, atol=1e-8 * (1 + float(s.abs().max()))):
            raise ValueError(f"{fn}: {name} is not symmetric; pass a covariance matrix")
    r1 = _psd_sqrt(s1)
    m = r1 @ s2 @ r1
    trace_sqrt = torch.linalg.eigvalsh(0.5 * (m + m.T)).clamp_min(0).sqrt().sum()
    fd = (mu1 - mu2).pow(2).sum() + torch.diagonal(s1).sum() + torch.diagonal(s2).sum() - 2 * trace_sqrt
    return max(float(fd), 0.0)


def _kth_nn_radius(x: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest *other* row of x."""
    out = []
    for rows in x.split(chunk):
        d = torch.cdist(rows, x)
        out.append(d.kthvalue(k + 1, dim=1).values)       # the smallest value is the point itself (0)
    return torch.cat(out)


def _inside_any_ball(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    out = []
    for rows in points.split(chunk):
        out.append((torch.cdist(rows, centres) <= radii[None, :]).any(dim=1))
    return torch.cat(out)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al., 2019) by k-nearest-neighbour manifolds.

    ``real: [N, D]`` (samples of the data), ``fake: [M, D]`` (samples of the model). Each set's manifold is the union of
    balls around its points with radius the distance to the point's ``k``-th nearest neighbour in its own set; a point is
    inside when its distance to some centre is ``<=`` that centre's radius.
    Returns ``(precision, recall)``: precision = share of *fake* points inside the *real* manifold (quality),
    recall = share of *real* points inside the *fake* manifold (coverage).
    """
    real, fake = _check_pair(real, fake, "precision_recall")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"precision_recall: k must be a positive whole number, got {k!r}")
    if k >= min(len(real), len(fake)):
        raise ValueError(f"precision_recall: k = {k} needs more than k points in each set, got {len(real)} and {len(fake)}")
    precision = _inside_any_ball(fake, real, _kth_nn_radius(real, k)).double().mean()
    recall = _inside_any_ball(real, fake, _kth_nn_radius(fake, k)).double().mean()
    return float(precision), float(recall)


class DigitsClassifier(torch.nn.Module):
    """A small MLP classifier of the 8x8 digits (64 -> 128 -> ``n_features`` -> 10), trained by :func:`digits_classifier`.

    ``features(x) -> [N, F]`` is the ``tanh`` layer before the output (the feature space of the Fréchet digits distance),
    ``logits(x) -> [N, 10]``. ``x`` is ``[N, 64]`` or ``[N, 1, 8, 8]`` with pixels in ``[0, 1]`` (as ``load_digits`` returns).
    """

    def __init__(self, n_features: int = 32, hidden: int = 128):
        super().__init__()
        self.hidden = torch.nn.Linear(64, hidden)
        self.feature = torch.nn.Linear(hidden, n_features)
        self.out = torch.nn.Linear(n_features, 10)
        self.test_accuracy = float("nan")

    @staticmethod
    def _flat(x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"the digits classifier expects a torch tensor, got {type(x).__name__}")
        if x.ndim < 2 or x[0].numel() != 64:
            raise ValueError(f"the digits classifier expects 8x8 images as [N, 64] or [N, 1, 8, 8], got shape {tuple(x.shape)}")
        return x.reshape(len(x), 64)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.feature(torch.relu(self.hidden(x))))

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 64]`` images -> ``[N, F]`` features (float32, on ``x``'s device)."""
        w = self.hidden.weight
        return self._features(self._flat(x).to(w)).to(x.device, torch.float32)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 64]`` images -> ``[N, 10]`` class logits (float32, on ``x``'s device)."""
        w = self.hidden.weight
        return self.out(self._features(self._flat(x).to(w))).to(x.device, torch.float32)


_DIGITS_CLASSIFIER: list = []


def digits_classifier() -> DigitsClassifier:
    """The course's own digits classifier (no downloaded weights): trained once per process, deterministically, on CPU.

    Full-batch Adam on the 1438 training digits for 200 steps (under a second on one core), from weights drawn with a
    local ``torch.Generator``: the caller's random state is untouched. It is then kept in float64 (features for the
    Fréchet distance). ``.test_accuracy`` is measured on the 359 test digits.
    """
    if _DIGITS_CLASSIFIER:
        return _DIGITS_CLASSIFIER[0]
    from .data import load_digits  # local: keep metrics importable without scikit-learn's data

    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):             # nn.Linear's default initialisation draws from the global RNG
        model = DigitsClassifier().float()
    with torch.no_grad():
        for layer in (model.hidden, model.feature, model.out):
            bound = 1 / math.sqrt(layer.in_features)
            layer.weight.copy_((torch.rand(layer.weight.shape, generator=g) * 2 - 1) * bound)
            layer.bias.zero_()
    x, y = load_digits("train")
    x = x.reshape(len(x), 64).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    with torch.enable_grad():  # also when the first call comes from inside torch.no_grad()
        for _ in range(200):
            loss = torch.nn.functional.cross_entropy(model.out(model._features(x)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.double().eval().requires_grad_(False)
    x_test, y_test = load_digits("test")
    model.test_accuracy = float((model.logits(x_test).argmax(1) == y_test).double().mean())
    _DIGITS_CLASSIFIER.append(model)
    return model


def frechet_digits_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Fréchet distance between two sets of 8x8 digit images (``[N, 64]`` or ``[N, 1, 8, 8]``, pixels in ``[0, 1]``) in the
    feature space of :func:`digits_classifier`: the course's small, offline stand-in for FID. Report it next to its noise
    floor at the same sample sizes (:func:`noise_floor`: real digits in place of the model's, as many as it had)."""
    clf = digits_classifier()
    stats = []
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"frechet_digits_distance expects torch tensors, {name} is a {type(t).__name__}")
        if len(t) < 2:
            raise ValueError(f"frechet_digits_distance needs at least 2 images in each set; {name} has {len(t)}")
        if not torch.isfinite(t).all():
            raise ValueError(f"frechet_digits_distance: {name} contains NaN or inf values")
        f = clf._features(clf._flat(t).detach().to("cpu", torch.float64))
        stats.append((f.mean(0), torch.cov(f.T)))
    return frechet_distance(stats[0][0], stats[0][1], stats[1][0], stats[1][1])


def digits_scores(samples: torch.Tensor, reference: torch.Tensor, k: int = 3) -> tuple[float, float, float]:
    """``(Fréchet digits distance, precision, recall)`` of ``samples`` against real ``reference`` digits (``[N, 64]`` or
    ``[N, 1, 8, 8]``, pixels in ``[0, 1]``), all three in the feature space of :func:`digits_classifier`; precision and
    recall by :func:`precision_recall` ``(reference features, sample features, k)``. One call for every model the
    chapters compare; its noise floor at the same sample size is
    ``noise_floor(lambda s: digits_scores(s, reference), real_pool, len(samples))``."""
    clf = digits_classifier()
    fd = frechet_digits_distance(samples, reference)
    precision, recall = precision_recall(clf.features(reference), clf.features(samples), k)
    return fd, precision, recall
