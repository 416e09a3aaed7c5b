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


def test_job_monitor_shows_a_queued_job_with_its_position_and_cancels_it(empty_workspace):
    """Issue 14: a job waiting for its device shows its place in the queue; Cancel removes it and it
    never starts."""
    from core import jobs
    from core.workspace import Workspace

    ws = Workspace(empty_workspace)
    jobs.set_job_slots(ws, "cpu", 1)
    holder = ws.add_job("sleep", {"seconds": 0.1, "device": "cpu"}, device="cpu")   # holds the slot:
    ws.update_job(holder, pid=-1)          # "being started", so nothing else may take the CPU slot
    first = ws.add_job("sleep", {"seconds": 0.1, "device": "cpu"}, device="cpu")
    second = ws.add_job("sleep", {"seconds": 0.1, "device": "cpu"}, device="cpu")
    assert jobs.queue_positions(ws) == {first: 1, second: 2}

    def app(root, ids):
        from core.workspace import Workspace
        from dashboard.components.job_monitor import job_monitor

        job_monitor(Workspace(root), ids, key="t", poll_s=60)

    at = AppTest.from_function(app, args=(empty_workspace, [second]), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert "position 2 in its queue (1 job ahead)" in texts(at.info) and "cpu" in texts(at.info)
    assert [b.label for b in at.button] == ["Cancel queued job"]
    at.button[0].click().run()
    job = ws.get_job(second)
    assert job.status == "cancelled" and job.pid is None and job.started is None
    assert jobs.queue_positions(ws) == {first: 1}
    for j in (holder, first):
        jobs.cancel(ws, j)
