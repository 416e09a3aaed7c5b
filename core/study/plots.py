"""Plotly figures of a study (returned, never shown): acc(high) vs acc(low) per model with y = x and the
fitted line, and the heat map of per-class gap correlations (`core.audit.plots.model_gap_correlation`)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.audit.plots import model_gap_correlation

__all__ = ["robustness_scatter", "correlation_heatmap"]


def robustness_scatter(models: pd.DataFrame, fit: dict, *,
                       title: str = "Accuracy on high vs low spuriosity images, per model"):
    """x = acc(highest spuriosity), y = acc(lowest spuriosity), one point per model (hover: gap, effective
    robustness), the y = x line (no gap) and the least-squares line over the models."""
    df = models.dropna(subset=["acc_high", "acc_low"])
    fig = go.Figure()
    er = df.effective_robustness.fillna(np.nan) if "effective_robustness" in df else pd.Series(np.nan, index=df.index)
    fig.add_trace(go.Scatter(
        x=df.acc_high, y=df.acc_low, mode="markers+text" if len(df) <= 12 else "markers",
        text=[str(m) for m in df.model], textposition="top center", name="models",
        customdata=np.stack([df.gap, er], axis=1) if len(df) else None,
        hovertemplate="%{text}<br>acc(high) %{x:.3f}<br>acc(low) %{y:.3f}<br>gap %{customdata[0]:.3f}"
                      "<br>effective robustness %{customdata[1]:.3f}<extra></extra>"))
    lo = float(min(df.acc_high.min(), df.acc_low.min(), 1.0)) if len(df) else 0.0
    lo = max(0.0, lo - 0.05)
    fig.add_trace(go.Scatter(x=[lo, 1], y=[lo, 1], mode="lines", line=dict(dash="dash", color="gray"), name="y = x"))
    if np.isfinite(fit.get("slope", np.nan)):
        xs = np.array([df.acc_high.min(), df.acc_high.max()])
        fig.add_trace(go.Scatter(x=xs, y=fit["slope"] * xs + fit["intercept"], mode="lines",
                                 line=dict(color="#d62728"),
                                 name=f"fit: y = {fit['slope']:.2f}x + {fit['intercept']:.2f}"))
    fig.update_layout(title=title, xaxis_title="acc(highest spuriosity)", yaxis_title="acc(lowest spuriosity)",
                      template="plotly_white", legend=dict(orientation="h", yanchor="top", y=-0.18, x=0))
    return fig


def correlation_heatmap(corr: pd.DataFrame, *, title: str = "Correlation of per-class spurious gaps between models"):
    return model_gap_correlation(corr, title=title)
