"""Every homework, end to end, running each notebook as few times as the checks need (three runs per homework):

1. ``course grade`` grades the solved notebook and the unsolved stub in the sandbox: the solution earns every point
   and the stub none, hidden tests included (they run in the grader, against the kernel);
2. the stub's graded notebook is the exercise as a student runs it: its scaffolding runs, and every visible check
   fails with one clear ``CheckFailed`` line, no stack trace;
3. the solution notebook itself (hidden tests in it run on its own names) runs clean in a plain kernel, and then each
   catalogued wrong answer of ``solutions/hwNN_name/mistakes.py`` is put in place of its task's solution and must fail
   the task's VISIBLE check with a message that names the mistake (tests/submissions.py has the catalogue's format);
4. reproducible: the solution run (3) and the sandboxed solved run (1) print exactly the same in every cell they
   share, in fresh kernels, seeded.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from course_utils.course.pipeline import notebook_text
from submissions import HOMEWORK, load_catalogue, solved, unsolved
from test_grading import _sandbox_flags

ROOT = Path(__file__).resolve().parents[1]


def _gid(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _stdout(cell) -> str:
    """All of a cell's stdout joined (how the kernel splits a stream into messages is not part of the output)."""
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream"
                   and o.get("name") == "stdout")


def _error(cell) -> tuple[str, str, str] | None:
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    return (errors[0].ename, errors[0].evalue, "\n".join(errors[0].get("traceback", []))) if errors else None


@pytest.mark.slow
@pytest.mark.parametrize("hw", HOMEWORK, ids=[h.split("_")[0] for h in HOMEWORK])
def test_homework(course, tmp_path, hw):
    mistakes = load_catalogue(hw)
    # (1) grading, in the background while this process runs the solution and its catalogue
    subs = tmp_path / "subs"
    subs.mkdir()
    nbformat.write(unsolved(course, hw), subs / "stub.ipynb")
    nbformat.write(solved(course, hw=hw), subs / "solution.ipynb")
    out = tmp_path / "grades"
    grading = subprocess.Popen([sys.executable, "-m", "course_utils.course.cli", "--root", str(course.root), "grade", hw,
                                str(subs), "--out", str(out), "--cell-timeout", "240", "--notebook-timeout", "600",
                                "--jobs", "2", *_sandbox_flags()], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        # (3) the solution notebook, hidden tests and all, then the catalogue through the visible checks
        src = course.assignment(hw)
        nb = nbformat.reads(notebook_text(src), as_version=4)
        visible = {_gid(c): c.source for c in unsolved(course, hw).cells if _gid(c)}  # check cells as students have them
        answers = {_gid(c): c.source for c in solved(course, hw=hw).cells if _gid(c)}
        by_id = {_gid(c): c for c in nb.cells}
        tasks = sorted({g[: -len("_solution")] for g, c in by_id.items()
                        if g and g.endswith("_solution") and c.cell_type == "code"})
        for m in mistakes:
            assert f"{m['task']}_check" in by_id and f"{m['task']}_solution" in by_id, \
                f"{hw} mistake {m['name']!r} names task {m['task']!r}, which has no code solution and check cell"
        thin = {t: n for t in tasks if (n := sum(m["task"] == t for m in mistakes)) < 3}
        assert not thin, f"{hw}: every coded task needs at least three catalogued mistakes; too few for {thin}"

        os.environ["TQDM_DISABLE"] = "1"  # inherited by the kernel
        client = NotebookClient(nb, timeout=240, allow_errors=True, kernel_name="python3",
                                resources={"metadata": {"path": str(src.parent)}})
        failures = []
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                client.execute_cell(cell, index)
                err = _error(cell)
                assert err is None, f"{hw}: the solution notebook fails in cell {_gid(cell)}: {err[0]}: {err[1]}"
            run_a = {_gid(c): _stdout(c) for c in nb.cells if c.cell_type == "code"}

            def run(source: str):
                scratch = nbformat.v4.new_code_cell(source)
                nb.cells.append(scratch)
                try:
                    client.execute_cell(scratch, len(nb.cells) - 1)
                finally:
                    nb.cells.pop()
                return scratch

            for m in mistakes:
                label = f"{hw} {m['task']} mistake {m['name']!r}"
                err = _error(run(m["code"]))
                if err is not None:
                    failures.append(f"{label}: its code itself fails ({err[0]}: {err[1]}); fix the catalogue entry")
                else:
                    check = run(visible[f"{m['task']}_check"])
                    err = _error(check)
                    if err is None:
                        failures.append(f"{label}: PASSES the visible check ({_stdout(check).strip()[-200:]!r})")
                    elif err[0] != "CheckFailed":
                        failures.append(f"{label}: fails with {err[0]}: {err[1][:300]} instead of a CheckFailed message")
                    elif m["says"].lower() not in err[1].lower():
                        failures.append(f"{label}: the check says {err[1][:300]!r}, which does not contain {m['says']!r}")
                restored = run(answers[f"{m['task']}_solution"])
                assert _error(restored) is None, f"{label}: re-running the true solution failed: {_error(restored)}"
        assert not failures, f"{len(failures)} of {len(mistakes)} catalogued mistakes are not caught:\n" + "\n".join(failures)
        log, _ = grading.communicate(timeout=1500)
    finally:
        if grading.poll() is None:
            grading.kill()
    assert grading.returncode == 0, log[-3000:]

    # (1) scores
    rows = {r["student"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    total_col = next(k for k in rows["stub"] if k.startswith("autograded total"))
    max_points = float(total_col.split("of ")[1].rstrip(")"))
    checks = [k for k in rows["stub"] if k.endswith("_check")]
    assert checks and rows["stub"]["status"] == "graded" and float(rows["stub"][total_col]) == 0, rows["stub"]
    assert all(rows["stub"][t] == "0" for t in checks), rows["stub"]
    assert rows["solution"]["status"] == "graded" and float(rows["solution"][total_col]) == max_points, \
        (rows["solution"], log[-2000:])

    # (2) the exercise as a student runs it (the stub's graded notebook: the exercise's cells, the stub's answers)
    stub_nb = nbformat.read(out / "work" / "stub" / "graded.ipynb", as_version=4)
    n_checks = 0
    for cell in stub_nb.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        err, where = _error(cell), f"{hw} exercise cell {_gid(cell)}"
        if meta.get("grade") and not meta.get("solution"):
            n_checks += 1
            assert err, f"{where}: this check PASSES on the unsolved stub; it does not test the student's code"
            assert err[0] == "CheckFailed", f"{where}: fails with {err[0]}, not a clear check message"
            assert "Check failed" in err[2] and "Traceback" not in err[2], f"{where}: the student sees a stack trace"
        elif meta.get("solution"):
            assert not err or err[0] == "NotImplementedError", f"{where}: the stub fails with {err[0]}"
        else:
            assert not err, f"{where}: scaffolding fails on the stub: {err[0]}: {err[1]}"
    assert n_checks >= 4

    # (4) reproducible: the sandboxed solved run prints what the plain solution run printed, cell by cell
    run_b = {_gid(c): _stdout(c) for c in nbformat.read(out / "work" / "solution" / "graded.ipynb", as_version=4).cells
             if c.cell_type == "code" and _gid(c)}
    shared = [g for g in run_a if g in run_b]
    assert any(run_a[g] for g in shared), f"{hw} printed nothing to compare"
    differ = [g for g in shared if run_a[g] != run_b[g]]
    assert not differ, f"{hw} is not reproducible: cell {differ[0]} printed {run_a[differ[0]]!r} in one run and " \
        f"{run_b[differ[0]]!r} in the other"
