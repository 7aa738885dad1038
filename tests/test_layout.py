"""The package's import rule (README, "Layout"), enforced:

* the library never imports the ``course`` machinery (``course_utils.course``);
* a model module imports only the base modules (data, metrics, training, plotting, checks) and model modules of
  earlier chapters; a base module imports no model module, except where LAYOUT says so below;
* a widget module imports the library and ``widgets._base`` only: never a notebook, never the machinery;
* notebooks and homework import only the library (never the machinery);
* every module of the package has a place in LAYOUT, so a new chapter's author adds one line here and in the README.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "course_utils"

BASE = ["data", "metrics", "training", "plotting", "checks"]
# model families in chapter order: a model may import the ones before it, never the ones after
MODELS = ["flows", "vae", "priors", "vq", "gan", "score", "diffusion", "ode", "flow_matching"]
MACHINERY = "course"


def _imports(path: Path, where: str | None = None) -> set[str]:
    """The course_utils submodules (first component after the package) that ``path`` imports; ``where`` is its place
    in the checkout (default: where it is), e.g. ``course_utils/widgets/beta.py``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    rel_parts = Path(where or path.relative_to(ROOT)).with_suffix("").parts  # ('course_utils', 'widgets', 'beta')
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "course_utils" and len(parts) > 1:
                    found.add(parts[1])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] != "course_utils":
                    continue
                names = parts[1:2] or [a.name for a in node.names]
            else:
                package = list(rel_parts[:-1])  # the package this module (or __init__) belongs to
                base = package[:len(package) - (node.level - 1)]
                parts = base + (node.module.split(".") if node.module else [])
                if parts[:1] != ["course_utils"]:
                    continue
                names = parts[1:2] or [a.name for a in node.names]
            found.update(n for n in names if n)
    return found


def _library_modules() -> list[Path]:
    return sorted(p for p in PKG.glob("*.py") if p.name != "__init__.py")


def test_every_module_has_a_place_in_the_layout():
    known = set(BASE) | set(MODELS)
    for p in _library_modules():
        assert p.stem in known, (f"course_utils/{p.name} has no place in the layout: add it to BASE or MODELS in "
                                 "tests/test_layout.py (in chapter order) and to the README's Layout section")
    assert {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == {"widgets", MACHINERY}


@pytest.mark.parametrize("path", _library_modules() + [PKG / "__init__.py"], ids=lambda p: p.stem)
def test_library_modules_import_only_what_the_layout_allows(path):
    imported = _imports(path) - {"__init__", "seed_everything", "get_device", "set_threads", "default_threads"}
    assert MACHINERY not in imported, f"{path.name} imports the course machinery; the library never does"
    assert "widgets" not in imported, f"{path.name} imports widgets; only notebooks use the widgets"
    if path.stem in MODELS:
        allowed = set(BASE) | set(MODELS[:MODELS.index(path.stem)])
        bad = sorted(imported - allowed)
        assert not bad, (f"model module {path.name} imports {bad}; a model imports only {BASE} and earlier "
                         f"models {MODELS[:MODELS.index(path.stem)]}")
    elif path.stem in BASE:
        # training builds on the base modules only; the others are leaves
        bad = sorted(imported & set(MODELS))
        assert not bad, f"base module {path.name} imports model modules {bad}"


@pytest.mark.parametrize("path", sorted((PKG / "widgets").glob("*.py")), ids=lambda p: p.stem)
def test_widget_modules_import_the_library_only(path):
    text = path.read_text()
    assert MACHINERY not in _imports(path), f"widgets/{path.name} imports the course machinery"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            assert not any(m.startswith("notebooks") for m in mods), f"widgets/{path.name} imports a notebook ({mods})"
    assert "import_module" not in text and "runpy" not in text and "nbformat" not in text, \
        f"widgets/{path.name} loads code dynamically (a notebook?)"


def _sources():
    return sorted(ROOT.glob("notebooks/[0-9][0-9]_*.py")) + sorted(ROOT.glob("solutions/hw*/hw*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.stem)
def test_notebooks_and_homework_import_only_the_library(path):
    text = path.read_text()
    assert "course_utils.course" not in text and "from course_utils import course" not in text, \
        f"{path.name} imports the course machinery; notebooks and homework use only the library"


def test_the_rule_catches_a_violation(tmp_path):
    """The checker itself can fail: the machinery or a later model imported by a model or a widget is caught."""
    probe = tmp_path / "probe.py"
    probe.write_text("from .course import pipeline\nfrom . import diffusion\nimport course_utils.vae\n")
    assert _imports(probe, "course_utils/flows.py") == {"course", "diffusion", "vae"}
    probe.write_text("from ..course.grading import grade\nfrom ._base import Explorer\nfrom ..plotting import figure_png\n")
    assert _imports(probe, "course_utils/widgets/gan.py") == {"course", "widgets", "plotting"}
