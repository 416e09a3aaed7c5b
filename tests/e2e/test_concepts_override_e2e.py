"""Real browser (Playwright + Chromium): a per-class concept override typed into the Automation page's
table reaches the clip-rank job. AppTest cannot edit a data_editor, so this is where the table's own
editing is checked: pick a class in the search box, add it, retype its core cell, add a second class (the edit is kept),
launch.
The job is cancelled at once: its params are what is checked (not CLIP)."""
from __future__ import annotations

import time

import pytest

from tests.e2e.browser_helpers import open_page, screenshot, wait_idle
from tests.e2e.conftest import serve_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def tex_app(tmp_path_factory, chromium_path):
    from core.data import build_dataset
    from core.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("ws"))
    build_dataset(ws, "digits-on-textures", "tex", n_train=20, n_val=20, n_test=10, size=32, digit_size=(16, 24),
                  rho=0.9)
    with serve_app(str(ws.root), tmp_path_factory.mktemp("streamlit") / "server.log") as url:
        yield ws, url


def test_a_typed_override_reaches_the_job(browser, tex_app):
    from core import jobs

    ws, url = tex_app
    context = browser.new_context(viewport={"width": 1400, "height": 2000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        open_page(page, url, "automation")
        wait_idle(page)
        page.get_by_text("Random-init weights (tests the plumbing", exact=False).first.click()
        wait_idle(page)
        picker = page.get_by_role("combobox", name="Add an override for class")
        picker.click()
        page.keyboard.type("7")
        page.keyboard.press("Enter")
        wait_idle(page)
        page.get_by_role("button", name="Add override").click()
        wait_idle(page)
        grid = page.locator("[data-testid='stDataFrame']").first
        grid.wait_for()
        box = grid.bounding_box()
        # the core cell of the first row: last column, first body row (glide grid rows are 35 px)
        page.mouse.dblclick(box["x"] + box["width"] - 30, box["y"] + 35 + 17)  # open the cell's editor
        editor = page.locator("textarea.gdg-input")                              # glide's overlay editor
        editor.fill("a digit seven, a numeral")
        editor.press("Enter")
        wait_idle(page)
        picker.click()                        # a second class: the typed edit must survive the table's reset
        page.keyboard.type("2")
        page.keyboard.press("Enter")
        wait_idle(page)
        page.get_by_role("button", name="Add override").click()
        wait_idle(page)
        screenshot(page, "automation_per_class_override")
        page.get_by_role("button", name="Rank by concept as a job").click()
        deadline = time.monotonic() + 60
        while not [j for j in ws.list_jobs() if j.kind == "clip-rank"]:
            assert time.monotonic() < deadline, page.locator("[data-testid='stAlert']").all_inner_texts()
            time.sleep(0.25)
        (job,) = [j for j in ws.list_jobs() if j.kind == "clip-rank"]
        jobs.cancel(ws, job.id)
        assert job.params["per_class"]["7"]["core"] == ["a digit seven", "a numeral"]
        assert "water" in job.params["per_class"]["7"]["spurious"]
        assert job.params["per_class"]["2"]["core"] == ["a 2"] and list(job.params["per_class"]) == ["2", "7"]
    finally:
        context.close()
