"""Real-browser tests of the issue-12 flows (Playwright + Debian Chromium): a gap-bar click lands on
that class's ranking, label-and-advance by keyboard, and a lasso selection on the Embeddings page
shows those images. Screenshots in /tmp/screens/."""
from __future__ import annotations

import time

import pytest

from tests.dashboard.populate import DATASET, MODEL
from tests.e2e.browser_helpers import open_page, screenshot, wait_idle

pytestmark = pytest.mark.browser


def test_gap_bar_click_opens_that_class_in_rankings(page, app_url):
    open_page(page, app_url, "gaps")
    page.wait_for_selector(".js-plotly-plot .bars path")
    wait_idle(page)
    label = page.locator(".js-plotly-plot .yaxislayer-above .ytick text").nth(0).text_content()  # bottom bar
    index, name = label.split(": ", 1)
    screenshot(page, "gaps_view")
    bar = page.locator(".js-plotly-plot .bars path").nth(0).bounding_box()   # plotly's drag layer is on top:
    page.mouse.click(bar["x"] + bar["width"] / 2, bar["y"] + bar["height"] / 2)   # click where the bar is
    page.get_by_role("heading", name="Spuriosity rankings").wait_for()
    page.get_by_text(f"images of class {name} ranked by spuriosity").wait_for()
    wait_idle(page)
    assert index.isdigit()
    screenshot(page, "rankings_from_gap_click")


def test_label_and_advance_by_keyboard(page, app_url, populated):
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    n0 = len(ws.labels(DATASET, MODEL))
    top0 = populated["top_features"][0]
    open_page(page, app_url, "features")
    page.get_by_label("Annotator", exact=True).fill("kb")
    page.get_by_label("Annotator", exact=True).press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Next unlabelled").click()
    page.get_by_text(f"Now labelling · #3 · feature {top0[2]}").wait_for()
    wait_idle(page)
    page.locator("h1").click()                                   # focus out of the text box
    page.keyboard.press("3")                                     # spurious background, save and advance
    deadline = time.monotonic() + 60
    while len(ws.labels(DATASET, MODEL)) == n0:
        assert time.monotonic() < deadline, "the keyboard answer never reached the workspace"
        time.sleep(0.25)
    row = ws.labels(DATASET, MODEL).iloc[-1]
    assert (row.class_index, row.feature, row.answer, row.annotator, row.source) == \
        (0, top0[2], "spurious_background", "kb", "human")
    page.get_by_text(f"Now labelling · #4 · feature {top0[3]}").wait_for()
    screenshot(page, "features_keyboard")
    ws.delete_labels([int(row.id)])


def test_embedding_lasso_selection_shows_images(page, app_url):
    open_page(page, app_url, "embeddings")
    page.wait_for_selector(".js-plotly-plot .main-svg")
    wait_idle(page)
    box = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x0 + 0.05 * w, y0 + 0.05 * h)
    page.mouse.down()
    for fx, fy in ((0.95, 0.05), (0.95, 0.95), (0.05, 0.95), (0.05, 0.06)):
        page.mouse.move(x0 + fx * w, y0 + fy * h, steps=8)
    page.mouse.up()
    page.get_by_text("selected image(s)").wait_for()
    wait_idle(page)
    assert page.locator("[data-testid='stImage']").count() >= 1
    screenshot(page, "embeddings_selection")
