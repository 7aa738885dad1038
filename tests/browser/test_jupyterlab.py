"""What a student and an instructor see in JupyterLab, tested in headless Chromium.

* every lecture notebook (found, not listed) runs top to bottom with no error in any cell;
* every widget those notebooks show responds: each slider, dropdown and (unselected) button is operated in the page and the
  widget's picture must change (compared as screenshot bytes), with no error; each state is saved as a PNG;
* a percent ``.py`` source opens as a notebook through jupytext, and a generated exercise renders;
* nbgrader's formgrader, opened inside JupyterLab, lists the homework assignments.

Run with ``make browser-test`` (see the README).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
LECTURES = sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"))
ASSIGNMENTS = sorted(p.name for p in ROOT.glob("solutions/hw*") if (p / f"{p.name}.py").exists())
RUN_LIMIT_MS = 300_000  # a lecture's budget is 120 s on 2 cores; the browser adds rendering


# --- helpers -----------------------------------------------------------------------------------
def open_lab(page, lab):
    base, token, _ = lab
    page.goto(f"{base}/lab?reset&token={token}")  # reset: no tabs restored from an earlier test
    page.wait_for_function("() => window.jupyterapp !== undefined")
    page.evaluate("async () => { await window.jupyterapp.started; await window.jupyterapp.restored; }")


def open_document(page, path: str, factory: str | None = None):
    args = {"path": path, **({"factory": factory} if factory else {})}
    page.evaluate("async (args) => { const w = await window.jupyterapp.commands.execute('docmanager:open', args);"
                  " await w.context.ready; await w.revealed;"
                  " document.querySelectorAll('[data-course-current]').forEach(e => e.removeAttribute('data-course-current'));"
                  " w.node.setAttribute('data-course-current', '1'); }", args)


CURRENT = "[data-course-current] .jp-Notebook"  # the notebook of the tab opened last


def wait_kernel_idle(page, timeout_ms: int = 120_000):
    page.wait_for_function("""() => {
        const w = window.jupyterapp.shell.currentWidget;
        const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
        return !!k && k.status === 'idle';
    }""", timeout=timeout_ms)


def notebook_json(page) -> dict:
    return page.evaluate("() => window.jupyterapp.shell.currentWidget.content.model.toJSON()")


def cell_errors(nb: dict) -> list[str]:
    found = []
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            if out["output_type"] == "error":
                found.append(f"cell {i}: {out['ename']}: {out['evalue']}")
            elif out["output_type"] == "stream" and out.get("name") == "stderr" and "Traceback" in "".join(out["text"]):
                found.append(f"cell {i}: a traceback on stderr")
    return found


def run_all(page):
    page.evaluate("""() => {
        window.__courseRunAll = 'running';
        window.jupyterapp.commands.execute('notebook:run-all-cells').then(
            ok => { window.__courseRunAll = ok ? 'done' : 'failed'; },
            err => { window.__courseRunAll = 'error: ' + err; });
    }""")
    page.wait_for_function("() => window.__courseRunAll !== 'running'", timeout=RUN_LIMIT_MS, polling=1000)
    wait_kernel_idle(page)
    return page.evaluate("() => window.__courseRunAll")


def widget_roots(page) -> int:
    """Mark each top-level widget view in an output with data-course-widget=i; return how many."""
    return page.evaluate("""() => {
        const roots = Array.from(document.querySelectorAll('[data-course-current] .jp-OutputArea-output .jupyter-widgets'))
            .filter(e => !e.parentElement.closest('.jupyter-widgets'));
        roots.forEach((e, i) => e.setAttribute('data-course-widget', String(i)));
        return roots.length;
    }""")


def picture(root) -> bytes:
    """What the widget shows: its images if it has any, else the whole widget."""
    images = root.locator(".widget-image")
    if images.count():
        return b"".join(images.nth(i).screenshot() for i in range(images.count()))
    return root.screenshot()


def wait_for_new_picture(root, before: bytes, timeout_s: float = 45.0) -> bytes:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        now = picture(root)
        if now != before:
            time.sleep(0.5)  # let the redraw settle, then read it again
            return picture(root)
        time.sleep(0.5)
    return before


def operate(page, control, kind: str) -> str:
    """Operate one control like a person would; return a short label of what was done."""
    control.scroll_into_view_if_needed()
    if kind == "slider":
        box = control.bounding_box()
        track = control.locator("xpath=ancestor::*[contains(@class,'noUi-target')][1]").bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        dx = 0.3 * track["width"] * (1 if x < track["x"] + track["width"] / 2 else -1)
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + dx / 2, y, steps=5)
        page.mouse.move(x + dx, y, steps=5)
        page.mouse.up()
        return "slider"
    if kind == "dropdown":
        options = control.locator("option").all_inner_texts()
        current = control.input_value()
        nxt = next(o for o in options if o != current)
        control.select_option(label=nxt)
        return f"dropdown-{nxt}"
    control.click()
    return "button"


# --- tests -------------------------------------------------------------------------------------
def test_lectures_are_found():
    assert LECTURES, "no lecture notebooks found under notebooks/"


@pytest.mark.parametrize("path", LECTURES, ids=[p.stem for p in LECTURES])
def test_lecture_runs_and_its_widgets_respond(page, lab, artifacts, path):
    open_lab(page, lab)
    open_document(page, f"notebooks/{path.name}")
    wait_kernel_idle(page)
    t0 = time.time()
    status = run_all(page)
    seconds = time.time() - t0
    nb = notebook_json(page)
    page.screenshot(path=str(artifacts / f"{path.stem}-after-run-all.png"))
    assert status == "done", f"{path.name}: run all cells ended with {status!r}"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), f"{path.name}: some cells did not run"
    assert not cell_errors(nb), f"{path.name}: errors in the page: {cell_errors(nb)}"
    print(f"{path.name}: ran {len(code)} code cells in {seconds:.0f} s in the browser")

    n = widget_roots(page)
    report = {"notebook": path.name, "run_seconds": round(seconds, 1), "widgets": []}
    for i in range(n):
        root = page.locator(f'[data-course-widget="{i}"]')
        controls = ([("slider", h) for h in root.locator(".widget-slider .noUi-handle").all()]
                    + [("dropdown", s) for s in root.locator(".widget-dropdown select").all()]
                    + [("button", b) for b in root.locator("button.jupyter-button:not(.mod-active)").all()])
        if not controls:
            continue  # a display-only widget (e.g. a finished progress bar)
        root.scroll_into_view_if_needed()
        before = picture(root)
        root.screenshot(path=str(artifacts / f"{path.stem}-widget{i}-00-initial.png"))
        states = []
        for k, (kind, control) in enumerate(controls, start=1):
            label = operate(page, control, kind)
            after = wait_for_new_picture(root, before)
            shot = artifacts / f"{path.stem}-widget{i}-{k:02d}-{label}.png"
            root.screenshot(path=str(shot))
            assert after != before, f"{path.name}: widget {i} did not update its picture after operating its {label}"
            errors = cell_errors(notebook_json(page))
            assert not errors, f"{path.name}: widget {i} raised after its {label}: {errors}"
            assert not page.page_errors, f"{path.name}: JavaScript errors after its {label}: {page.page_errors}"
            states.append(shot.name)
            before = after
        report["widgets"].append({"index": i, "controls": [k for k, _ in controls], "screenshots": states})
    (artifacts / f"{path.stem}-widgets.json").write_text(json.dumps(report, indent=1))
    assert not page.page_errors, page.page_errors


def test_percent_source_opens_as_a_notebook(page, lab, artifacts):
    src = LECTURES[0].with_suffix(".py")
    open_lab(page, lab)
    open_document(page, f"notebooks/{src.name}", factory="Jupytext Notebook")
    info = page.evaluate("""() => { const w = window.jupyterapp.shell.currentWidget;
        return {label: w.title.label, cells: w.content && w.content.model ? w.content.model.cells.length : 0}; }""")
    assert info["label"] == src.name
    expected_cells = json.loads(LECTURES[0].read_text())["cells"]
    assert info["cells"] == len(expected_cells), "the .py source and its .ipynb pair should have the same cells"
    heading = page.locator(f"{CURRENT} .jp-MarkdownOutput h1").first
    heading.wait_for()
    assert heading.inner_text().startswith(LECTURES[0].stem[:2])
    page.wait_for_function("() => document.querySelectorAll('[data-course-current] mjx-container').length > 0")
    page.screenshot(path=str(artifacts / f"{src.stem}-py-as-notebook.png"))
    assert not page.page_errors, page.page_errors


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_exercise_renders(page, lab, artifacts, name):
    open_lab(page, lab)
    open_document(page, f"exercises/{name}/{name}.ipynb")
    heading = page.locator(f"{CURRENT} .jp-MarkdownOutput h1").first
    heading.wait_for()
    assert "Homework" in heading.inner_text()
    n_cells = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.model.cells.length")
    assert n_cells == len(json.loads((ROOT / "exercises" / name / f"{name}.ipynb").read_text())["cells"])
    assert page.locator(CURRENT).get_by_text("raise NotImplementedError()").count() >= 1
    page.screenshot(path=str(artifacts / f"{name}-exercise.png"))
    assert not page.page_errors, page.page_errors


def test_formgrader_lists_the_assignments(page, lab, artifacts):
    open_lab(page, lab)
    page.evaluate("async () => { await window.jupyterapp.commands.execute('nbgrader:open-formgrader'); }")
    frame = page.frame_locator("iframe").last
    for name in ASSIGNMENTS:
        frame.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
    assert frame.get_by_text("could not be created").count() == 0, "nbgrader's exchange is not set up (nbgrader_config.py)"
    page.screenshot(path=str(artifacts / "formgrader.png"))
    assert not page.page_errors, page.page_errors
