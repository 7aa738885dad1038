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
