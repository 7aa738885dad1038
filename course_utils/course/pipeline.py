"""Build and check the course's generated files.

Sources of truth (hand-edited):

- ``notebooks/NN_name.py``: lecture notebooks, jupytext percent format;
- ``solutions/hwNN_name/hwNN_name.py``: homework, percent format with nbgrader cell metadata,
  ``### BEGIN SOLUTION`` / ``### END SOLUTION`` and ``### BEGIN HIDDEN TESTS`` blocks.

Generated (committed, never hand-edited):

- ``notebooks/NN_name.ipynb`` and ``solutions/hwNN_name/hwNN_name.ipynb`` (no outputs, stable cell ids);
- ``exercises/hwNN_name/hwNN_name.ipynb``: the student version, made by nbgrader's ``generate_assignment``.

:func:`build` writes them; :func:`check` returns a list of problems (empty when everything is in date and
nothing leaks).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat

__all__ = ["Course", "build", "check", "notebook_text", "secret_lines", "stage_source"]

SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
_ID_OK = re.compile(r"[^a-zA-Z0-9_-]")


@dataclass
class Course:
    """Paths of a course checkout."""

    root: Path

    @classmethod
    def find(cls, start: Path | str | None = None) -> "Course":
        here = Path(start or Path.cwd()).resolve()
        for d in (here, *here.parents):
            if (d / "pyproject.toml").exists() and (d / "solutions").is_dir() and (d / "notebooks").is_dir():
                return cls(d)
        raise SystemExit(f"course: no course checkout (a folder with pyproject.toml, notebooks/ and solutions/) at or above {here}")

    @property
    def lecture_sources(self) -> list[Path]:
        return sorted(self.root.glob("notebooks/[0-9][0-9]_*.py"))

    @property
    def homework_sources(self) -> list[Path]:
        return sorted(p for p in self.root.glob("solutions/hw*/hw*.py") if p.stem == p.parent.name)

    def assignment(self, name: str) -> Path:
        """The source of homework ``name``: its full name (``hw01_change_of_variables``) or prefix (``hw01``)."""
        matches = [p for p in self.homework_sources if p.stem == name or p.stem.startswith(name + "_")]
        if len(matches) != 1:
            known = ", ".join(p.stem for p in self.homework_sources) or "none"
            raise SystemExit(f"course: no single homework called {name!r}; known: {known}")
        return matches[0]


# ---------------------------------------------------------------------------------------------
# percent source -> ipynb
# ---------------------------------------------------------------------------------------------
def _notebook_from_source(src: Path) -> nbformat.NotebookNode:
    nb = jupytext.read(src)
    nb.nbformat, nb.nbformat_minor = 4, 5
    seen: set[str] = set()
    for i, cell in enumerate(nb.cells):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        cid = _ID_OK.sub("-", grade_id) if grade_id else f"cell-{i:03d}"
        if cid in seen:
            raise ValueError(f"{src}: two cells would get the id {cid!r} (duplicate grade_id?)")
        seen.add(cid)
        cell["id"] = cid
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    jt = nb.metadata.get("jupytext", {})
    nb.metadata["jupytext"] = {"formats": jt.get("formats", "ipynb,py:percent")}
    nb.metadata.setdefault("language_info", {"name": "python"})
    return nb


def notebook_text(src: Path) -> str:
    """The ``.ipynb`` text that ``course build`` writes for a percent source (deterministic)."""
    return nbformat.writes(_notebook_from_source(src), version=4) + "\n"


def secret_lines(src: Path) -> set[str]:
    """Lines inside solution and hidden-test blocks of a homework source that appear nowhere else in it.

    None of them may appear in the student version.
    """
    inside, outside, state = set(), set(), None
    for raw in src.read_text().splitlines():
        line = raw.strip().lstrip("#").strip()
        if "BEGIN SOLUTION" in raw or "BEGIN HIDDEN TESTS" in raw:
            state = "in"
            continue
        if "END SOLUTION" in raw or "END HIDDEN TESTS" in raw:
            state = None
            continue
        if len(line) >= 12:
            (inside if state else outside).add(line)
    return inside - outside


# ---------------------------------------------------------------------------------------------
# exercises via nbgrader
# ---------------------------------------------------------------------------------------------
def stage_source(src: Path, root: Path) -> Path:
    """Lay out homework ``src`` as nbgrader's ``root/source/<name>/``: its data files and the built solution notebook
    (never the percent source). Returns that folder."""
    source = root / "source" / src.stem
    shutil.copytree(src.parent, source, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.py", "*.ipynb", "__pycache__", ".ipynb_checkpoints"))
    (source / f"{src.stem}.ipynb").write_text(notebook_text(src))
    return source


def _generate_exercises(jobs: list[tuple[Path, Path]]) -> None:
    """Run nbgrader's generate_assignment on the built solution of each ``(src, out_dir)`` (in one process); write the
    student files to ``out_dir``."""
    if not jobs:
        return
    with tempfile.TemporaryDirectory(prefix="course-build-") as tmp:
        root = Path(tmp)
        for src, _ in jobs:
            stage_source(src, root)
        cmd = [sys.executable, "-I", str(Path(__file__).with_name("_generate.py")), str(root), *(s.stem for s, _ in jobs)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
        for src, out_dir in jobs:
            name = src.stem
            release = root / "release" / name
            if proc.returncode != 0 or not (release / f"{name}.ipynb").exists():
                raise RuntimeError(f"nbgrader generate_assignment failed for {name}:\n{proc.stdout}\n{proc.stderr}")
            if out_dir.exists():
                shutil.rmtree(out_dir)
            out_dir.mkdir(parents=True)
            for f in sorted(release.rglob("*")):
                if f.is_dir():
                    continue
                dest = out_dir / f.relative_to(release)
                dest.parent.mkdir(parents=True, exist_ok=True)
                if f.suffix == ".ipynb":
                    nb = nbformat.read(f, as_version=4)
                    nb.metadata.pop("jupytext", None)  # students get a plain notebook, no paired .py
                    dest.write_text(nbformat.writes(nb, version=4) + "\n")
                else:
                    shutil.copy2(f, dest)


# ---------------------------------------------------------------------------------------------
# build and check
# ---------------------------------------------------------------------------------------------
def _select(sources: list[Path], only: list[str] | None) -> list[Path]:
    """The sources whose stem is, or starts with, one of ``only`` (all of them when ``only`` is empty)."""
    if not only:
        return sources
    return [s for s in sources if any(s.stem == o or s.stem.startswith(o + "_") for o in only)]


def build(course: Course, log=print, only: list[str] | None = None) -> None:
    """Write every generated file from its source (only those named in ``only``, e.g. ``["05", "hw05"]``, if given)."""
    lectures, homework = _select(course.lecture_sources, only), _select(course.homework_sources, only)
    if only and not lectures + homework:
        raise SystemExit(f"course build: no lecture or homework called {' or '.join(only)}")
    for src in lectures + homework:
        dest = src.with_suffix(".ipynb")
        text = notebook_text(src)
        if not dest.exists() or dest.read_text() != text:
            dest.write_text(text)
            log(f"wrote {dest.relative_to(course.root)}")
    _generate_exercises([(src, course.root / "exercises" / src.stem) for src in homework])
    for src in homework:
        log(f"generated exercises/{src.stem}/ with nbgrader")


def _compare_trees(expected: Path, actual: Path, label: str) -> list[str]:
    problems = []
    exp = {p.relative_to(expected) for p in expected.rglob("*") if p.is_file()}
    act = {p.relative_to(actual) for p in actual.rglob("*") if p.is_file()} if actual.exists() else set()
    for rel in sorted(exp - act):
        problems.append(f"{label}/{rel} is missing: run `course build`")
    for rel in sorted(act - exp):
        problems.append(f"{label}/{rel} is not generated from any source: remove it or add it to the source folder")
    for rel in sorted(exp & act):
        if (expected / rel).read_bytes() != (actual / rel).read_bytes():
            problems.append(f"{label}/{rel} is out of date: run `course build` (never edit generated files by hand)")
    return problems


def check(course: Course) -> list[str]:
    """Problems with the generated files; an empty list means all is in date and nothing leaks."""
    problems: list[str] = []
    for src in course.lecture_sources + course.homework_sources:
        dest = src.with_suffix(".ipynb")
        rel = dest.relative_to(course.root)
        if not dest.exists():
            problems.append(f"{rel} is missing: run `course build`")
        elif dest.read_text() != notebook_text(src):
            problems.append(f"{rel} is out of date with {src.name}: run `course build` (edit the .py, not the .ipynb)")
    for ipynb in sorted(course.root.glob("notebooks/*.ipynb")):
        if not ipynb.with_suffix(".py").exists():
            problems.append(f"{ipynb.relative_to(course.root)} has no percent source {ipynb.with_suffix('.py').name}")

    exercises = course.root / "exercises"
    with tempfile.TemporaryDirectory(prefix="course-check-") as tmp:
        _generate_exercises([(src, Path(tmp) / src.stem) for src in course.homework_sources])
        for src in course.homework_sources:
            problems += _compare_trees(Path(tmp) / src.stem, exercises / src.stem, f"exercises/{src.stem}")
    known = {s.stem for s in course.homework_sources}
    for d in sorted(exercises.iterdir()) if exercises.exists() else []:
        if d.is_dir() and d.name not in known:
            problems.append(f"exercises/{d.name} has no source solutions/{d.name}/{d.name}.py")

    # every autograded task is scored by a hidden test that the grader runs outside the student's kernel
    for src in course.homework_sources:
        nb = _notebook_from_source(src)
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") and not meta.get("solution"):
                hidden = cell.source.split("### BEGIN HIDDEN TESTS", 1)[1] if "### BEGIN HIDDEN TESTS" in cell.source else ""
                if "@hidden_test" not in hidden:
                    problems.append(f"{src.relative_to(course.root)}: the check cell {meta.get('grade_id')} has no "
                                    "@hidden_test in its hidden tests; `course grade` scores a task only by its hidden test")

    # nothing secret may reach the student version
    for src in course.homework_sources:
        secrets = secret_lines(src)
        for f in sorted((exercises / src.stem).rglob("*")) if (exercises / src.stem).exists() else []:
            if not f.is_file():
                continue
            rel = f.relative_to(course.root)
            if f.suffix == ".py":
                problems.append(f"{rel}: a .py file in exercises/ (sources with solutions must never be released)")
                continue
            if f.suffix != ".ipynb":
                continue
            nb = nbformat.read(f, as_version=4)
            for cell in nb.cells:
                for marker in SOLUTION_MARKERS:
                    if marker in cell.source:
                        problems.append(f"{rel}: cell {cell.get('id')} contains {marker!r}")
                cell_lines = {ln.strip().lstrip("#").strip() for ln in cell.source.splitlines()}
                for leaked in sorted(secrets & cell_lines):
                    problems.append(f"{rel}: cell {cell.get('id')} leaks solution or hidden-test code: {leaked!r}")
    return problems
