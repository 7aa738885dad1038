"""The generated exercise: its scaffolding runs, and every visible check fails on the unsolved stub.

(Hidden checks on the stub are covered by the grading test: the unsolved notebook scores 0.)
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = sorted(ROOT.glob("exercises/hw*/hw*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", EXERCISES, ids=[p.stem for p in EXERCISES])
def test_scaffolding_runs_and_checks_fail_on_the_stubs(path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=120, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    n_checks = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        errors = [o for o in cell.outputs if o.output_type == "error"]
        where = f"{path.name} cell {cell.id}"
        if meta.get("grade") and not meta.get("solution"):
            n_checks += 1
            assert errors, f"{where}: this check PASSES on the unsolved stub; it does not test the student's code"
            assert errors[0].ename == "CheckFailed", f"{where}: fails with {errors[0].ename}, not a clear check message"
            text = "\n".join(errors[0].get("traceback", []))
            assert "Check failed" in text and "Traceback" not in text, f"{where}: the student sees a stack trace"
        elif meta.get("solution"):
            assert not errors or errors[0].ename == "NotImplementedError", f"{where}: the stub fails with {errors[0].ename}"
        else:
            assert not errors, f"{where}: scaffolding fails on the stub: {errors[0].ename}: {errors[0].evalue}"
    assert n_checks >= 4
