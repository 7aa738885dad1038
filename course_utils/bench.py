"""``course bench notebooks``: run every lecture and homework solution top to bottom and compare with its budget.

Budgets (DESIGN.md): a lecture notebook in at most 120 s, a homework solution in at most 60 s, on a 2-core CPU.
This is a measurement, not a test: it prints a table and exits non-zero only when a notebook fails or is over budget.
"""

from __future__ import annotations

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


def bench_notebooks(course: Course, log=print) -> int:
    rows, bad = [], 0
    jobs = [("lecture", s) for s in course.lecture_sources] + [("solution", s) for s in course.homework_sources]
    log(f"{'notebook':44s}{'kind':>10s}{'seconds':>10s}{'budget':>9s}  verdict   (cpus: {os.cpu_count()})")
    for kind, src in jobs:
        try:
            secs = run_notebook(src)
            verdict = "ok" if secs <= BUDGETS[kind] else "OVER"
        except Exception as err:  # noqa: BLE001
            secs, verdict = float("nan"), f"FAILED: {type(err).__name__}"
        bad += verdict != "ok"
        rows.append((src.stem, kind, secs, verdict))
        log(f"{src.stem:44s}{kind:>10s}{secs:10.1f}{BUDGETS[kind]:9.0f}  {verdict}")
    return 1 if bad else 0
