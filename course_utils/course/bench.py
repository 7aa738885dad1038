"""``course bench notebooks``: run every lecture and homework solution top to bottom and compare with its budget.

Budgets (DESIGN.md): a lecture notebook in at most 120 s, a homework solution in at most 60 s, on a 2-core CPU.
This is a measurement, not a test: it prints a table and exits non-zero only when a notebook fails or is over budget.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time

import nbformat
from nbclient import NotebookClient

from .pipeline import Course, notebook_text

BUDGETS = {"lecture": 120.0, "solution": 60.0}


def run_notebook(src) -> float:
    """Execute the notebook built from percent source ``src`` in a fresh kernel; return wall-clock seconds."""
    nb = nbformat.reads(notebook_text(src), as_version=4)
    os.environ.setdefault("TQDM_DISABLE", "1")
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(src.parent)}}).execute()
    return time.perf_counter() - t0


def _spin(stop) -> None:  # pragma: no cover - runs in a child process
    while not stop.is_set():
        sum(i * i for i in range(10_000))


@contextlib.contextmanager
def busy_processes(n: int):
    """Run ``n`` CPU-bound processes for the duration of the block: the "one other busy process" of a laptop
    with a browser, JupyterLab and a second kernel open."""
    stop = multiprocessing.Event()
    procs = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        yield
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()


def bench_notebooks(course: Course, log=print, busy: int = 0, only: list[str] | None = None) -> int:
    """Time every lecture and solution (or those named in ``only``) with ``busy`` other CPU-bound processes running.

    Prints the thread count the course's policy gives the kernels (:func:`course_utils.default_threads`, which
    ``$COURSE_THREADS`` overrides) and the load average before and after each notebook.
    """
    from .. import default_threads
    from .pipeline import _select

    rows, bad = [], 0
    jobs = ([("lecture", s) for s in _select(course.lecture_sources, only)]
            + [("solution", s) for s in _select(course.homework_sources, only)])
    log(f"cpus: {os.cpu_count()}, threads per kernel: {default_threads()} "
        f"(COURSE_THREADS={os.environ.get('COURSE_THREADS', 'unset')}), other busy processes: {busy}")
    log(f"{'notebook':44s}{'kind':>10s}{'seconds':>10s}{'budget':>9s}  {'load before/after':>18s}  verdict")
    with busy_processes(busy):
        for kind, src in jobs:
            load0 = os.getloadavg()[0]
            try:
                secs = run_notebook(src)
                verdict = "ok" if secs <= BUDGETS[kind] else "OVER"
            except Exception as err:  # noqa: BLE001
                secs, verdict = float("nan"), f"FAILED: {type(err).__name__}"
            bad += verdict != "ok"
            rows.append((src.stem, kind, secs, verdict))
            load = f"{load0:.1f} / {os.getloadavg()[0]:.1f}"
            log(f"{src.stem:44s}{kind:>10s}{secs:10.1f}{BUDGETS[kind]:9.0f}  {load:>18s}  {verdict}")
    return 1 if bad else 0


# ---------------------------------------------------------------------------------------------
# course bench flows
# ---------------------------------------------------------------------------------------------
def _flow_models() -> dict:
    from ..flows import Flow, maf_flow, realnvp, standardize

    return {
        "NICE": lambda x: Flow([standardize(x), *realnvp(2, n_layers=8, hidden=(64, 64), additive=True).layers]),
        "RealNVP": lambda x: Flow([standardize(x), *realnvp(2, n_layers=8, hidden=(64, 64)).layers]),
        "MAF": lambda x: maf_flow(2, n_layers=8, hidden=(64, 64), data=x),
    }


def _zuko_models() -> dict:
    """zuko's flows (an optional extra, not a course dependency), wrapped to expose ``log_prob`` on standardised data."""
    try:
        import zuko
    except ImportError:
        return {}
    import torch

    from ..flows import standardize

    class ZukoFlow(torch.nn.Module):
        def __init__(self, flow, x):
            super().__init__()
            self.pre, self.flow = standardize(x), flow

        def log_prob(self, x):
            z, log_det = self.pre(x)
            return self.flow().log_prob(z) + log_det

    return {
        "zuko MAF": lambda x: ZukoFlow(zuko.flows.MAF(features=2, transforms=8, hidden_features=(64, 64)), x),
        "zuko NSF": lambda x: ZukoFlow(zuko.flows.NSF(features=2, transforms=4, hidden_features=(64, 64)), x),
    }


def bench_flows(seconds: float = 10.0, targets=None, models=None, log=print) -> list[dict]:
    """Train each model on each toy target for ``seconds`` of wall clock; print and return the table."""
    from ..data import TOY_NAMES
    from ..training import fit_toy_density, format_table

    zoo = {**_flow_models(), **_zuko_models()}
    chosen = list(models or zoo)
    unknown = [m for m in chosen if m not in zoo]
    if unknown:
        raise SystemExit(f"course bench flows: unknown model(s) {unknown}; known: {', '.join(zoo)}")
    if not any(m.startswith("zuko") for m in zoo):
        log("(zuko is not installed: `pip install zuko` to compare with its MAF and NSF)")
    rows = []
    columns = ["target", "model", "test NLL", "entropy", "KL gap", "± s.e.", "seconds", "steps", "params"]
    for target in targets or TOY_NAMES:
        for name in chosen:
            _, _, row = fit_toy_density(zoo[name], target, steps=None, seconds=seconds, batch_size=1024, lr=5e-3,
                                        progress=False)
            rows.append({"model": name, **row})
            log(f"  {target:>12s}  {name:>9s}: KL gap {row['KL gap']:.3f} nats after {row['steps']} steps")
    log("")
    log(format_table(rows, columns))
    return rows
# ---------------------------------------------------------------------------------------------
# course bench models
# ---------------------------------------------------------------------------------------------
def _model_families(seconds: float, device) -> dict:
    """Every model family of the course that has a likelihood and a sampler, as ``name -> train(x_train)`` returning
    ``(log_prob(x), sample(n, generator) -> (x, nfe), n_params)``. Each trains for ``seconds`` of wall clock."""
    import torch

    from ..diffusion import Schedule, train_ddpm
    from ..flow_matching import fm_log_prob, fm_sample, train_flow_matching
    from ..flows import maf_flow
    from ..ode import VPSDE, CountNFE, eps_to_score_fn, ode_log_likelihood, odeint
    from ..training import fit

    def n_params(m):
        return sum(p.numel() for p in m.parameters())

    def maf(x):
        flow = maf_flow(2, n_layers=8, hidden=(64, 64), data=x).to(device)
        data = x.to(device)
        gen = torch.Generator().manual_seed(0)
        fit(lambda: -flow.log_prob(data[torch.randint(len(data), (1024,), generator=gen).to(device)]).mean(), flow,
            seconds=seconds, lr=5e-3, progress=False)
        n_made = sum(1 for layer in flow.layers if hasattr(layer, "made"))
        return flow.log_prob, lambda n, g: (flow.sample(n, generator=g), 2 * max(1, n_made)), n_params(flow)

    def ddpm(x):
        T = 1000
        chain, sde = Schedule.linear(T), VPSDE()
        model, _ = train_ddpm(x.to(device), chain, hidden=128, depth=3, steps=None, seconds=seconds, batch=256,
                              progress=False)
        model.eval()
        eps_fn = lambda xt, t: model(xt, t)  # noqa: E731
        pf = sde.reverse(eps_to_score_fn(eps_fn, sde, T), probability_flow=True)

        def log_prob(xs):
            return ode_log_likelihood(pf.ode_field, xs, t_data=1e-3, t_noise=1.0, steps=100, method="heun")

        def sample(n, g):
            f = CountNFE(pf.ode_field)
            z = torch.randn(n, 2, generator=g).to(device)
            with torch.no_grad():
                out = odeint(f, z, torch.linspace(1.0, 1e-3, 51, device=device), "heun")[-1]
            return out, f.nfe

        return log_prob, sample, n_params(model)

    def fm(coupling):
        def train(x):
            model, _ = train_flow_matching(x.to(device), coupling=coupling, steps=None, seconds=seconds, hidden=128,
                                           lr=1e-2, progress=False)
            model.eval()
            return (lambda xs: fm_log_prob(model, xs, steps=50),
                    lambda n, g: fm_sample(model, n, 2, steps=25, generator=g, device=device), n_params(model))
        return train

    zoo = {"MAF (ch. 02)": maf, "DDPM, PF-ODE (ch. 07)": ddpm, "FM, independent (ch. 08)": fm("independent"),
           "FM, OT (ch. 08)": fm("ot")}
    nsf = _zuko_models().get("zuko NSF")
    if nsf is not None:  # optional peer: the same budget, same data
        def zuko_nsf(x):
            model = nsf(x).to(device)
            data = x.to(device)
            gen = torch.Generator().manual_seed(0)
            fit(lambda: -model.log_prob(data[torch.randint(len(data), (1024,), generator=gen).to(device)]).mean(),
                model, seconds=seconds, lr=5e-3, progress=False)

            def sample(n, g):
                torch.manual_seed(int(torch.randint(2**31, (1,), generator=g)))
                with torch.no_grad():
                    return model.pre.inverse(model.flow().sample((n,)))[0], 1
            return model.log_prob, sample, n_params(model)
        zoo["zuko NSF (optional)"] = zuko_nsf
    try:
        from torchcfm.conditional_flow_matching import ExactOptimalTransportConditionalFlowMatcher
    except ImportError:
        ExactOptimalTransportConditionalFlowMatcher = None
    if ExactOptimalTransportConditionalFlowMatcher is not None:  # optional peer: its OT-CFM targets, our network
        from ..flow_matching import VelocityMLP

        def torchcfm_ot(x):
            model, matcher = VelocityMLP(2, 128, 3).to(device), ExactOptimalTransportConditionalFlowMatcher(sigma=0.0)
            data = x.to(device)
            gen = torch.Generator().manual_seed(0)

            def loss():
                x1 = data[torch.randint(len(data), (256,), generator=gen).to(device)]
                t, xt, ut = matcher.sample_location_and_conditional_flow(torch.randn_like(x1), x1)
                return ((model(t, xt) - ut) ** 2).sum(-1).mean()

            fit(loss, model, seconds=seconds, lr=1e-2, progress=False)
            model.eval()
            return (lambda xs: fm_log_prob(model, xs, steps=50),
                    lambda n, g: fm_sample(model, n, 2, steps=25, generator=g, device=device), n_params(model))
        zoo["torchcfm OT-CFM (optional)"] = torchcfm_ot
    return zoo


def bench_models(seconds: float = 20.0, targets=None, models=None, n_test: int = 5000, log=print) -> list[dict]:
    """Train every model family on every toy target for ``seconds`` of wall clock; print and return the table:
    test NLL, entropy, KL gap ± s.e. (exact likelihoods: a flow's change of variables, an ODE's instantaneous
    change of variables), sample distance ÷ its noise floor (sliced W2 as in chapters 06–08, each averaged over 10 fresh draws of the truth), NFE per sample, seconds, parameters."""
    import math
    import time

    import torch

    from .. import get_device, seed_everything
    from ..data import TOY_NAMES, toy
    from ..metrics import relative_to_noise_floor, sliced_wasserstein
    from ..training import format_table

    device = get_device()
    zoo = _model_families(seconds, device)
    chosen = list(models or zoo)
    unknown = [m for m in chosen if m not in zoo]
    if unknown:
        raise SystemExit(f"course bench models: unknown model(s) {unknown}; known: {', '.join(zoo)}")
    rows = []
    for target in targets or TOY_NAMES:
        p = toy(target)
        g = torch.Generator().manual_seed(0)
        x_train, x_test = p.sample((20_000,), generator=g), p.sample((n_test,), generator=g)
        log_p = p.log_prob(x_test).double()
        for name in chosen:
            seed_everything(0)
            t0 = time.perf_counter()
            log_q_fn, sample_fn, params = zoo[name](x_train)
            train_s = time.perf_counter() - t0
            log_q = log_q_fn(x_test.to(device)).detach().cpu().double()
            gap = log_p - log_q
            samples, nfe = sample_fn(2000, torch.Generator().manual_seed(1))
            g_truth = torch.Generator().manual_seed(2)       # one stream: the reference and the fresh draw differ
            dist = relative_to_noise_floor(sliced_wasserstein, samples.detach().cpu().double(),
                                           lambda n: p.sample((n,), generator=g_truth).double(), repeats=10)
            rows.append({"target": target, "model": name, "test NLL": -log_q.mean().item(),
                         "entropy": -log_p.mean().item(), "KL gap": gap.mean().item(),
                         "± s.e.": gap.std().item() / math.sqrt(len(gap)), "dist / floor": dist["ratio"],
                         "NFE": nfe, "seconds": train_s, "params": params})
            log(f"  {target:>12s}  {name:>24s}: KL gap {rows[-1]['KL gap']:.3f} nats, distance / floor "
                f"{dist['ratio']:.2f}, NFE {nfe}")
    columns = ["target", "model", "test NLL", "entropy", "KL gap", "± s.e.", "dist / floor", "NFE", "seconds", "params"]
    log("")
    log(format_table(rows, columns))
    return rows


def _gan_variants() -> dict:
    """Chapter 05's WGAN-GP recipe and one departure from it each: name -> seed -> (generator, critic, kwargs)."""
    from ..gan import toy_wgan_gp

    def changed(gain=8.0, **change):
        def build(seed):
            g, c, kw = toy_wgan_gp(seed, first_layer_gain=gain)
            return g, c, {**kw, **change}
        return build

    return {"recipe": changed(),
            "two-sided penalty": changed(gp_one_sided=False),
            "default initialisation": changed(gain=1.0),
            "two-sided, default init.": changed(gain=1.0, gp_one_sided=False),
            "2000 steps": changed(steps=2000)}


def bench_gan(seeds=(0, 1, 2), variants=None, log=print) -> list[dict]:
    """Chapter 05's WGAN-GP on ``8gaussians``: the recipe (:func:`course_utils.gan.toy_wgan_gp`) and each departure
    from it, on the lecture's training set, each scored like the lecture (:func:`course_utils.gan.mixture_scores`:
    modes, high-quality share, precision, recall of the averaged generator; the chapter's target is 0.9 on all three)."""
    import time

    import torch

    from .. import get_device, set_threads
    from ..data import toy
    from ..gan import mixture_scores, train_gan
    from ..training import format_table

    zoo = _gan_variants()
    chosen = list(variants or zoo)
    unknown = [v for v in chosen if v not in zoo]
    if unknown:
        raise SystemExit(f"course bench gan: unknown variant(s) {unknown}; known: {', '.join(map(repr, zoo))}")
    device = get_device()
    log(f"threads: {set_threads()} (the course's policy), device: {device}")
    eight = toy("8gaussians")
    x_train = eight.sample((20_000,), generator=torch.Generator().manual_seed(4)).float().to(device)   # as lecture 05
    x_eval = eight.sample((2000,), generator=torch.Generator().manual_seed(5)).float()
    rows = []
    for name in chosen:
        for seed in seeds:
            G, D, kw = zoo[name](seed)
            G = G.to(device)
            start = time.perf_counter()
            hist = train_gan(G, D, x_train, **kw, progress=False)
            row, _ = mixture_scores(hist.ema, kw["latent_dim"], eight, x_eval)
            row = {"variant": name, "seed": seed, **row, "meets 0.9": all(row[k] >= 0.9 for k in
                   ("high quality", "precision", "recall")) and row["modes"] == "8/8",
                   "seconds": time.perf_counter() - start}
            rows.append(row)
            log(format_table([row]))
    log(format_table(rows))
    return rows
