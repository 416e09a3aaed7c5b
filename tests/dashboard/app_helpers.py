"""Helpers shared by the AppTest page tests (kept out of conftest so tests can import them)."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
TIMEOUT = 120


def open_app(workspace: str, page: str = "home") -> AppTest:
    """Run the app on ``workspace`` and switch to ``page`` (a file name in dashboard/app_pages/)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["sa_workspace"] = workspace
    at.run()
    if page != "home":
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def assert_empty_workspace_is_friendly(page: str, workspace: str) -> None:
    """An empty workspace renders a friendly message with the exact demo command, no error."""
    at = open_app(workspace, page)
    assert not at.error, texts(at.error)
    assert "python -m core demo --workspace" in texts(at.code)
    if page == "home":
        assert "This workspace is empty" in texts(at.info)
        assert [m.value for m in at.metric] == ["0"] * 6
    else:
        assert "no dataset yet" in texts(at.info)
