"""``course grade ASSIGNMENT DIR``: autograde a folder of submissions with nbgrader.

Every submission is graded in its own ``nbgrader autograde`` process with a per-cell and a
per-notebook time limit, into nbgrader's sqlite gradebook, and summarised in a CSV with one row per
student: the score of every task, the total, and a *status* that says what happened:

=====================  =====================================================================
``graded``             ran to the end; the scores are the scores
``cells restored``     graded, but the student had deleted grade cells; nbgrader put them back
``timeout``            a cell ran past the cell limit (interrupted; the rest was still graded),
                       or the notebook ran past the notebook limit (no scores)
``kernel died``        the kernel crashed or was killed (no scores)
``invalid notebook``   the file is not a readable notebook (no scores)
``grader error``       nbgrader itself failed; the detail column says why (no scores)
=====================  =====================================================================

Submissions are copied before grading and never modified (checked by hash). Layouts accepted in
``DIR``: ``DIR/<student>.ipynb`` or ``DIR/<student>/<any name>.ipynb`` (one notebook per folder).
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .pipeline import Course, stage_source

__all__ = ["grade", "GradeRow", "find_submissions", "kill_tree", "venv_on_path"]

_STUDENT_OK = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class GradeRow:
    student: str
    status: str
    scores: dict[str, float | None] = field(default_factory=dict)
    total: float | None = None
    detail: str = ""
    seconds: float = 0.0


def find_submissions(folder: Path) -> dict[str, Path]:
    """Map student id -> submitted notebook in ``folder``."""
    if not folder.is_dir():
        raise SystemExit(f"course grade: {folder} is not a folder of submissions")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix == ".ipynb":
            found[p.stem] = p
        elif p.is_dir() and not p.name.startswith("."):
            nbs = sorted(q for q in p.glob("*.ipynb") if not q.name.startswith("."))
            if len(nbs) == 1:
                found[p.name] = nbs[0]
            elif nbs:
                raise SystemExit(f"course grade: {p} holds {len(nbs)} notebooks; expected one per student")
    bad = [s for s in found if not _STUDENT_OK.match(s)]
    if bad:
        raise SystemExit(f"course grade: student ids may use letters, digits, '_', '-' and '.' only; rename {bad}")
    return found


def _sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def kill_tree(proc: subprocess.Popen) -> None:
    """Kill a process and everything it started (kernels run in sessions of their own), then reap it."""
    try:
        import psutil  # a dependency of ipykernel

        parent = psutil.Process(proc.pid)
        for child in parent.children(recursive=True):
            child.kill()
        parent.kill()
    except Exception:  # noqa: BLE001
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def venv_on_path() -> None:
    """nbgrader runs the ``alembic`` command by name: make the tools next to this Python findable,
    also when the course command is called as ``.venv/bin/course`` without activating the venv."""
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def _nbgrader(args: list[str], root: Path, timeout: float | None, log: Path) -> tuple[int | None, str]:
    cmd = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={root}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"}
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=root, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            rc = None
    return rc, log.read_text(errors="replace")


def _last_exception(log_text: str) -> str:
    """The last ``SomeError: message`` line of a log (what a person needs to see), or ''."""
    hits = re.findall(r"^\s*([\w.]*(?:Error|Exception|Exit)\b:?.*)$", log_text, re.M)
    hits = [h.strip() for h in hits if not h.strip().startswith("[")]
    return hits[-1][:300] if hits else ""


def grade(course: Course, assignment: str, submissions: Path, out: Path | None = None,
          cell_timeout: int = 60, notebook_timeout: int = 300, log=print) -> list[GradeRow]:
    """Grade every submission in ``submissions``; write ``out/gradebook.db`` and ``out/grades.csv``."""
    venv_on_path()
    src = course.assignment(assignment)
    name = src.stem
    out = (out or course.root / "grades" / name).resolve()
    subs = find_submissions(submissions.resolve())
    before = {s: _sha256(p) for s, p in subs.items()}

    # a clean slate: a rerun regrades everything from scratch
    for stale in ("gradebook.db", "grades.csv", "nbgrader"):
        target = out / stale
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    for stale_log in out.glob("*.log"):
        stale_log.unlink()
    root = out / "nbgrader"
    out.mkdir(parents=True, exist_ok=True)
    source_dir = stage_source(src, root)
    db_url = f"sqlite:///{out / 'gradebook.db'}"
    common = [f"--CourseDirectory.db_url={db_url}", "--log-level=INFO"]
    rc, text = _nbgrader(["generate_assignment", name, "--force", *common], root, 300, out / "generate.log")
    if rc != 0:
        raise SystemExit(f"course grade: nbgrader generate_assignment failed:\n{text[-3000:]}")

    source_nb = nbformat.read(source_dir / f"{name}.ipynb", as_version=4)
    grade_cells = [c.metadata["nbgrader"] for c in source_nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    task_ids = [m["grade_id"] for m in grade_cells]
    manual = {m["grade_id"] for m in grade_cells if m.get("solution")}  # written answers: graded by hand

    from nbgrader.api import Gradebook, MissingEntry

    rows: list[GradeRow] = []
    for student, path in subs.items():
        t0 = time.perf_counter()
        row = GradeRow(student, "graded", {t: None for t in task_ids})
        with Gradebook(db_url) as gb:
            gb.update_or_create_student(student)
        try:
            nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
            nbformat.validate(nb)
        except Exception as err:  # noqa: BLE001 - any unreadable file is reported, not raised
            row.status, row.detail = "invalid notebook", f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
            rows.append(row)
            log(f"{student}: {row.status} ({row.detail})")
            continue
        present = {c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells}
        missing = [t for t in task_ids if t not in present]

        dest = root / "submitted" / student / name
        dest.mkdir(parents=True)
        shutil.copyfile(path, dest / f"{name}.ipynb")
        rc, text = _nbgrader(["autograde", name, f"--student={student}", "--force", *common,
                              f"--Execute.timeout={cell_timeout}", "--Execute.interrupt_on_timeout=True",
                              "--OverwriteCells.add_missing_cells=True"],
                             root, notebook_timeout, out / f"autograde-{student}.log")
        graded_nb = root / "autograded" / student / name / f"{name}.ipynb"
        if rc is None:
            row.status, row.detail = "timeout", f"the notebook ran past the {notebook_timeout} s notebook limit"
        elif "DeadKernelError" in text or "Kernel died" in text or "kernel died" in text.lower():
            row.status, row.detail = "kernel died", "the kernel crashed or was killed while running the notebook"
        elif not graded_nb.exists() and "CellTimeoutError" in text:
            row.status = "timeout"
            row.detail = f"a cell ran past the {cell_timeout} s cell limit and did not stop when interrupted"
        elif rc != 0 or not graded_nb.exists():
            row.status, row.detail = "grader error", _last_exception(text) or f"nbgrader exited with {rc}"
        else:
            timed_out = [c.get("id") for c in nbformat.read(graded_nb, as_version=4).cells if c.cell_type == "code"
                         and any(o.get("ename") == "CellTimeoutError" for o in c.get("outputs", []))]
            if timed_out:
                row.status = "timeout"
                row.detail = f"cell(s) {', '.join(map(str, timed_out))} ran past the {cell_timeout} s cell limit and were interrupted; the rest was graded"
            elif missing:
                row.status, row.detail = "cells restored", f"deleted grade cells were put back by nbgrader: {', '.join(missing)}"
            with Gradebook(db_url) as gb:
                try:
                    sub = gb.find_submission_notebook(name, name, student)
                    for g in sub.grades:
                        row.scores[g.name] = None if (g.name in manual and g.manual_score is None) else g.score
                except MissingEntry:
                    row.status, row.detail = "grader error", "nbgrader wrote no grades for this submission"
        if row.status in ("graded", "cells restored", "timeout") and any(v is not None for v in row.scores.values()):
            row.total = sum(v for t, v in row.scores.items() if v is not None and t not in manual)
        row.seconds = time.perf_counter() - t0
        rows.append(row)
        log(f"{student}: {row.status}" + (f", autograded total {row.total:g}" if row.total is not None else "")
            + (f" ({row.detail})" if row.detail else "") + f" [{row.seconds:.1f} s]")

    after = {s: _sha256(p) for s, p in subs.items()}
    changed = [s for s in subs if before[s] != after[s]]
    if changed:  # pragma: no cover - would be a bug in the grader
        raise RuntimeError(f"course grade modified submissions: {changed}")

    max_auto = sum(m.get("points", 0) for m in grade_cells if m["grade_id"] not in manual)
    with open(out / "grades.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["student", "status", *[f"{t}{' (by hand)' if t in manual else ''}" for t in task_ids],
                    f"autograded total (of {max_auto:g})", "detail"])
        for r in rows:
            w.writerow([r.student, r.status, *["" if r.scores[t] is None else f"{r.scores[t]:g}" for t in task_ids],
                        "" if r.total is None else f"{r.total:g}", r.detail])
    log(f"wrote {out / 'grades.csv'} and {out / 'gradebook.db'}")
    return rows
