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

# A local favicon: a ":material/..." page icon makes the browser fetch an SVG from fonts.gstatic.com,
# a request to the outside from a tool that must work offline (tests/e2e/test_injection_e2e.py).
st.set_page_config(page_title="SpurAudit", page_icon=str(_REPO / "assets" / "brand" / "favicon.png"), layout="wide")

#: (section, file, title, icon) in navigation order — the layout of docs/DESIGN.md "Dashboard layout".
PAGE_TABLE = [
    ("Start", "home.py", "Home", ":material/home:"),
    ("Start", "new_audit.py", "New audit", ":material/add_circle:"),
    ("Audit", "dataset.py", "Dataset", ":material/dataset:"),
    ("Audit", "features.py", "Features", ":material/label:"),
    ("Audit", "rankings.py", "Rankings", ":material/sort:"),
    ("Audit", "gaps.py", "Gaps", ":material/bar_chart:"),
    ("Audit", "embeddings.py", "Embeddings", ":material/scatter_plot:"),
    ("Audit", "crops.py", "Crops & sensitivity", ":material/crop:"),
    ("Audit", "automation.py", "Automation", ":material/smart_toy:"),
    ("Act", "mitigate.py", "Mitigate", ":material/healing:"),
    ("Act", "rare.py", "Rare patterns", ":material/pattern:"),
    ("Act", "report.py", "Report", ":material/description:"),
]
SECTIONS: dict[str, list] = {}
for section, file, title, icon in PAGE_TABLE:
    if (_PAGES / file).exists():   # pages land with the issues that build them
        SECTIONS.setdefault(section, []).append(st.Page(str(_PAGES / file), title=title, icon=icon,
                                                        default=file == "home.py"))

page = st.navigation(SECTIONS)
keep_shared_state()
with st.sidebar:
    run_page(sidebar)
page.run()
