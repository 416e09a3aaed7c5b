"""Report page (AppTest): the download of the saved report, and the report job."""
from __future__ import annotations

from pathlib import Path

from tests.dashboard.app_helpers import assert_empty_workspace_is_friendly, open_app, texts
from tests.dashboard.populate import DATASET


def test_empty_workspace_is_friendly(empty_workspace):
    assert_empty_workspace_is_friendly("report", empty_workspace)


def test_report_page_offers_download_and_launches_the_report_job(populated):
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    at = open_app(populated["root"], "report")
    downloads = at.get("download_button")
    assert len(downloads) == 1 and "KiB" in texts(at.caption)
    assert Path(populated["report"]).name in texts(at.caption)

    n_jobs = len(ws.list_jobs())
    at.button(key="report_go").click().run()
    assert not at.exception
    jobs_now = ws.list_jobs()
    assert len(jobs_now) == n_jobs + 1
    job = jobs_now[0]
    assert (job.kind, job.params["step"], job.params["dataset"], job.params["split"]) == \
        ("audit-step", "report", DATASET, "test")
    assert f"Job #{job.id}" in texts(at.markdown)                          # the monitor shows it
    if ws.get_job(job.id).active:                                          # cancel through the UI
        at.button(key=f"report_jobs__cancel_{job.id}").click().run()
        assert not at.exception
        assert ws.get_job(job.id).status == "cancelled"
