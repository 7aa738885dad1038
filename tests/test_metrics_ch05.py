"""Chapter 05's metrics: the Fréchet distance, k-NN precision and recall, the course's digits classifier and the
Fréchet digits distance."""

import math

import pytest
import torch

from course_utils.data import load_digits
from course_utils.metrics import (digits_classifier, frechet_digits_distance, frechet_distance, noise_floor,
                                  precision_recall)


def _rotation(a):
    return torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)


# --- Fréchet distance ---------------------------------------------------------------------------------------------
def test_frechet_distance_1d_is_the_squared_w2():
    # W2^2(N(m1, s1^2), N(m2, s2^2)) = (m1 - m2)^2 + (s1 - s2)^2
    fd = frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([-0.5]), torch.tensor([[0.25]]))
    assert fd == pytest.approx(1.5**2 + (2.0 - 0.5) ** 2, abs=1e-12)


def test_frechet_distance_non_commuting_2x2_closed_form():
    # for 2x2 PSD M: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)); with M = S1^1/2 S2 S1^1/2, tr M = tr(S1 S2), det M = det S1 det S2
    s1 = torch.tensor([[3.0, 0.0], [0.0, 0.2]], dtype=torch.float64)
    r = _rotation(0.7)
    s2 = r @ torch.diag(torch.tensor([2.0, 0.05], dtype=torch.float64)) @ r.T
    assert not torch.allclose(s1 @ s2, s2 @ s1)                       # they do not commute
    mu1, mu2 = torch.tensor([0.3, -1.0], dtype=torch.float64), torch.tensor([1.0, 0.5], dtype=torch.float64)
    tr_sqrt = math.sqrt(torch.trace(s1 @ s2).item() + 2 * math.sqrt(torch.det(s1).item() * torch.det(s2).item()))
    expected = ((mu1 - mu2) ** 2).sum().item() + torch.trace(s1).item() + torch.trace(s2).item() - 2 * tr_sqrt
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, abs=1e-10)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(expected, abs=1e-10)   # symmetric
    # commuting (diagonal) case: sum (sqrt a - sqrt b)^2; arrays work too
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 0.0])
    fd = frechet_distance(torch.zeros(3).numpy(), torch.diag(a).numpy(), torch.zeros(3).numpy(), torch.diag(b).numpy())
    assert fd == pytest.approx(((a.sqrt() - b.sqrt()) ** 2).sum().item(), abs=1e-10)


def test_frechet_distance_is_real_and_nonnegative_for_nearly_singular_non_commuting_covariances():
    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        d = 16
        a = torch.randn(d, 3, generator=g, dtype=torch.float64)          # rank 3 in 16-D
        s1 = a @ a.T + 1e-12 * torch.eye(d, dtype=torch.float64)
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
        s2 = q @ s1 @ q.T                                               # same spectrum, rotated: does not commute
        fd = frechet_distance(torch.zeros(d), s1, torch.zeros(d), s2)
        assert isinstance(fd, float) and math.isfinite(fd) and fd >= 0
        same = frechet_distance(torch.zeros(d), s1, torch.zeros(d), s1.clone())
        assert 0 <= same < 1e-6 * torch.trace(s1).item()                # identical singular Gaussians: 0, never negative
    # a 1e-10-scaled covariance against itself: exactly representable round-off must not go negative
    tiny = 1e-10 * torch.eye(5, dtype=torch.float64)
    assert frechet_distance(torch.zeros(5), tiny, torch.zeros(5), tiny) >= 0


def test_frechet_distance_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        frechet_distance(torch.zeros(2), torch.eye(2), torch.zeros(3), torch.eye(3))
    with pytest.raises(ValueError, match=r"\[D, D\]"):
        frechet_distance(torch.zeros(2), torch.eye(3), torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match="not symmetric"):
        frechet_distance(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]), torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(torch.tensor([float("nan"), 0.0]), torch.eye(2), torch.zeros(2), torch.eye(2))


# --- precision and recall -------------------------------------------------------------------------------------------
def _line(*xs):
    return torch.tensor([[x, 0.0] for x in xs], dtype=torch.float64)


def test_precision_recall_by_hand():
    # real {0, 1, 2, 3}: 1st-NN radius 1 each. fake {0.5, 1.5, 10}: 0.5 and 1.5 are inside, 10 is not -> precision 2/3.
    # fake radii (1st NN in fake): 1, 1, 8.5; real 0, 1, 2 are within 1 of 0.5 or 1.5; real 3 is within 8.5 of 10 -> recall 1
    p, r = precision_recall(_line(0, 1, 2, 3), _line(0.5, 1.5, 10), k=1)
    assert p == pytest.approx(2 / 3) and r == pytest.approx(1.0)
    # k = 2: real radii are 2, 1, 1, 2 -> fake 10 still outside; fake radii 8.5, 8.5, 9.5 -> everything inside
    p, r = precision_recall(_line(0, 1, 2, 3), _line(0.5, 1.5, 10), k=2)
    assert p == pytest.approx(2 / 3) and r == pytest.approx(1.0)
    # the boundary counts as inside (<=): fake 2 is exactly at distance 1 = the radius of real 1
    p, _ = precision_recall(_line(0, 1), _line(2, 2.0 + 1e-9, 40), k=1)
    assert p == pytest.approx(1 / 3)


def test_precision_recall_argument_order_tight_fake_inside_wide_real():
    g = torch.Generator().manual_seed(0)
    real = 3.0 * torch.randn(2000, 2, generator=g)             # a wide real cloud
    fake = 0.3 * torch.randn(2000, 2, generator=g)             # a tight generated cluster in its middle
    precision, recall = precision_recall(real, fake, k=3)
    assert precision > 0.95 and recall < 0.2                    # every fake point is realistic; most real points are missed
    p_same, r_same = precision_recall(real, 3.0 * torch.randn(2000, 2, generator=g), k=3)
    assert p_same > 0.9 and r_same > 0.9


def test_precision_recall_rejects_bad_input():
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match="k must be"):
        precision_recall(x, x, k=0)
    with pytest.raises(ValueError, match="more than k points"):
        precision_recall(x, x[:3], k=3)
    with pytest.raises(ValueError, match="same dimension"):
        precision_recall(x, torch.randn(10, 3))


# --- the digits classifier and the Fréchet digits distance ------------------------------------------------------------
def test_digits_classifier_is_accurate_cached_and_leaves_the_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    clf = digits_classifier()
    assert torch.equal(torch.get_rng_state(), before)            # the caller's random state is untouched
    assert digits_classifier() is clf                            # cached per process
    assert clf.test_accuracy > 0.95
    x, y = load_digits("test")
    assert clf.features(x).shape == (len(x), 32) and clf.features(x.reshape(len(x), 64)).shape == (len(x), 32)
    logits = clf.logits(x.reshape(len(x), 64))
    assert logits.shape == (len(x), 10) and logits.dtype == torch.float32
    assert (logits.argmax(1) == y).double().mean().item() == pytest.approx(clf.test_accuracy)
    with pytest.raises(ValueError, match=r"\[N, 64\]"):
        clf.features(torch.zeros(3, 10))


def test_frechet_digits_distance_separates_digits_from_noise():
    x_train, y_train = load_digits("train")
    x_test, _ = load_digits("test")
    floor = frechet_digits_distance(x_train[:700], x_train[700:1400])
    assert frechet_digits_distance(x_test, x_test) < 1e-9
    assert frechet_digits_distance(x_train, x_test) < 2 * floor + 0.1
    noise = torch.rand(700, 64, generator=torch.Generator().manual_seed(0))
    assert frechet_digits_distance(x_train[:700], noise) > 10 * floor
    only_ones = x_train[y_train == 1]                               # mode dropping: one class out of ten
    assert frechet_digits_distance(x_train[:700], only_ones) > 10 * floor
    with pytest.raises(ValueError, match="at least 2"):
        frechet_digits_distance(x_train[:1], x_test)


# --- noise floors at matched sample sizes -----------------------------------------------------------------------------
def test_noise_floor_draws_fresh_subsets_of_the_requested_size_reproducibly():
    pool = torch.arange(100, dtype=torch.float64).reshape(50, 2)
    seen = []

    def stat(s):
        seen.append(s.clone())
        return float(s.shape[0]), float(s[:, 0].sum())

    out = noise_floor(stat, pool, 7, repeats=4, seed=3)
    assert out["n"] == 7 and len(out["values"]) == 4 and out["mean"][0] == 7.0 and out["std"][0] == 0.0
    for s in seen:                                                   # rows of the pool, without replacement
        assert len({tuple(r.tolist()) for r in s}) == 7 and all(((pool == r).all(1)).any() for r in s)
    assert len({tuple(s[:, 0].tolist()) for s in seen}) == 4          # four different draws
    again = noise_floor(stat, pool, 7, repeats=4, seed=3)
    assert again["values"] == out["values"]                          # seeded
    single = noise_floor(lambda s: s.mean(), pool, 50, repeats=2)
    assert single["mean"] == pytest.approx(pool.mean().item()) and single["std"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="n must be"):
        noise_floor(stat, pool, 51)
    with pytest.raises(ValueError, match="repeats"):
        noise_floor(stat, pool, 5, repeats=0)
    with pytest.raises(ValueError, match="pool"):
        noise_floor(stat, [1, 2, 3], 2)


def test_the_frechet_floor_depends_on_the_sample_size():
    # the Fréchet distance is biased upwards for small sets: a floor measured at another size misleads
    x_train, _ = load_digits("train")
    x_test, _ = load_digits("test")
    floors = {n: noise_floor(lambda s: frechet_digits_distance(s, x_test), x_train, n, repeats=3)["mean"]
              for n in (100, 300, 1000)}
    assert floors[100] > 1.5 * floors[1000] and floors[100] > floors[300] > floors[1000]
    # the whole training set against the test set is as close as a perfect model's 1000 samples
    assert frechet_digits_distance(x_train[:1000], x_test) < 1.5 * floors[1000]
