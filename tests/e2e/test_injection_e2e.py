"""Markdown/HTML injection through names (issue 15 item 5), in a real browser.

The hostile workspace of `tests/e2e/hostile.py` names its classes, dataset, model, annotator and
notes with Markdown images and links, raw HTML, bare URLs, ``<script>`` and Streamlit's extensions.
Every page of the dashboard is visited with every request to a host other than the dashboard's own
blocked and recorded; the test asserts that none was attempted, that no ``<img>``, ``<a>``, ``<iframe>``
or ``<script>`` built from a payload exists in the page (or its frames), and that the names are on the
pages as literal text (so the check is not vacuous).
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

from dashboard.app import PAGE_TABLE
from tests.e2e.browser_helpers import SCREENS, wait_idle
from tests.e2e.conftest import serve_app
from tests.e2e.hostile import EVIL_HOST, build_hostile_workspace

pytestmark = pytest.mark.browser

APP_PAGES = Path(__file__).resolve().parents[2] / "dashboard" / "app_pages"

#: pages where the current class's name must appear as literal text
SHOWS_CLASS_NAMES = {"features", "rankings", "gaps"}
#: elements a payload could create; the selectors match what the hostile names point at
INJECTED = ", ".join([
    f"img[src*='{EVIL_HOST}']", f"a[href*='{EVIL_HOST}']", f"[*|href*='{EVIL_HOST}']",   # also SVG xlink:href f"iframe[src*='{EVIL_HOST}']",
    f"source[src*='{EVIL_HOST}']", "img[src$='d.png']", "img[src$='m.png']", "a[href$='d.png']",
    "a[href^='mailto:']", f"a[href*='www.{EVIL_HOST}']",
])


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    return build_hostile_workspace(base / "ws", base / "scratch")


def _url_path(file: str) -> str:
    return "" if file == "home.py" else file.removesuffix(".py")


def _injected(page) -> list[str]:
    found = []
    for frame in page.frames:
        try:
            found += frame.eval_on_selector_all(INJECTED, "els => els.map(e => e.outerHTML.slice(0, 160))")
            found += frame.eval_on_selector_all(
                "script", "els => els.filter(e => e.textContent.includes('window.INJ')).map(e => e.outerHTML)")
            if frame.evaluate("() => typeof window.INJ !== 'undefined'"):
                found.append("window.INJ was set by a <script> payload")
        except Exception as exc:  # a frame that navigated away mid-check is not evidence either way
            if "detached" not in str(exc).lower():
                raise
    return found


def test_no_page_renders_a_name_as_markdown_or_html(hostile, browser, tmp_path):
    outside: list[str] = []
    pages = [file for _, file, _, _ in PAGE_TABLE if (APP_PAGES / file).exists()]
    # the session's Chromium (tests/e2e/conftest.py): a second sync Playwright in one process fails
    with serve_app(hostile["root"], tmp_path / "server.log") as url:
        context = browser.new_context(viewport={"width": 1400, "height": 2000})

        def route(r):
            host = urlparse(r.request.url).hostname
            if r.request.url.startswith(("data:", "blob:", "about:")) or host in ("127.0.0.1", "localhost"):
                r.continue_()
            else:
                outside.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.set_default_timeout(90_000)
        problems: dict[str, list[str]] = {}
        for file in pages:
            path = _url_path(file)
            page.goto(f"{url}/{path}")
            page.wait_for_selector("h1")
            wait_idle(page)
            SCREENS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENS / f"injection-{path or 'home'}.png"), full_page=True)
            found = _injected(page)
            if found:
                problems[file] = found
            if path in SHOWS_CLASS_NAMES:
                html = page.content().replace("\u2060", "")   # md_escape's word joiners break auto-links
                assert f"![px](http://{EVIL_HOST}/c" in html, \
                    f"{file}: the hostile class name is not on the page as text, so the check would be vacuous"
        context.close()
    assert not outside, f"the browser requested outside hosts: {sorted(set(outside))[:10]}"
    assert not problems, f"elements built from user-supplied names: {problems}"
