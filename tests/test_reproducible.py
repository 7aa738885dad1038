"""Reproducible: a homework solution runs without an error (visible and hidden checks pass) and prints exactly the
same checked outputs on two runs (fresh kernels, seeded). This is the suite's only plain run of each solution
(nbval does not run solutions/ again).

(Lecture notebooks 01 and 02 print wall-clock timings, so they are not compared byte for byte.)
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from course_utils.course.pipeline import notebook_text

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted(p for p in ROOT.glob("solutions/hw*/hw*.py") if p.stem == p.parent.name)


def _stdout(src: Path) -> list[str]:
    nb = nbformat.reads(notebook_text(src), as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(src.parent)}}).execute()
    # per cell, all of its stdout joined: how the kernel splits a stream into messages is not part of the output
    return ["".join(o.get("text", "") for o in c.outputs if o.get("output_type") == "stream" and o.get("name") == "stdout")
            for c in nb.cells if c.cell_type == "code"]


@pytest.mark.slow
@pytest.mark.parametrize("src", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_solution_prints_the_same_twice(src):
    first, second = _stdout(src), _stdout(src)
    assert any(first), f"{src.name} printed nothing to compare"
    assert first == second, f"{src.name} is not reproducible: " + next(
        f"{a!r} != {b!r}" for a, b in zip(first, second) if a != b)
