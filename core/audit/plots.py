"""Plotly figures for the audit (returned, never shown)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

__all__ = ["gap_bar", "gap_scatter", "model_gap_correlation", "sensitivity_bars", "importance_bar",
           "spuriosity_histogram"]


def _names(idx: Sequence[int], class_names: Sequence[str] | None) -> list[str]:
    return [str(class_names[i]) if class_names is not None and 0 <= i < len(class_names) else str(i) for i in idx]


def gap_bar(per_class: pd.DataFrame, *, class_names: Sequence[str] | None = None, title: str = "Spurious gap per class"):
    """Bar chart of per-class gaps with their bootstrap interval (error bars); negative gaps in red."""
    df = per_class[per_class.ranked].sort_values("gap") if "ranked" in per_class else per_class.sort_values("gap")
    names = _names(df.class_index.tolist(), class_names)
    err_hi = (df.ci_high - df.gap).clip(lower=0).fillna(0)
    err_lo = (df.gap - df.ci_low).clip(lower=0).fillna(0)
    fig = go.Figure(go.Bar(x=names, y=df.gap, marker_color=np.where(df.gap < 0, "#d62728", "#1f77b4"),
                           error_y=dict(type="data", array=err_hi, arrayminus=err_lo, symmetric=False),
                           customdata=np.stack([df.acc_high, df.acc_low, df.k], axis=1) if len(df) else None,
                           hovertemplate="%{x}<br>gap %{y:.3f}<br>acc high %{customdata[0]:.3f}"
                                         "<br>acc low %{customdata[1]:.3f}<br>k %{customdata[2]}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="class", yaxis_title="acc(high) − acc(low)", template="plotly_white")
    return fig


def gap_scatter(per_class: pd.DataFrame, *, class_names: Sequence[str] | None = None,
                title: str = "Accuracy on high vs low spuriosity images"):
    """acc(low) (x) vs acc(high) (y) per class with the y = x line (effective robustness view)."""
    df = per_class.dropna(subset=["gap"])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=df.acc_low, y=df.acc_high, mode="markers", text=_names(df.class_index.tolist(), class_names),
                             hovertemplate="%{text}<br>low %{x:.3f}<br>high %{y:.3f}<extra></extra>", name="classes"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dash", color="gray"), name="y = x"))
    fig.update_layout(title=title, xaxis_title="acc(lowest spuriosity)", yaxis_title="acc(highest spuriosity)",
                      template="plotly_white")
    return fig


def model_gap_correlation(corr: pd.DataFrame, *, title: str = "Correlation of per-class gaps across models"):
    """Heat map of the model x model correlation of per-class gaps."""
    fig = go.Figure(go.Heatmap(z=corr.values, x=[str(c) for c in corr.columns], y=[str(i) for i in corr.index],
                               zmin=-1, zmax=1, colorscale="RdBu", text=np.round(corr.values, 2), texttemplate="%{text}"))
    fig.update_layout(title=title, template="plotly_white")
    return fig


def sensitivity_bars(summary: pd.DataFrame, *, title: str = "Accuracy drop under masked corruptions"):
    """Grouped bars: drop with the mask vs with a random region of equal area, per corruption."""
    fig = go.Figure([go.Bar(x=summary.corruption, y=summary.drop_masked, name="masked region"),
                     go.Bar(x=summary.corruption, y=summary.drop_random, name="random region, equal area")])
    fig.update_layout(barmode="group", title=title, yaxis_title="accuracy drop", template="plotly_white")
    return fig


def importance_bar(features: Sequence[int], importance: Sequence[float], *, verdicts: Sequence[str] | None = None,
                   title: str = "Top features"):
    """Bar chart of a class's top feature importances, coloured by verdict when given."""
    colors = {"spurious": "#d62728", "core": "#2ca02c"}
    marker = [colors.get(v, "#7f7f7f") for v in verdicts] if verdicts is not None else None
    fig = go.Figure(go.Bar(x=[f"#{int(j)}" for j in features], y=list(importance), marker_color=marker))
    fig.update_layout(title=title, xaxis_title="feature", yaxis_title="importance", template="plotly_white")
    return fig


def spuriosity_histogram(scores: np.ndarray, *, title: str = "Spuriosity (within-class z-score)"):
    """Histogram of spuriosity scores (NaN dropped)."""
    s = np.asarray(scores, dtype=float)
    fig = go.Figure(go.Histogram(x=s[~np.isnan(s)], nbinsx=50))
    fig.update_layout(title=title, xaxis_title="spuriosity", yaxis_title="images", template="plotly_white")
    return fig
