"""Real browser: the "Rare patterns" page draws the score-vs-n curve of a finished sweep (Plotly SVG with
one panel per pattern, error bars and the n = 0 band) and the canary audit's verdict."""
from __future__ import annotations

import pytest

from tests.e2e.browser_helpers import screenshot
from tests.e2e.conftest import serve_app
from tests.rare.fixtures import populate_rare_workspace

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def rare_ws(tmp_path_factory) -> dict:
    return populate_rare_workspace(tmp_path_factory.mktemp("rare_e2e") / "ws")


@pytest.fixture(scope="module")
def rare_url(rare_ws, chromium_path, tmp_path_factory):
    with serve_app(rare_ws["root"], tmp_path_factory.mktemp("rare_streamlit") / "server.log") as url:
        yield url


@pytest.fixture()
def rare_page(browser, rare_url):
    context = browser.new_context(viewport={"width": 1400, "height": 2000})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    try:
        yield pg
    finally:
        context.close()


def test_the_score_curve_is_drawn(rare_page, rare_url, rare_ws):
    page = rare_page
    page.goto(f"{rare_url}/rare")
    page.wait_for_selector("h1:has-text('Rare patterns')")
    # newest run first: the canary audit, with its verdict and curve
    page.get_by_text("Smallest learned n").wait_for()
    page.wait_for_selector(".js-plotly-plot .main-svg")
    # switch to the sweep and wait for its per-pattern panels to be drawn
    select = page.locator("[data-testid='stSelectbox']").filter(has_text="Run").last
    select.click()
    page.get_by_role("option", name=f"#{rare_ws['sweep']} · rare-sweep").click()
    # the sweep's figure has one panel per pattern; wait for it (the canary's figure, whose title also
    # reads "... score vs n", can still be on the page while the rerun replaces it)
    curve = page.locator(".js-plotly-plot").filter(has=page.locator(".annotation-text", has_text="s3 (ℓ2"))
    curve.wait_for()
    titles = " ".join(curve.locator(".annotation-text").all_text_contents())
    assert "s3 (ℓ2" in titles and "r3 (ℓ2" in titles
    assert "Spurious score vs n" in curve.locator(".gtitle").text_content()   # SVG text: no inner_text
    assert curve.locator(".scatterlayer .trace").count() == 2            # one curve per pattern
    assert curve.locator(".errorbars path").count() > 0                  # error bars drawn
    assert curve.locator(".layer-below .shapelayer path, .shapelayer path").count() > 0   # the n = 0 band
    screenshot(page, "rare_sweep_curve")
