"""Helpers shared by the real-browser tests (kept out of conftest so tests can import them)."""
from __future__ import annotations

import os
from pathlib import Path

SCREENS = Path(os.environ.get("SPURAUDIT_SCREENS", "/tmp/screens"))


def open_page(page, app_url: str, path: str = "") -> None:
    """Go to ``/path`` and wait until the app has rendered its title."""
    page.goto(f"{app_url}/{path}")
    page.wait_for_selector("h1", timeout=60_000)


def wait_idle(page, timeout_ms: int = 60_000) -> None:
    """Wait until the script run has finished and nothing is still drawing: Streamlit's "running"
    status widget is gone, the app reports ``notRunning`` and no skeleton placeholder is left (held
    for a moment, as Streamlit's own e2e tests do)."""
    page.wait_for_selector("[data-testid='stStatusWidget']", state="detached", timeout=timeout_ms)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout_ms)
    page.wait_for_function("() => !document.querySelector(\"[data-testid='stSkeleton']\")", timeout=timeout_ms)
    page.wait_for_timeout(1000)


def screenshot(page, name: str) -> Path:
    """Save a screenshot of the settled page to SCREENS/<name>.png."""
    wait_idle(page)
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
