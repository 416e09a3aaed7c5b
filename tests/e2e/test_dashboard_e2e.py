"""Real-browser tests (Playwright + Debian Chromium) against one `streamlit run dashboard/app.py` server
on the shared populated workspace. Each test saves a screenshot to /tmp/screens/."""
from __future__ import annotations

import time

import pytest

from tests.dashboard.populate import DATASET, MODEL
from tests.e2e.browser_helpers import open_page, screenshot

pytestmark = pytest.mark.browser


def test_home_page_lists_the_workspace(page, app_url, populated):
    open_page(page, app_url)
    page.get_by_text("What to do next").wait_for()
    page.get_by_role("heading", name="Runs").wait_for()                     # the last table of the page
    assert page.get_by_text(populated["root"]).count() >= 1
    screenshot(page, "home")


def test_label_a_feature_through_the_ui(page, app_url, populated):
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    n0 = len(ws.labels(DATASET, MODEL))
    open_page(page, app_url, "features")
    feature = populated["top_features"][0][4]
    form = page.locator("[data-testid='stForm']").nth(4)                    # the 5th feature's form
    form.wait_for()
    unlabelled = page.get_by_text("Verdict: not labelled yet")
    n_unlabelled = unlabelled.count()
    assert n_unlabelled >= 1
    page.get_by_label("Annotator", exact=True).fill("bob")
    page.get_by_label("Annotator", exact=True).press("Enter")
    form.get_by_text("Spurious: background").click()
    form.get_by_label("Note (optional)").fill("green background")
    form.get_by_role("button", name="Save label").click()
    deadline = time.monotonic() + 60
    while len(ws.labels(DATASET, MODEL)) == n0:
        assert time.monotonic() < deadline, "the label never reached the workspace database"
        time.sleep(0.25)
    row = ws.labels(DATASET, MODEL).iloc[-1]
    assert (row.class_index, row.feature, row.answer, row.annotator, row.source, row.note) == \
        (0, feature, "spurious_background", "bob", "human", "green background")
    deadline = time.monotonic() + 60                                        # the page re-derives the verdict
    while unlabelled.count() != n_unlabelled - 1:
        assert time.monotonic() < deadline, "the verdict of the labelled feature was not updated"
        time.sleep(0.25)
    form.get_by_role("button", name="Save label").wait_for()
    screenshot(page, "features")
    ws.delete_labels([int(row.id)])


def test_gaps_chart_is_drawn(page, app_url):
    open_page(page, app_url, "gaps")
    page.wait_for_selector(".js-plotly-plot .main-svg")
    page.wait_for_selector(".js-plotly-plot .bars path")                    # the bars themselves
    assert page.get_by_text("Pooled gap", exact=True).count() == 1          # the metric, not the table header
    screenshot(page, "gaps")


def test_rankings_and_crops_pages_render(page, app_url):
    open_page(page, app_url, "rankings")
    page.get_by_text("page 1 of").first.wait_for()
    page.locator("[data-testid='stImage']").nth(23).wait_for()              # a full first page (24)
    screenshot(page, "rankings")
    open_page(page, app_url, "crops")
    page.get_by_text("Accuracy after crop").wait_for()
    page.get_by_text("Feature sensitivity", exact=True).wait_for()
    page.wait_for_selector(".js-plotly-plot .main-svg")
    screenshot(page, "crops")
    open_page(page, app_url, "report")
    page.get_by_role("button", name="Download report (HTML)").wait_for()
    screenshot(page, "report")


def test_launch_a_tiny_mitigation_job(page, app_url, populated):
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    n_runs = len(ws.list_runs())
    open_page(page, app_url, "mitigate")
    form = page.locator("[data-testid='stForm']")
    form.get_by_role("button", name="Debias and compare").wait_for()
    # head tuning only, on the CPU, one epoch
    form.locator("[data-testid='stMultiSelect']").get_by_role("button", name="Remove error-tuning").click()
    epochs = form.get_by_role("spinbutton", name="Head epochs")
    epochs.fill("1")
    epochs.press("Tab")
    form.get_by_role("button", name="Debias and compare").click()
    page.get_by_text("Job #").first.wait_for()
    screenshot(page, "mitigate_running")
    job = ws.list_jobs(limit=1)[0]
    assert job.kind == "compare" and job.params["methods"] == ["head-tuning"]
    assert job.params["configs"]["head-tuning"]["epochs"] == 1
    # the monitor polls until the job ends, then the page reruns and shows the new comparison
    deadline = time.monotonic() + 300
    while ws.get_job(job.id).active:
        assert time.monotonic() < deadline, "the mitigation job did not finish in 300 s"
        time.sleep(1)
    done = ws.get_job(job.id)
    assert done.status == "done", done.error
    run_id = done.result["run_id"]
    page.get_by_text(f"Job #{job.id} · compare on auto · done").wait_for(timeout=60_000)   # the monitor
    assert len(ws.list_runs()) == n_runs + 1 and ws.get_run(run_id).status == "done"
    page.wait_for_selector(".js-plotly-plot .main-svg")
    screenshot(page, "mitigate_done")
