"""Fixtures for the real-browser tests: one populated workspace, one Streamlit server and one Chromium
for the whole session (see ../../shared TESTING.md: launch flags, health polling, waiting for content)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.dashboard.populate import shared_workspace

REPO = Path(__file__).resolve().parents[2]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        if os.environ.get("SPURAUDIT_REQUIRE_BROWSER") == "1":  # CI installed it: a skip would hide a failure
            pytest.fail("SPURAUDIT_REQUIRE_BROWSER=1 but chromium is not on PATH")
        pytest.skip("chromium is not installed (apt-get install -y chromium); CI installs it")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; do not run `playwright install`)")
    return path


@pytest.fixture(scope="session")
def populated(tmp_path_factory) -> dict:
    return shared_workspace(tmp_path_factory)


@contextmanager
def serve_app(workspace: str, log: Path) -> Iterator[str]:
    """Run `streamlit run dashboard/app.py` with ``SPURAUDIT_WORKSPACE=workspace`` on a free port; yields
    its URL once healthy, stops the server's process group on exit."""
    port = _free_port()
    env = {**os.environ, "SPURAUDIT_WORKSPACE": workspace, "PYTHONPATH": str(REPO),
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    with open(log, "wb") as fh:
        cmd = [sys.executable, "-m", "streamlit", "run", str(REPO / "dashboard" / "app.py"),
               "--server.headless=true", f"--server.port={port}", "--server.address=127.0.0.1",
               "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"]
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited early:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.read().decode().strip() == "ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not become healthy in 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="session")
def app_url(populated, chromium_path, tmp_path_factory):
    """Start `streamlit run dashboard/app.py` against the populated workspace on a free port."""
    with serve_app(populated["root"], tmp_path_factory.mktemp("streamlit") / "server.log") as url:
        yield url


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 2000})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    try:
        yield pg
    finally:
        context.close()
