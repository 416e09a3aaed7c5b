"""`dashboard.components.guard.run_page` (AppTest): user errors and bugs render as messages."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.dashboard.app_helpers import TIMEOUT, texts


def test_errors_render_as_messages_not_tracebacks():
    def app():
        import streamlit as st

        from core.errors import SpurAuditError
        from dashboard.components.guard import run_page

        def user_error():
            raise SpurAuditError("unknown dataset 'x'; valid choices: cmnist")

        def bug():
            raise KeyError("boom")

        run_page(user_error)
        run_page(bug)
        st.write("still rendering")

    at = AppTest.from_function(app, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.error[0].value == "unknown dataset 'x'; valid choices: cmnist"
    assert "KeyError" in at.error[1].value
    assert "Traceback" in texts(at.code) and "KeyError: 'boom'" in texts(at.code)    # in the expander
    assert len(at.expander) == 1
    assert "still rendering" in texts(at.markdown)
