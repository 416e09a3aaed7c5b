"""`core.figures.safe_figure`: user strings in Plotly figures are shown literally (issue 15 item 5)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from core.figures import escape_plotly_text, safe_figure

LINK = '<a href="http://evil.example.invalid/x">cat & dog</a>'
DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard"


def test_escape_plotly_text():
    assert escape_plotly_text(LINK) == '&lt;a href="http://evil.example.invalid/x"&gt;cat &amp; dog&lt;/a&gt;'
    assert escape_plotly_text("plain") == "plain"


def test_safe_figure_escapes_data_and_layout_but_not_our_templates():
    fig = go.Figure(go.Bar(x=np.array([LINK, "b"], dtype=object), y=[1.0, 2.0], name=LINK, text=[LINK, "b"],
                           customdata=[[3], [4]], hovertemplate="%{x}<br>gap %{y:.2f}<extra></extra>"))
    fig.update_layout(title=f"model {LINK}", xaxis_title=LINK,
                      annotations=[dict(text=LINK, x=0, y=0, showarrow=False)])
    fig.update_xaxes(tickvals=[0, 1], ticktext=[LINK, "b"])
    safe = safe_figure(fig)
    bar = safe.data[0]
    for value in (bar.x[0], bar.name, bar.text[0], safe.layout.title.text, safe.layout.xaxis.title.text,
                  safe.layout.annotations[0].text, safe.layout.xaxis.ticktext[0]):
        assert "<a" not in value and "&lt;a href" in value
    assert bar.hovertemplate == "%{x}<br>gap %{y:.2f}<extra></extra>"      # SpurAudit's own markup stays
    assert list(bar.y) == [1.0, 2.0] and [list(r) for r in bar.customdata] == [[3], [4]]
    assert fig.layout.title.text == f"model {LINK}"                        # a copy: the input is unchanged


def test_pages_show_figures_only_through_the_escaping_wrapper():
    offenders = [p.name for p in (DASHBOARD / "app_pages").glob("*.py")
                 if re.search(r"\.plotly_chart\(", p.read_text())]   # st.plotly_chart, column.plotly_chart
    assert not offenders, f"use dashboard.components.charts.plotly_chart (escapes names) in {offenders}"
