"""Plotly figures of dashboard-only views (the audit's and the comparison's figures come from
`core.audit.plots` / `core.mitigate.compare`), and `plotly_chart`, the one way a page shows a figure.
Helpers return a figure and never show it; they only format numbers that `core` computed."""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.figures import safe_figure


def plotly_chart(fig: go.Figure, *, escaped: bool = False, **kwargs):
    """``st.plotly_chart`` of ``fig`` with its user strings (class, model, dataset, concept names) made
    literal (`core.figures.safe_figure`: Plotly text would turn ``<a href>`` in a name into a link).
    Every page shows figures through this; returns what ``st.plotly_chart`` returns (the selection).
    ``escaped=True``: ``fig`` already is `safe_figure`'s output (a figure cached by
    `dashboard.resources.safe_chart`), so the costly copy is not made again."""
    return st.plotly_chart(fig if escaped else safe_figure(fig), **kwargs)


def run_comparison_figure(table: pd.DataFrame, *, metrics: Sequence[str],
                          title: str = "Mitigation runs") -> go.Figure:
    """Grouped bars: one group per metric, one bar per run (``method #id``)."""
    fig = go.Figure()
    for _, row in table.iterrows():
        vals = [row.get(m) for m in metrics]
        fig.add_bar(name=f"{row['method']} #{int(row['run'])}", x=list(metrics),
                    y=[None if v is None or pd.isna(v) else float(v) * 100 for v in vals],
                    hovertemplate="%{x}: %{y:.1f}%<extra>%{fullData.name}</extra>")
    fig.update_layout(barmode="group", title=title, yaxis_title="%", height=400,
                      margin=dict(l=40, r=10, t=50, b=40), legend=dict(orientation="h", y=-0.2))
    return fig


def gap_before_after_figure(before: pd.DataFrame, after: dict[str, pd.DataFrame], *,
                            class_names: Sequence[str] | None = None) -> go.Figure:
    """Per-class gaps before (the audited model) and after each run: grouped bars in points.
    ``before`` / each ``after[name]``: columns class_index, gap."""
    fig = go.Figure()

    def label(c: int) -> str:
        return class_names[c] if class_names and c < len(class_names) else str(c)

    series = {"before": before, **after}
    for name, df in series.items():
        df = df.dropna(subset=["gap"])
        fig.add_bar(name=name, x=[label(int(c)) for c in df["class_index"]], y=df["gap"].astype(float) * 100)
    fig.add_hline(y=0, line_color="black", line_width=1)
    fig.update_layout(barmode="group", title="Per-class spurious gap before / after", yaxis_title="points",
                      height=380, margin=dict(l=40, r=10, t=50, b=40), legend=dict(orientation="h", y=-0.2))
    fig.update_xaxes(type="category")
    return fig


def gap_view_figure(view: pd.DataFrame, *, title: str) -> go.Figure:
    """Horizontal bars of the classes in ``view`` (columns class_index, name, gap, ci_low, ci_high, k;
    in display order, top row first), readable and clickable at any class count because the page
    passes a top/bottom-N view. Each bar's ``customdata[0]`` is its class index (the page's selection
    handler reads it)."""
    df = view.iloc[::-1]                                     # plotly draws the first row at the bottom
    gap = df["gap"].astype(float) * 100
    err_hi = ((df["ci_high"].astype(float) * 100) - gap).clip(lower=0).fillna(0)
    err_lo = (gap - df["ci_low"].astype(float) * 100).clip(lower=0).fillna(0)
    labels = [f"{int(c)}: {n}" for c, n in zip(df["class_index"], df["name"])]
    fig = go.Figure(go.Bar(
        y=labels, x=gap.tolist(), orientation="h", marker_color=["#d62728" if g < 0 else "#1f77b4" for g in gap],
        error_x=dict(type="data", array=err_hi.tolist(), arrayminus=err_lo.tolist(), symmetric=False),
        customdata=df[["class_index", "k"]].astype(int).values.tolist(),     # plain lists: readable JSON
        hovertemplate="%{y}<br>gap %{x:+.1f} pts<br>k %{customdata[1]}<extra>click to open in Rankings</extra>"))
    fig.update_layout(title=title, xaxis_title="gap, points (acc high − acc low)", template="plotly_white",
                      height=max(260, 22 * len(df) + 110), margin=dict(l=10, r=10, t=50, b=40))
    fig.update_yaxes(type="category", automargin=True)
    return fig


def embedding_figure(points: pd.DataFrame, *, colour: str, categorical: bool, title: str,
                     height: int = 520) -> go.Figure:
    """Scatter of a 2-D projection: ``points`` has columns x, y, row (the feature-set row, in each
    point's ``customdata[0]`` for the page's selection handler), label (hover text) and ``colour``.
    Categorical colours get one trace per value (legend); numeric ones a colour scale (NaN grey)."""
    fig = go.Figure()
    hover = "%{text}<extra></extra>"
    if categorical:
        for value, df in points.groupby(colour, sort=True, dropna=False):
            fig.add_trace(go.Scattergl(x=df.x.tolist(), y=df.y.tolist(), mode="markers", name=str(value),
                                       text=df.label.tolist(), customdata=df[["row"]].astype(int).values.tolist(),
                                       marker=dict(size=5, opacity=0.75), hovertemplate=hover))
    else:
        finite = points[points[colour].notna()]
        missing = points[points[colour].isna()]
        if len(missing):
            fig.add_trace(go.Scattergl(x=missing.x.tolist(), y=missing.y.tolist(), mode="markers", name="no value",
                                       text=missing.label.tolist(),
                                       customdata=missing[["row"]].astype(int).values.tolist(),
                                       marker=dict(size=4, color="#bbbbbb", opacity=0.6), hovertemplate=hover))
        fig.add_trace(go.Scattergl(x=finite.x.tolist(), y=finite.y.tolist(), mode="markers", name=colour,
                                   text=finite.label.tolist(), customdata=finite[["row"]].astype(int).values.tolist(),
                                   marker=dict(size=5, opacity=0.8, color=finite[colour].astype(float).tolist(),
                                               colorscale="Viridis", showscale=True,
                                               colorbar=dict(title=colour)), hovertemplate=hover))
    fig.update_layout(title=title, template="plotly_white", height=height, dragmode="lasso",
                      margin=dict(l=10, r=10, t=50, b=10), legend=dict(itemsizing="constant"))
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    return fig
