"""JupyterLab in headless Chromium, driven by Playwright.

A session fixture starts JupyterLab on a free loopback port with a random token, fresh settings, config and
runtime folders, and a copy of the course (the browser saves notebooks; the checkout must not change). The
browser may talk to that server only: every other request is aborted and recorded, and the session fails if
there was one. The server and its kernels are always shut down, also when a test fails, and a watchdog kills
them after ``COURSE_BROWSER_LIMIT`` seconds (default 1200) so the suite always stops by itself.

Screenshots go to ``browser-artifacts/`` (or ``$COURSE_BROWSER_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-quic", "--disable-default-apps", "--disable-extensions", "--mute-audio"]
LAB_SETTINGS = {  # quiet, deterministic JupyterLab: no news or update checks, every cell kept in the DOM
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def chromium_executable() -> str:
    exe = os.environ.get("COURSE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail("no Chromium found: install Debian's `chromium` package (see the README) or set COURSE_CHROMIUM")
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def artifacts() -> Path:
    out = Path(os.environ.get("COURSE_BROWSER_ARTIFACTS", ROOT / "browser-artifacts"))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return out


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """A running JupyterLab: yields ``(base_url, token, root_dir)``."""
    from course_utils.course.grading import kill_tree

    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "course"
    for part in ("notebooks", "exercises", "solutions"):
        shutil.copytree(ROOT / part, root / part, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    settings = tmp / "settings"
    for rel, value in LAB_SETTINGS.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(value))
    port, token = _free_port(), secrets.token_hex(24)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
           "JUPYTER_DATA_DIR": str(tmp / "data"), "TQDM_DISABLE": "0"}  # PATH: set by tests/conftest.py
    env.pop("JUPYTER_TOKEN", None)
    # the environment's own kernelspec must stay visible although JUPYTER_DATA_DIR moved
    env["JUPYTER_PATH"] = os.pathsep.join([str(Path(sys.prefix) / "share" / "jupyter"), env.get("JUPYTER_PATH", "")])
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--expose-app-in-browser", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly", "--ServerApp.open_browser=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp / "server.log", "w")
    server = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    limit = float(os.environ.get("COURSE_BROWSER_LIMIT", "1200"))
    watchdog = threading.Timer(limit, lambda: kill_tree(server))
    watchdog.daemon = True
    watchdog.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited at start:\n{(tmp / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail("JupyterLab did not answer within 90 s")
            time.sleep(0.5)
        yield base, token, root
    finally:
        watchdog.cancel()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                pass
        kill_tree(server)  # and any kernel left behind
        log.close()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_executable(), args=CHROMIUM_FLAGS, headless=True, timeout=60_000)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def external_requests():
    """URLs the page tried to reach outside the server (all aborted); checked at the end of the session."""
    seen: list[str] = []
    yield seen
    assert not seen, f"the browser tried to reach non-loopback addresses: {seen[:5]}"


@pytest.fixture()
def page(browser, lab, external_requests):
    base, token, _ = lab
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    pg = context.new_page()
    pg.set_default_timeout(60_000)

    def only_loopback(route):
        if route.request.url.startswith(base + "/") or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            external_requests.append(route.request.url)
            route.abort()

    pg.route("**/*", only_loopback)
    pg.page_errors = []  # uncaught JavaScript errors in the page
    pg.on("pageerror", lambda err: pg.page_errors.append(str(err)))
    try:
        yield pg
    finally:
        context.close()
