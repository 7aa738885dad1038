"""``course grade ASSIGNMENT DIR``: grade a folder of submissions that a class may have tried to cheat or break.

Each submission's kernel runs in a sandbox (:mod:`~course_utils.course.sandbox`): no network, its own PID namespace
(nothing outlives it), a cleared environment, a throwaway home, ``/tmp`` and working folder, read-only access to
the installed course package and nothing else of the course, and memory, process, time and output limits. The
grader, nbgrader's gradebook, the instructor's source and the CSV stay outside.

The score does not come from the student's notebook. A worker process (:mod:`~course_utils.course.grade_worker`)
runs the notebook in the box for the feedback it prints, then runs the homework's hidden tests *in its own clean
process*, calling the student's functions in the kernel on inputs it makes itself and reading the results back as
data (:mod:`~course_utils.course.rpc`, :mod:`~course_utils.course.wire`; never pickle). A task earns its points
only when its hidden tests pass there; a check cell that was muted, skipped or patched, and an ``execute_result``,
earn nothing.

Every entry of the submissions folder gets a row with a *status*:

=====================  ==================================================================================
``graded``             ran to the end; the scores are the hidden tests' verdicts
``cells restored``     graded; the student had deleted locked cells, which were put back first
``timeout``            a cell ran past the cell limit (interrupted, the rest graded), or the notebook past
                       the notebook limit, or a cell did not stop when interrupted (no scores)
``output too large``   graded; the notebook printed more than the output limit, and the rest was dropped
``out of memory``      the kernel passed the memory limit and was stopped (no scores)
``kernel died``        the kernel crashed or was killed (no scores; during the hidden tests: the tasks
                       not yet checked score 0)
``invalid notebook``   not a readable notebook (no scores)
``no notebook``        a folder with no notebook, or a file that is not one (no scores)
``several notebooks``  a folder with more than one notebook: which one is the submission? (no scores)
``invalid id``         the name cannot be a student id (letters, digits, ``_ - .``; not ``.`` or ``..``)
``duplicate``          the same id twice (a file and a folder): neither is graded
``integrity``          the gradebook, the CSV or a staged copy disagreed with what was graded: look
``grader error``       the grader itself failed; the detail says why (no scores)
=====================  ==================================================================================

Layouts accepted in ``DIR``: ``DIR/<student>.ipynb``, ``DIR/<student>/<any name>.ipynb`` and nbgrader's exchange
layout ``DIR/<student>/<assignment>/<notebook>.ipynb``. Submissions are copied before grading and never modified.

Many students: ``--jobs N`` grades N submissions at a time (the gradebook is written by this process only, one
submission at a time); ``--shard I/N`` grades every N-th entry starting at the I-th, so a cluster's job array can
split a class, and ``course grade --merge OUT1 OUT2 ... --out OUT`` joins the shards' gradebooks and CSVs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from .pipeline import Course, stage_source
from .sandbox import Isolation, Limits, detect_isolation

__all__ = ["grade", "merge", "GradeRow", "Entry", "discover", "kill_tree", "venv_on_path", "STATUSES"]

STATUSES = ("graded", "cells restored", "timeout", "output too large", "out of memory", "kernel died",
            "invalid notebook", "no notebook", "several notebooks", "invalid id", "duplicate", "integrity",
            "grader error")
_ID_OK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_JUNK = {".ipynb_checkpoints", "__pycache__"}
_MAX_NOTEBOOK_MB = 50


@dataclass
class GradeRow:
    student: str
    status: str
    scores: dict[str, float | None] = field(default_factory=dict)
    total: float | None = None
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Entry:
    """One entry of the submissions folder: a student's notebook, or why there is none."""

    student: str
    path: Path | None = None
    status: str | None = None  # None: to be graded
    detail: str = ""


# ---------------------------------------------------------------------------------------------------------------
# the submissions folder
# ---------------------------------------------------------------------------------------------------------------
def _is_notebook(p: Path) -> bool:
    return p.is_file() and not p.is_symlink() and p.name.lower().endswith(".ipynb") and not p.name.startswith(".")


def _shown(name: str) -> str:
    """A name as it may appear in the CSV: no control characters, no spreadsheet formula."""
    name = "".join(ch if ch.isprintable() else "?" for ch in name)[:120]
    return "'" + name if name[:1] in ("=", "+", "-", "@") else name


def discover(folder: Path, assignment: str) -> list[Entry]:
    """Every entry of ``folder`` as a student's notebook or a reason why not; sorted, nothing dropped."""
    if not folder.is_dir():
        raise SystemExit(f"course grade: {folder} is not a folder of submissions")
    entries: list[Entry] = []
    for p in sorted(folder.iterdir(), key=lambda q: q.name):
        if p.name in _JUNK and p.is_dir():
            continue  # editor leftovers, not submissions
        stem = p.name[:-len(".ipynb")] if p.name.lower().endswith(".ipynb") else p.name
        if p.is_symlink():
            entries.append(Entry(_shown(stem), None, "no notebook", f"{p.name} is a symbolic link; links are not followed"))
            continue
        if p.is_file():
            if not p.name.lower().endswith(".ipynb"):
                entries.append(Entry(_shown(p.name), None, "no notebook", f"{p.name} is not a notebook (.ipynb)"))
                continue
            entries.append(Entry(stem, p))
            continue
        if not p.is_dir():
            entries.append(Entry(_shown(p.name), None, "no notebook", f"{p.name} is neither a file nor a folder"))
            continue
        direct = sorted(q for q in p.iterdir() if _is_notebook(q))
        if not direct:  # nbgrader's layout: <student>/<assignment>/<notebook>.ipynb
            subdirs = [d for d in sorted(p.iterdir()) if d.is_dir() and not d.is_symlink() and d.name not in _JUNK]
            preferred = [d for d in subdirs if d.name == assignment] or subdirs
            direct = sorted(q for d in preferred for q in d.iterdir() if _is_notebook(q))
        if not direct:
            entries.append(Entry(p.name, None, "no notebook", f"the folder {p.name}/ holds no notebook"))
        elif len(direct) > 1:
            names = ", ".join(str(q.relative_to(p)) for q in direct[:5])
            entries.append(Entry(p.name, None, "several notebooks",
                                 f"the folder {p.name}/ holds {len(direct)} notebooks ({names}); keep one"))
        else:
            entries.append(Entry(p.name, direct[0]))
    for e in entries:
        if e.status is None and not _ID_OK.match(e.student):
            e.status, e.detail = "invalid id", f"{_shown(e.student)!r} cannot be a student id (letters, digits, _ - . only)"
            e.student = _shown(e.student)
        elif e.status is not None and e.status != "invalid id" and not _ID_OK.match(e.student):
            e.student = _shown(e.student)
    ids: dict[str, list[Entry]] = {}
    for e in entries:
        ids.setdefault(e.student, []).append(e)
    for sid, group in ids.items():
        if len(group) > 1:
            where = ", ".join(str(e.path.relative_to(folder)) if e.path else e.detail for e in group)
            for e in group:
                e.status, e.detail = "duplicate", f"{len(group)} submissions for {sid!r} ({where}); neither is graded"
    return entries


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------
def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


def _tail(p: Path, n: int = 4000) -> str:
    """The last ``n`` bytes of a log, read from the end (a log can be huge)."""
    try:
        with open(p, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - n))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _scratch_root() -> str | None:
    """Where the boxes' exchange folders go: a memory file system when there is one (what the kernel writes there
    counts against its memory limit, and Unix socket paths stay short), else the system's temporary folder."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        try:
            if shutil.disk_usage(shm).free > 64 * 2**20:
                return str(shm)
        except OSError:
            pass
    return None


# ---------------------------------------------------------------------------------------------------------------
# the gradebook and the CSV
# ---------------------------------------------------------------------------------------------------------------
def _record(db_url: str, name: str, row: GradeRow, manual: set[str]) -> None:
    """Write one student's scores to nbgrader's gradebook (this process only, one student at a time)."""
    import warnings

    from nbgrader.api import Gradebook

    with warnings.catch_warnings(), Gradebook(db_url) as gb:
        warnings.simplefilter("ignore")  # SQLAlchemy's autoflush notes inside nbgrader's own API
        gb.update_or_create_student(row.student)
        gb.update_or_create_submission(name, row.student)
        sub = gb.find_submission_notebook(name, name, row.student)
        for g in sub.grades:
            if g.name in manual:
                g.auto_score, g.needs_manual_grade = None, True
            else:
                g.auto_score = row.scores.get(g.name)
                g.needs_manual_grade = g.auto_score is None
        gb.db.commit()


def _csv_rows(rows: list[GradeRow], task_ids: list[str], manual: set[str], max_auto: float, isolation: str) -> list[list[str]]:
    header = ["student", "status", *[f"{t}{' (by hand)' if t in manual else ''}" for t in task_ids],
              f"autograded total (of {max_auto:g})", "detail", "isolation"]
    body = [[r.student, r.status, *["" if r.scores.get(t) is None else f"{r.scores[t]:g}" for t in task_ids],
             "" if r.total is None else f"{r.total:g}", r.detail, isolation] for r in rows]
    return [header, *body]


def _write_csv(path: Path, table: list[list[str]]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        csv.writer(fh).writerows(table)
    os.replace(tmp, path)


def _flag(row: GradeRow, why: str) -> None:
    row.status = "integrity"
    row.detail = (row.detail + "; " if row.detail else "") + why


def _integrity(db_path: Path, name: str, rows: list[GradeRow], manual: set[str], recorded: set[str]) -> None:
    """Flag every student whose gradebook entries disagree with what the grader computed (``recorded``: the students
    the grader wrote to the gradebook); drop triggers."""
    con = sqlite3.connect(db_path)
    try:
        triggers = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]
        for t in triggers:
            con.execute(f'DROP TRIGGER IF EXISTS "{t}"')
        con.commit()
    finally:
        con.close()
    from nbgrader.api import Gradebook, MissingEntry

    graded = {r.student: r for r in rows if r.student in recorded}
    with Gradebook(f"sqlite:///{db_path}") as gb:
        for student, row in graded.items():
            if triggers:
                _flag(row, f"the gradebook held trigger(s) {', '.join(triggers)} (removed)")
            try:
                sub = gb.find_submission_notebook(name, name, student)
            except MissingEntry:
                _flag(row, "no entry in the gradebook")
                continue
            for g in sub.grades:
                if g.name in manual:
                    continue
                if g.manual_score is not None:
                    _flag(row, f"a manual score on the autograded cell {g.name}")
                elif g.auto_score != row.scores.get(g.name):
                    _flag(row, f"the gradebook's {g.name} is {g.auto_score}, the grader computed {row.scores.get(g.name)}")


# ---------------------------------------------------------------------------------------------------------------
# grading
# ---------------------------------------------------------------------------------------------------------------
def _prepare(course: Course, assignment: str, out: Path) -> tuple[str, Path, Path, Path, list[Path]]:
    """Stage the source and let nbgrader make the gradebook and the student version (in ``out``)."""
    src = course.assignment(assignment)
    name = src.stem
    for stale in ("gradebook.db", "grades.csv", "nbgrader", "work", "shard.json"):
        target = out / stale
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    for stale_log in out.glob("*.log"):
        stale_log.unlink()
    out.mkdir(parents=True, exist_ok=True)
    root = out / "nbgrader"
    source_dir = stage_source(src, root)
    db_url = f"sqlite:///{out / 'gradebook.db'}"
    cmd = [sys.executable, "-m", "nbgrader", "generate_assignment", name, "--force", f"--CourseDirectory.db_url={db_url}",
           "--log-level=INFO", f"--CourseDirectory.root={root}"]
    with open(out / "generate.log", "w") as fh:
        rc = subprocess.run(cmd, cwd=root, stdout=fh, stderr=subprocess.STDOUT, timeout=300).returncode
    release = root / "release" / name
    if rc != 0 or not (release / f"{name}.ipynb").exists():
        raise SystemExit(f"course grade: nbgrader generate_assignment failed:\n{_tail(out / 'generate.log', 3000)}")
    data = sorted(f for f in release.rglob("*") if f.is_file() and f.suffix != ".ipynb" and f.parent == release)
    return name, root, source_dir / f"{name}.ipynb", release / f"{name}.ipynb", data


def _run_worker(job: dict, timeout: float) -> dict:
    """Run one grade_worker process; a crash or hang of it is a row, never a lost batch. Its box's folders are
    removed as soon as it ends (what the kernel wrote there uses memory when they are on a memory file system)."""
    try:
        return _run_worker_once(job, timeout)
    finally:
        shutil.rmtree(Path(job["exchange"]).parent, ignore_errors=True)


def _run_worker_once(job: dict, timeout: float) -> dict:
    out_dir = Path(job["out_dir"])
    job_file = out_dir / "job.json"
    job_file.write_text(json.dumps(job))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"}
    with open(out_dir / "worker.log", "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "course_utils.course.grade_worker", str(job_file)],
                                stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            return {"status": "timeout", "detail": f"the grading of this submission ran past {timeout:.0f} s and was stopped",
                    "scores": {}}
    try:
        return json.loads((out_dir / "result.json").read_text())
    except (OSError, ValueError):
        return {"status": "grader error", "detail": "the grading worker stopped without a result: "
                + (_tail(out_dir / "worker.log", 300).strip().splitlines() or ["no output"])[-1], "scores": {}}


def grade(course: Course, assignment: str, submissions: Path, out: Path | None = None, cell_timeout: int = 60,
          notebook_timeout: int = 300, jobs: int = 1, shard: tuple[int, int] | None = None,
          limits: Limits | None = None, allow_unsandboxed: bool = False, log=print) -> list[GradeRow]:
    """Grade every entry of ``submissions`` (or one shard of them); write ``out/gradebook.db`` and ``out/grades.csv``."""
    venv_on_path()
    from course_utils import default_threads

    limits = limits or Limits()
    isolation = detect_isolation(allow_unsandboxed)
    name = course.assignment(assignment).stem
    out = (out or course.root / "grades" / name).resolve()
    log(f"isolation: {isolation.summary}" + (f" ({'; '.join(isolation.notes)})" if isolation.notes else ""))
    name, root, source_nb_path, release_nb_path, data = _prepare(course, assignment, out)
    db_path = out / "gradebook.db"
    db_url = f"sqlite:///{db_path}"

    source_nb = nbformat.read(source_nb_path, as_version=4)
    grade_cells = [c.metadata["nbgrader"] for c in source_nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    task_ids = [m["grade_id"] for m in grade_cells]
    manual = {m["grade_id"] for m in grade_cells if m.get("solution")}
    points = {m["grade_id"]: float(m.get("points", 0)) for m in grade_cells}
    max_auto = sum(v for t, v in points.items() if t not in manual)

    submissions = submissions.resolve()
    entries = discover(submissions, name)
    if shard is not None:
        i, n = shard
        entries = [e for k, e in enumerate(entries) if k % n == i - 1]
        (out / "shard.json").write_text(json.dumps({"shard": i, "of": n, "students": [e.student for e in entries]}))
    rows: dict[int, GradeRow] = {}  # by position in the folder: two entries may claim one id (both `duplicate`)
    recorded: set[str] = set()
    order = list(range(len(entries)))
    index = {e.student: k for k, e in enumerate(entries) if e.status is None}
    table_args = (task_ids, manual, max_auto, isolation.summary)

    def flush() -> None:
        _write_csv(out / "grades.csv", _csv_rows([rows[s] for s in order if s in rows], *table_args))

    originals: dict[str, tuple[Path, str, Path]] = {}
    todo = []
    def known_student(student: str) -> None:
        """A row without a graded notebook still names a student the instructor will look for in the gradebook."""
        import warnings

        from nbgrader.api import Gradebook

        with warnings.catch_warnings(), Gradebook(db_url) as gb:
            warnings.simplefilter("ignore")
            gb.update_or_create_student(student)

    for k, e in enumerate(entries):
        if e.status is not None:
            rows[k] = GradeRow(e.student, e.status, {t: None for t in task_ids}, None, e.detail)
            if e.status in ("no notebook", "several notebooks") and (submissions / e.student).is_dir():
                known_student(e.student)
            continue
        if e.path.stat().st_size > _MAX_NOTEBOOK_MB * 2**20:  # before reading it
            rows[k] = GradeRow(e.student, "invalid notebook", {t: None for t in task_ids}, None,
                               f"the file is larger than {_MAX_NOTEBOOK_MB} MB")
            known_student(e.student)
            continue
        digest = _sha256(e.path)
        try:
            nbformat.validate(nbformat.reads(e.path.read_text(encoding="utf-8"), as_version=4))
        except Exception as err:  # noqa: BLE001 - any unreadable file is a row
            first = str(err).splitlines()[0][:200] if str(err) else ""
            rows[k] = GradeRow(e.student, "invalid notebook", {t: None for t in task_ids}, None,
                               f"{type(err).__name__}: {first}")
            known_student(e.student)
            continue
        staged = root / "submitted" / e.student / name / f"{name}.ipynb"
        staged.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(e.path, staged)
        originals[e.student] = (e.path, digest, staged)
        todo.append(e)
    flush()

    threads = max(1, default_threads() // max(1, jobs))
    scratch = Path(tempfile.mkdtemp(prefix="cg-", dir=_scratch_root()))
    os.chmod(scratch, 0o700)

    def job_for(k: int, e: Entry) -> dict:
        work_dir = out / "work" / e.student
        work_dir.mkdir(parents=True, exist_ok=True)
        box = scratch / f"{k}"
        return {"student": e.student, "submission": str(originals[e.student][2]), "source": str(source_nb_path),
                "release": str(release_nb_path), "data": [str(f) for f in data], "out_dir": str(work_dir),
                "private": str(box / "p"), "work": str(box / "w"), "exchange": str(box / "x"),
                "cell_timeout": cell_timeout, "notebook_timeout": notebook_timeout, "points": points,
                "limits": asdict(limits), "isolation": isolation.to_dict(), "threads": threads}

    def finish(e: Entry, result: dict) -> None:
        scores = {t: result.get("scores", {}).get(t) for t in task_ids}
        row = GradeRow(e.student, result.get("status", "grader error"), scores, None, result.get("detail", ""),
                       float(result.get("seconds", 0.0)))
        if any(v is not None for t, v in scores.items() if t not in manual):
            row.total = sum(v for t, v in scores.items() if v is not None and t not in manual)
        failed = result.get("messages", {})
        if failed and row.status in ("graded", "cells restored", "timeout", "output too large", "kernel died"):
            first = next(iter(failed.items()))
            note = f"hidden checks failed in {', '.join(failed)} (first: {first[0]}: {first[1][:160]})"
            row.detail = (row.detail + "; " if row.detail else "") + note
        try:
            _record(db_url, name, row, manual)
            recorded.add(e.student)
        except Exception as err:  # noqa: BLE001 - e.g. a locked database: the row says so, the batch goes on
            _flag(row, f"the gradebook could not be written ({type(err).__name__}: {str(err)[:120]})")
        graded_nb = out / "work" / e.student / "graded.ipynb"
        if graded_nb.exists():
            dest = root / "autograded" / e.student / name / f"{name}.ipynb"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(graded_nb, dest)
        (out / "work" / e.student / "messages.json").write_text(json.dumps(failed, indent=1))
        rows[index[e.student]] = row
        flush()
        log(f"{e.student}: {row.status}" + (f", autograded total {row.total:g}" if row.total is not None else "")
            + (f" ({row.detail})" if row.detail else "") + f" [{row.seconds:.1f} s]")

    t0 = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(_run_worker, job_for(k, e), notebook_timeout + 180): e for k, e in enumerate(todo)}
            for fut in as_completed(futures):
                e = futures[fut]
                try:
                    result = fut.result()
                except Exception as err:  # noqa: BLE001
                    result = {"status": "grader error", "detail": f"{type(err).__name__}: {err}", "scores": {}}
                finish(e, result)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    elapsed = time.perf_counter() - t0

    # ---- integrity before the CSV --------------------------------------------------------------------------------
    for student, (orig, digest, staged) in originals.items():
        if index[student] not in rows:
            continue
        if not orig.exists() or _sha256(orig) != digest:
            _flag(rows[index[student]], "the submitted file changed while the batch was graded")
        if not staged.exists() or _sha256(staged) != digest:
            _flag(rows[index[student]], "the staged copy differs from the submitted file")
    _integrity(db_path, name, [rows[s] for s in order if s in rows], manual, recorded)
    flush()
    table = _csv_rows([rows[s] for s in order], *table_args)
    with open(out / "grades.csv", newline="") as fh:
        if list(csv.reader(fh)) != table:
            for s in order:
                _flag(rows[s], "the CSV on disk differed from the grades")
            flush()
    if todo:
        log(f"graded {len(todo)} submission(s) in {elapsed:.1f} s ({elapsed / len(todo):.1f} s per submission, "
            f"{jobs} at a time)")
    log(f"wrote {out / 'grades.csv'} and {db_path}")
    return [rows[s] for s in order]


# ---------------------------------------------------------------------------------------------------------------
# shards
# ---------------------------------------------------------------------------------------------------------------
def merge(course: Course, assignment: str, shards: list[Path], out: Path, log=print) -> list[GradeRow]:
    """Join the gradebooks and CSVs of ``course grade --shard`` runs into ``out``."""
    venv_on_path()
    name, root, source_nb_path, _, _ = _prepare(course, assignment, out.resolve())
    out = out.resolve()
    source_nb = nbformat.read(source_nb_path, as_version=4)
    grade_cells = [c.metadata["nbgrader"] for c in source_nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    task_ids = [m["grade_id"] for m in grade_cells]
    manual = {m["grade_id"] for m in grade_cells if m.get("solution")}
    max_auto = sum(float(m.get("points", 0)) for m in grade_cells if m["grade_id"] not in manual)
    rows: list[GradeRow] = []
    recorded: set[str] = set()
    isolations: set[str] = set()
    seen: dict[str, Path] = {}
    for shard in shards:
        csv_path = shard / "grades.csv"
        if not csv_path.exists():
            raise SystemExit(f"course grade --merge: {shard} has no grades.csv (is it an output folder of course grade?)")
        with open(csv_path, newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            expected = _csv_rows([], task_ids, manual, max_auto, "")[0]
            if header != expected:
                raise SystemExit(f"course grade --merge: {csv_path} is not a CSV of {name}")
            for rec in reader:
                student, status = rec[0], rec[1]
                scores = {t: (None if v == "" else float(v)) for t, v in zip(task_ids, rec[2:2 + len(task_ids)])}
                total = None if rec[2 + len(task_ids)] == "" else float(rec[2 + len(task_ids)])
                row = GradeRow(student, status, scores, total, rec[3 + len(task_ids)])
                isolations.add(rec[4 + len(task_ids)])
                if student in seen:
                    _flag(row, f"also graded in {seen[student]}")
                seen[student] = shard
                rows.append(row)
                if (shard / "work" / student / "result.json").exists():  # graded by a worker: in the shard's gradebook
                    _record(f"sqlite:///{out / 'gradebook.db'}", name, row, manual)
                    recorded.add(student)
                for sub in ("autograded", "submitted"):
                    src = shard / "nbgrader" / sub / student
                    if src.is_dir():
                        shutil.copytree(src, root / sub / student, dirs_exist_ok=True)
    isolation = " | ".join(sorted(isolations)) or "unknown"
    _integrity(out / "gradebook.db", name, rows, manual, recorded)
    rows.sort(key=lambda r: r.student)
    _write_csv(out / "grades.csv", _csv_rows(rows, task_ids, manual, max_auto, isolation))
    log(f"merged {len(shards)} shard(s), {len(rows)} row(s), into {out / 'grades.csv'} and {out / 'gradebook.db'}")
    return rows
