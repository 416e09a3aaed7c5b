"""Error handling for page bodies: user errors as ``st.error``, never a raw traceback.

``run_page(render)`` calls ``render()`` and

* shows a `core.errors.SpurAuditError` (anything the user can fix) as ``st.error(message)``;
* shows any other exception as a short ``st.error`` plus an expander holding the details, so a bug
  in one page never blanks the whole app;
* lets Streamlit's own control flow (``st.stop``, ``st.rerun``: ``BaseException`` subclasses) pass.

``NeedsSetup`` is raised by the state helpers when the workspace is missing or empty; it renders as
a friendly ``st.info`` with the exact command to run.
"""
from __future__ import annotations

import traceback
from typing import Callable

import streamlit as st

from core.errors import SpurAuditError


class NeedsSetup(Exception):
    """The page cannot render yet: the workspace lacks something. ``message`` is Markdown;
    ``command`` (optional) the exact shell command that fixes it."""

    def __init__(self, message: str, command: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.command = command


def show_setup(exc: NeedsSetup) -> None:
    st.info(exc.message, icon=":material/info:")
    if exc.command:
        st.code(exc.command, language="bash")


def show_exception(exc: BaseException) -> None:
    """Render an unexpected exception: one line of error + collapsed details."""
    st.error(f"Something went wrong on this page: {type(exc).__name__}: {exc}", icon=":material/error:")
    with st.expander("Details (for a bug report)"):
        st.code("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), language="text")


def run_page(render: Callable[[], None]) -> None:
    """Run a page body with the error policy described in the module docstring."""
    try:
        render()
    except NeedsSetup as exc:
        show_setup(exc)
    except SpurAuditError as exc:
        st.error(str(exc), icon=":material/error:")
    except Exception as exc:  # noqa: BLE001 - the whole point: never a raw traceback
        show_exception(exc)
