"""`course grade` on a batch of fake submissions: the right score or status for each, in bounded time,
with every submission file unchanged; every homework graded solved and unsolved; shards merged.
(The hostile submissions are in test_red_team.py.)"""

import csv
import hashlib
import subprocess
import sys
import time

import nbformat
import pytest

from submissions import HW, WRONG, solved, unsolved, write_batch


def _sandbox_flags() -> list[str]:
    """Grade in the sandbox where this machine has one (CI installs bubblewrap); elsewhere say so explicitly."""
    from course_utils.course.sandbox import _bwrap_works

    return ["--unsandboxed"] if _bwrap_works() else []


def _grade(course, subs, out, cell_timeout, notebook_timeout, hw="hw01", timeout=600, extra=()):
    """Run `course grade` as an instructor would; fail with its output if it fails."""
    proc = subprocess.run([sys.executable, "-m", "course_utils.course.cli", "--root", str(course.root), "grade", hw, str(subs),
                           "--out", str(out), "--cell-timeout", str(cell_timeout), "--notebook-timeout", str(notebook_timeout),
                           "--jobs", "2", *_sandbox_flags(), *extra],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _kernel_pids(under=None):
    """Kernels running on this machine (only those whose working folder is inside ``under``, if given: other tests
    run notebooks in parallel, so only the grader's own folders say which kernels it started)."""
    import psutil

    pids = set()
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any("ipykernel_launcher" in part for part in (p.info["cmdline"] or [])):
                if under is None or str(p.cwd()).startswith(str(under)):
                    pids.add(p.info["pid"])
        except psutil.Error:
            pass
    return pids


@pytest.mark.slow
def test_grade_a_batch(course, tmp_path):
    subs = tmp_path / "submissions"
    expected = write_batch(course, subs)
    # a loop that swallows the interrupt: only the per-notebook limit can stop it
    stubborn = ("import time\nwhile True:\n    try:\n        time.sleep(0.1)\n    except KeyboardInterrupt:\n        pass\n")
    nbformat.write(solved(course, {"task3_solution": stubborn}), subs / "hank_stubborn.ipynb")
    expected["hank_stubborn"] = ("timeout", None)
    # every cell within the cell limit, the whole notebook past the notebook limit
    slow = solved(course)
    for cell in slow.cells:
        if cell.metadata.get("nbgrader", {}).get("solution") and cell.cell_type == "code":
            cell.source = "import time\ntime.sleep(14)\n" + cell.source
    nbformat.write(slow, subs / "ivan_slow.ipynb")
    expected["ivan_slow"] = ("timeout", None)
    files = [p for p in subs.rglob("*") if p.is_file()]
    before = {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in files}

    out = tmp_path / "grades"
    t0 = time.perf_counter()
    _grade(course, subs, out, 20, 50)
    elapsed = time.perf_counter() - t0
    assert elapsed < 400, f"grading took {elapsed:.0f} s"

    rows = {r["student"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    assert set(rows) == set(expected)
    total_col = next(k for k in next(iter(rows.values())) if k.startswith("autograded total"))
    assert total_col == "autograded total (of 10)"
    for student, (status, total) in expected.items():
        r = rows[student]
        assert r["status"] == status, (student, r)
        if total is None:
            assert r[total_col] == "", (student, r)  # no score is reported as a zero
            assert r["detail"], (student, r)          # ... and the detail says why
        else:
            assert float(r[total_col]) == total, (student, r)
    assert rows["bob_wrong"]["task3_check"] == "3" and rows["bob_wrong"]["task1_check"] == "0"
    assert "planar_log_det" in rows["bob_wrong"]["detail"]  # which hidden check failed, and how
    assert rows["carol_endless"]["task1_check"] == "0" and "task1_solution" in rows["carol_endless"]["detail"]
    assert "task2_check" in rows["frank_deleted"]["detail"]
    assert rows["alice_solution"]["task5_answer (by hand)"] == ""  # the written answer waits for a human
    assert "50 s notebook limit" in rows["ivan_slow"]["detail"]
    assert "did not stop when interrupted" in rows["hank_stubborn"]["detail"]
    assert not _kernel_pids(under=tmp_path), "grading left kernels running"

    after = {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in files}
    assert before == after, "grading modified a submission"
    assert sorted(p for p in subs.rglob("*") if p.is_file()) == sorted(files), "grading wrote into the submissions folder"

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        assert {s.id for s in gb.students} == set(expected)  # the invalid notebook's student too
        assert gb.find_submission(HW, "alice_solution").score == 10
        assert gb.find_submission(HW, "bob_wrong").score == 3

    # a rerun regrades cleanly: only the new folder's students, fresh scores
    again = tmp_path / "again"
    again.mkdir()
    (again / "bob_wrong.ipynb").write_bytes((subs / "bob_wrong.ipynb").read_bytes())
    _grade(course, again, out, 20, 50, timeout=300)
    rows = list(csv.DictReader(open(out / "grades.csv")))
    assert [r["student"] for r in rows] == ["bob_wrong"] and rows[0][total_col] == "3"
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        assert [s.id for s in gb.students] == ["bob_wrong"]


@pytest.mark.slow
def test_shards_merge_into_one_gradebook(course, tmp_path):
    """--shard I/N grades every N-th entry; --merge joins the shards' gradebooks and CSVs into one, as one run would."""
    subs = tmp_path / "subs"
    subs.mkdir()
    nbformat.write(solved(course), subs / "ann.ipynb")
    nbformat.write(unsolved(course), subs / "ben.ipynb")
    nbformat.write(solved(course, WRONG), subs / "cat.ipynb")
    (subs / "dan").mkdir()  # a folder without a notebook: a row in its shard, and in the merge
    outs = []
    for i in (1, 2):
        out = tmp_path / f"shard{i}"
        _grade(course, subs, out, 60, 200, extra=("--shard", f"{i}/2"))
        outs.append(out)
    shard_students = [{r["student"] for r in csv.DictReader(open(o / "grades.csv"))} for o in outs]
    assert shard_students == [{"ann", "cat"}, {"ben", "dan"}]
    merged = tmp_path / "merged"
    proc = subprocess.run([sys.executable, "-m", "course_utils.course.cli", "--root", str(course.root), "grade", "hw01",
                           "--merge", *map(str, outs), "--out", str(merged)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["student"]: r for r in csv.DictReader(open(merged / "grades.csv"))}
    total = "autograded total (of 10)"
    assert {s: (r["status"], r[total]) for s, r in rows.items()} == {
        "ann": ("graded", "10"), "ben": ("graded", "0"), "cat": ("graded", "3"), "dan": ("no notebook", "")}
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{merged / 'gradebook.db'}") as gb:
        assert gb.find_submission(HW, "ann").score == 10 and gb.find_submission(HW, "cat").score == 3
    assert (merged / "nbgrader" / "autograded" / "ann" / HW / f"{HW}.ipynb").exists()  # for the formgrader


def test_a_checkout_under_tmp_or_home_stays_visible_in_the_box(tmp_path, monkeypatch):
    """The box mounts empty folders on /tmp and /home; Python, the venv and the package are bound after them, so a
    checkout under /tmp (a CI clone) or /home (most laptops) is still there for the kernel (it was hidden: every
    submission a `grader error`)."""
    from course_utils.course import sandbox

    iso = sandbox.detect_isolation()
    if iso.kind == "none":
        pytest.skip("no sandbox on this machine")
    package = tmp_path / "checkout" / "course_pkg"  # tmp_path is under /tmp on Linux
    package.mkdir(parents=True)
    (package / "marker.txt").write_text("visible")
    real = sandbox._python_paths
    monkeypatch.setattr(sandbox, "_python_paths", lambda: [*real(), package])
    dirs = [tmp_path / d for d in ("private", "work", "exchange")]
    for d in dirs:
        d.mkdir()
    box = sandbox.Sandbox(sandbox.Isolation("bubblewrap", None, sized_tmpfs=iso.sized_tmpfs), sandbox.Limits(), *dirs)
    out = subprocess.run(box.command(["/bin/cat", str(package / "marker.txt")]), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout == "visible", (out.returncode, out.stdout, out.stderr[-500:])
