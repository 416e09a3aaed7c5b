"""`dashboard.components.job_monitor` (AppTest): a failed job with its log tail."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.dashboard.app_helpers import TIMEOUT, texts


def test_job_monitor_shows_a_failed_job_with_its_log(empty_workspace):
    from core import jobs
    from core.workspace import Workspace

    ws = Workspace(empty_workspace)
    job_id = jobs.submit(ws, "sleep", {"seconds": 0.2, "steps": 2, "fail": True}, device="cpu")
    assert jobs.wait(ws, job_id, timeout_s=TIMEOUT).status == "failed"

    def app(root, job_id):
        from core.workspace import Workspace
        from dashboard.components.job_monitor import job_monitor

        job_monitor(Workspace(root), [job_id], key="t")

    at = AppTest.from_function(app, args=(empty_workspace, job_id), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert f"Job #{job_id} failed" in at.error[0].value and "sleep job asked to fail" in at.error[0].value
    assert at.expander[0].label == "Log tail" and "RuntimeError" in texts(at.code)
    assert not at.button                                                    # nothing to cancel
