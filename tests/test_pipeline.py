"""`course build` / `course check`: generated files in date, nothing secret in exercises/."""

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils.course.pipeline import Course, build, check, notebook_text, secret_lines

ROOT = Path(__file__).resolve().parents[1]
HW = "hw01_change_of_variables"


def _course_cmd(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "course_utils.course.cli", *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture()
def scratch(tmp_path):
    """A copy of the course's sources and generated files."""
    for part in ("pyproject.toml", "notebooks", "solutions", "exercises"):
        src = ROOT / part
        (shutil.copytree(src, tmp_path / part, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
         if src.is_dir() else shutil.copy(src, tmp_path / part))
    return Course(tmp_path)


def test_committed_files_are_in_date():
    proc = _course_cmd("check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing leaks" in proc.stdout


def test_build_leaves_an_in_date_tree_unchanged(scratch):
    before = {p: p.read_bytes() for p in scratch.root.rglob("*") if p.is_file()}
    build(scratch, log=lambda *_: None)
    after = {p: p.read_bytes() for p in scratch.root.rglob("*") if p.is_file()}
    assert before == after


def test_check_catches_an_edited_source(scratch):
    src = scratch.assignment("hw01")
    src.write_text(src.read_text().replace("(2 points)", "(3 points)", 1))
    problems = check(scratch)
    assert any(f"{HW}.ipynb is out of date" in p for p in problems)
    assert any(p.startswith(f"exercises/{HW}/{HW}.ipynb is out of date") for p in problems)
    build(scratch, log=lambda *_: None)
    assert check(scratch) == []


def test_check_catches_an_edited_lecture_pair(scratch):
    lectures = scratch.lecture_sources
    if not lectures:
        pytest.skip("no lecture notebooks yet")
    nb = lectures[0].with_suffix(".ipynb")
    nb.write_text(nb.read_text().replace('"source": [', '"source": [\n    "x = 1\\n",', 1))
    assert any("out of date" in p and nb.name in p for p in check(scratch))


def test_check_catches_leaked_solution_code_and_sources(scratch):
    ex = scratch.root / "exercises" / HW / f"{HW}.ipynb"
    nb = nbformat.read(ex, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "task1_solution")
    cell.source = cell.source.replace("raise NotImplementedError()", "return torch.log(torch.abs(1 + (1 - h**2) * (u @ w)))")
    nbformat.write(nb, ex)
    shutil.copy(scratch.assignment("hw01"), ex.parent / "leaked.py")
    problems = check(scratch)
    assert any("leaks solution or hidden-test code" in p for p in problems), problems
    assert any("leaked.py" in p and "never be released" in p for p in problems), problems


def test_secret_lines_cover_solutions_and_hidden_tests(course):
    secrets = secret_lines(course.assignment("hw01"))
    assert "return torch.log(torch.abs(1 + (1 - h**2) * (u @ w)))" in secrets  # a solution line
    assert "_, x_fresh, log_p_fresh = _make_data(7)" in secrets  # a hidden-test line
    assert "x = torch.randn(8, 2)" not in secrets  # visible test lines are not secret


def test_exercise_is_nbgraders_student_version(course):
    nb = nbformat.read(course.root / "exercises" / HW / f"{HW}.ipynb", as_version=4)
    assert all(c.source.strip() or c.cell_type == "markdown" for c in nb.cells)
    sol = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"]
    assert len(sol) == 4 and all("raise NotImplementedError()" in c.source for c in sol)
    assert "jupytext" not in nb.metadata
    assert not list((course.root / "exercises").rglob("*.py"))


def test_grade_cells_have_points_and_stable_ids(course):
    nb = nbformat.read(course.assignment("hw01").with_suffix(".ipynb"), as_version=4)
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert sum(c.metadata.nbgrader["points"] for c in graded) == 12
    assert all(c.id == c.metadata.nbgrader["grade_id"] for c in graded)


def test_no_lecture_or_homework_has_an_empty_code_cell(course):
    """JupyterLab's run-all never numbers an empty code cell, so a student cannot tell it ran (and the browser test
    fails); a stray blank line after a percent source's header makes one."""
    for src in course.lecture_sources + course.homework_sources:
        nb = nbformat.reads(notebook_text(src), as_version=4)
        empty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and not c.source.strip()]
        assert not empty, f"{src.name}: empty code cell(s) {empty}"
