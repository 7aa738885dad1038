"""Fake homework submissions for the grading tests, made from the generated exercise and the solution; each
homework's catalogue of plausible wrong answers.

A catalogue is ``solutions/hwNN_name/mistakes.py`` beside the homework source::

    MISTAKES = [dict(task="task1", name="...", says="substring of the check's message", code="def ...: ..."), ...]

tests/test_homework.py puts each ``code`` in place of its task's solution, runs the task's VISIBLE check, and
requires a ``CheckFailed`` whose message contains ``says`` (case-insensitive). Every coded task needs at least three.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import nbformat

from course_utils.course.pipeline import Course, notebook_text

HW = "hw01_change_of_variables"
ROOT = Path(__file__).resolve().parents[1]
HOMEWORK = sorted(p.name for p in ROOT.glob("solutions/hw*") if (p / f"{p.name}.py").exists())


def load_catalogue(hw: str) -> list[dict]:
    """The MISTAKES list of ``solutions/<hw>/mistakes.py`` (validated); a missing catalogue is an error."""
    path = ROOT / "solutions" / hw / "mistakes.py"
    assert path.exists(), f"{hw} has no mistake catalogue: every homework needs a catalogue ({path.relative_to(ROOT)})"
    spec = importlib.util.spec_from_file_location(f"mistakes_{hw}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    mistakes = getattr(module, "MISTAKES", None)
    assert isinstance(mistakes, list) and mistakes, f"{path.name} of {hw} should define a non-empty list MISTAKES"
    for i, m in enumerate(mistakes):
        assert isinstance(m, dict) and {"task", "name", "says", "code"} <= set(m), \
            f"{hw} mistake {i} should be dict(task=..., name=..., says=..., code=...), got {m!r:.200}"
        assert m["says"].strip(), f"{hw} mistake {m['name']!r}: `says` is empty, so any message would match"
    return mistakes


def _notebooks(course: Course, hw: str = HW):
    exercise = nbformat.read(course.root / "exercises" / hw / f"{hw}.ipynb", as_version=4)
    solution = nbformat.reads(notebook_text(course.assignment(hw)), as_version=4)
    return exercise, solution


def solved(course: Course, overrides: dict[str, str] | None = None, hw: str = HW) -> nbformat.NotebookNode:
    """The student notebook with every answer cell filled from the solution (minus its markers), then ``overrides``."""
    exercise, solution = _notebooks(course, hw)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    nb = copy.deepcopy(exercise)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            src = "\n".join(ln for ln in answers[gid].splitlines() if "### BEGIN SOLUTION" not in ln and "### END SOLUTION" not in ln)
            cell.source = src
        if overrides and gid in overrides:
            cell.source = overrides[gid]
    return nb


def unsolved(course: Course, hw: str = HW) -> nbformat.NotebookNode:
    return _notebooks(course, hw)[0]


WRONG = {
    "task1_solution": "def planar_log_det(x, u, w, b):\n    return torch.zeros(len(x))\n",
    "task2_solution": ("def lognormal_log_prob(y, mu, sigma):\n"
                       "    x = torch.log(y)\n"
                       "    return -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)\n"),
    "task4_solution": "def fit_flow(x_train):\n    return Flow([ElementwiseAffine(2)])\n",
}


def write_batch(course: Course, folder: Path) -> dict[str, tuple[str, float | None]]:
    """Write the fake batch to ``folder``; return student -> (expected status, expected autograded total)."""
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(solved(course), folder / "alice_solution.ipynb")
    nbformat.write(solved(course, WRONG), folder / "bob_wrong.ipynb")
    nbformat.write(solved(course, {"task1_solution": "while True:\n    pass\n"}), folder / "carol_endless.ipynb")
    nbformat.write(solved(course, {"task2_solution": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"}),
                   folder / "dave_killer.ipynb")
    (folder / "erin_invalid.ipynb").write_text('{"cells": [ this is not json')
    deleted = solved(course)
    deleted.cells = [c for c in deleted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "task2_check"]
    sub = folder / "frank_deleted"  # the folder layout: <student>/<any name>.ipynb
    sub.mkdir()
    nbformat.write(deleted, sub / "my_homework.ipynb")
    nbformat.write(unsolved(course), folder / "gina_unsolved.ipynb")
    return {
        "alice_solution": ("graded", 10),
        "bob_wrong": ("graded", 3),            # only task 3 is right
        "carol_endless": ("timeout", 8),       # task 1 interrupted, the rest graded
        "dave_killer": ("kernel died", None),
        "erin_invalid": ("invalid notebook", None),
        "frank_deleted": ("cells restored", 10),
        "gina_unsolved": ("graded", 0),        # every check fails on the stubs, hidden ones too
    }
