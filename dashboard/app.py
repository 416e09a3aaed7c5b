"""SpurAudit dashboard entry point: ``streamlit run dashboard/app.py``.

Routes with ``st.navigation`` to the pages in ``dashboard/app_pages/``, in three sections (Start,
Audit, Act; see docs/DESIGN.md "Dashboard layout"), and draws the sidebar (workspace folder, dataset,
model — kept in session state — and the active-jobs count) inside the same guard as the pages. Each
page is thin: it reads the workspace, calls `core`, renders.
"""
from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(_REPO))

import streamlit as st  # noqa: E402

from dashboard.components.guard import run_page  # noqa: E402
from dashboard.components.state import keep_shared_state, sidebar  # noqa: E402

# Not "pages/": a folder of that name beside the entry point turns on Streamlit's legacy multipage mode,
# which runs a deep-linked page (/features) without this script (no sidebar, no page config).
_PAGES = Path(__file__).resolve().parent / "app_pages"

st.set_page_config(page_title="SpurAudit", page_icon=":material/troubleshoot:", layout="wide")

SECTIONS = {
    "Start": [
        st.Page(str(_PAGES / "home.py"), title="Home", icon=":material/home:", default=True),
    ],
    "Audit": [
        st.Page(str(_PAGES / "features.py"), title="Features", icon=":material/label:"),
        st.Page(str(_PAGES / "rankings.py"), title="Rankings", icon=":material/sort:"),
        st.Page(str(_PAGES / "gaps.py"), title="Gaps", icon=":material/bar_chart:"),
        st.Page(str(_PAGES / "crops.py"), title="Crops & sensitivity", icon=":material/crop:"),
    ],
    "Act": [
        st.Page(str(_PAGES / "mitigate.py"), title="Mitigate", icon=":material/healing:"),
        st.Page(str(_PAGES / "report.py"), title="Report", icon=":material/description:"),
    ],
}

page = st.navigation(SECTIONS)
keep_shared_state()
with st.sidebar:
    run_page(sidebar)
page.run()
