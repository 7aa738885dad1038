"""Every visible ✓ in a homework means the answer is right: each catalogued wrong answer fails its task's VISIBLE check
with a message that names the mistake.

Each homework keeps a catalogue ``solutions/hwNN_name/mistakes.py`` beside its source::

    MISTAKES = [dict(task="task1", name="...", says="substring of the check's message", code="def ...: ..."), ...]

For each homework one kernel (cwd = the solution folder) runs the student notebook (the generated exercise with every
answer cell filled from the solution, so the check cells are exactly the visible checks a student runs), then for
each mistake: runs its ``code``, runs the task's visible check cell ``{task}_check``, and requires a ``CheckFailed``
whose message contains ``says`` (case-insensitive); then re-runs the true solution cell to restore the state.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from submissions import solved

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


def _error(cell) -> tuple[str, str] | None:
    errors = [o for o in cell.outputs if o.output_type == "error"]
    return (errors[0].ename, errors[0].evalue) if errors else None


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.mark.slow
@pytest.mark.parametrize("hw", HOMEWORK, ids=[h.split("_")[0] for h in HOMEWORK])
def test_visible_checks_catch_every_catalogued_mistake(course, hw):
    mistakes = load_catalogue(hw)
    nb = solved(course, hw=hw)
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    tasks = sorted({gid[: -len("_solution")] for gid, c in by_id.items()
                    if gid and gid.endswith("_solution") and c.cell_type == "code"})
    for m in mistakes:
        assert f"{m['task']}_check" in by_id and f"{m['task']}_solution" in by_id, \
            f"{hw} mistake {m['name']!r} names task {m['task']!r}, which has no code solution and check cell"
    thin = {t: n for t in tasks if (n := sum(m["task"] == t for m in mistakes)) < 3}
    assert not thin, f"{hw}: every coded task needs at least three catalogued mistakes; too few for {thin}"

    os.environ["TQDM_DISABLE"] = "1"  # inherited by the kernel
    client = NotebookClient(nb, timeout=180, allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "solutions" / hw)}})
    failures = []
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            client.execute_cell(cell, index)
            err = _error(cell)
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            assert err is None, f"{hw}: the solution notebook fails in cell {gid}: {err[0]}: {err[1]}"

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
            planted = run(m["code"])
            err = _error(planted)
            if err is not None:
                failures.append(f"{label}: its code itself fails ({err[0]}: {err[1]}); fix the catalogue entry")
            else:
                check = run(by_id[f"{m['task']}_check"].source)
                err = _error(check)
                if err is None:
                    failures.append(f"{label}: PASSES the visible check ({_stdout(check).strip()[-200:]!r})")
                elif err[0] != "CheckFailed":
                    failures.append(f"{label}: fails with {err[0]}: {err[1][:300]} instead of a CheckFailed message")
                elif m["says"].lower() not in err[1].lower():
                    failures.append(f"{label}: the check says {err[1][:300]!r}, which does not contain {m['says']!r}")
            restored = run(by_id[f"{m['task']}_solution"].source)
            assert _error(restored) is None, f"{label}: re-running the true solution failed: {_error(restored)}"
    assert not failures, f"{len(failures)} of {len(mistakes)} catalogued mistakes are not caught:\n" + "\n".join(failures)
