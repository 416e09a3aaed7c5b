"""Plotly figures for single-method mitigation runs (the audit's and the comparison's figures come
from `core.audit.plots` / `core.mitigate.compare`). Helpers return a figure and never show it; they
only format numbers that `core` computed."""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import plotly.graph_objects as go


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
