"""Plotly figures of the rare-pattern toolkit (returned, never shown). Inputs are the records of
`core.rare.stats.summarise` (as DataFrames)."""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]

__all__ = ["score_curves", "regulariser_bars", "membership_bars", "canary_curve"]


def _err(values) -> list[float]:
    return [0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in values]


def score_curves(cells: pd.DataFrame, *, optimizer: str | None = None, regulariser: str = "none",
                 patterns: Sequence[str] | None = None, columns: int = 4, title: str | None = None) -> go.Figure:
    """Score vs n, one panel per pattern: mean ± s.e.m. over seeds (error bars), the n = 0 band (mean ±
    s.e.m. of the clean models, grey), significant cells (p < alpha) drawn as stars. x: n as categories."""
    df = cells.copy()
    if optimizer is not None:
        df = df[df.optimizer == optimizer]
    df = df[df.regulariser == regulariser]
    names = list(patterns) if patterns else list(dict.fromkeys(df.pattern))
    names = [p for p in names if p in set(df.pattern)]
    cols = max(1, min(columns, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    titles = []
    for p in names:
        norm = df[df.pattern == p].l2_norm.dropna() if "l2_norm" in df else pd.Series(dtype=float)
        titles.append(f"{p} (ℓ2 {norm.iloc[0]:.2f})" if len(norm) else p)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles or None, shared_yaxes=True,
                        horizontal_spacing=0.04, vertical_spacing=0.12 if rows > 1 else 0.1)
    for i, p in enumerate(names):
        r, c = i // cols + 1, i % cols + 1
        g = df[df.pattern == p].sort_values("n")
        xs = [str(int(n)) for n in g.n]
        sig = [bool(s) if s is not None and not (isinstance(s, float) and math.isnan(s)) else False
               for s in (g.significant if "significant" in g else [False] * len(g))]
        fig.add_trace(go.Scatter(
            x=xs, y=g.score_mean, mode="lines+markers", name=p, showlegend=False,
            line=dict(color=COLORS[i % len(COLORS)]),
            marker=dict(symbol=["star" if s else "circle" for s in sig], size=[12 if s else 7 for s in sig]),
            error_y=dict(type="data", array=_err(g.score_sem if "score_sem" in g else [0] * len(g)), visible=True),
            customdata=list(zip(_err(g.p_value if "p_value" in g else [0] * len(g)),
                                g.seeds if "seeds" in g else [0] * len(g))),
            hovertemplate=f"{p}" + " n=%{x}<br>score %{y:.4f}<br>p vs n=0 %{customdata[0]:.3g}<br>seeds %{customdata[1]}"
                          "<extra></extra>"), row=r, col=c)
        base = g[g.n == 0]
        if len(base):
            m0 = float(base.score_mean.iloc[0])
            s0 = _err([base.score_sem.iloc[0]])[0] if "score_sem" in base else 0.0
            fig.add_hrect(y0=max(0.0, m0 - s0), y1=m0 + max(s0, 0.002), fillcolor="gray", opacity=0.25, line_width=0,
                          row=r, col=c, exclude_empty_subplots=False)
            fig.add_hline(y=m0, line=dict(color="gray", dash="dot", width=1), row=r, col=c, exclude_empty_subplots=False)
        fig.update_xaxes(type="category", title_text="n" if r == rows else None, row=r, col=c)
    tops = (df.score_mean + pd.Series(_err(df.score_sem if "score_sem" in df else [0] * len(df)), index=df.index))
    top = float(tops.max()) if len(tops.dropna()) else 0.0
    fig.update_yaxes(range=[0, max(0.05, 1.12 * top)])
    fig.update_yaxes(title_text="spurious score", row=1, col=1)
    what = " · ".join(v for v in (optimizer, regulariser) if v)
    fig.update_layout(title=title or f"Spurious score vs n ({what}; grey band: n = 0 mean ± s.e.m.; ★ p < 0.05)",
                      template="plotly_white", height=300 * rows + 80, margin=dict(t=90))
    return fig


def regulariser_bars(cells: pd.DataFrame, *, n: int, optimizer: str | None = None,
                     patterns: Sequence[str] | None = None) -> go.Figure:
    """Left: the score at ``n`` per regulariser and pattern (mean ± s.e.m.); right: test accuracy per
    regulariser (mean over the patterns' models at ``n``)."""
    df = cells[cells.n == n]
    if optimizer is not None:
        df = df[df.optimizer == optimizer]
    if patterns:
        df = df[df.pattern.isin(list(patterns))]
    regs = list(dict.fromkeys(df.regulariser))
    fig = make_subplots(rows=1, cols=2, column_widths=[0.65, 0.35],
                        subplot_titles=(f"spurious score at n = {n}", "test accuracy"))
    for i, p in enumerate(dict.fromkeys(df.pattern)):
        g = df[df.pattern == p].set_index("regulariser").reindex(regs)
        fig.add_trace(go.Bar(x=regs, y=g.score_mean, name=p, marker_color=COLORS[i % len(COLORS)],
                             error_y=dict(type="data", array=_err(g.score_sem), visible=True)), row=1, col=1)
    if "test_accuracy_mean" in df:
        acc = df.groupby("regulariser", sort=False).test_accuracy_mean.mean().reindex(regs)
        fig.add_trace(go.Bar(x=regs, y=acc, name="test accuracy", marker_color="#7f7f7f", showlegend=False,
                             text=[f"{v:.3f}" if v == v else "" for v in acc], textposition="outside"), row=1, col=2)
        lo = float(acc.min()) if len(acc.dropna()) else 0.0
        fig.update_yaxes(range=[max(0.0, lo - 0.05), 1.0], row=1, col=2)
    fig.update_layout(barmode="group", template="plotly_white", title="Regularisation: score and accuracy",
                      height=420)
    return fig


def membership_bars(membership: pd.DataFrame, *, optimizer: str | None = None, regulariser: str = "none") -> go.Figure:
    """Attack AUROC on patterned members vs clean members of the target class (each against true
    non-members), per pattern and n; 0.5 = chance."""
    df = membership.copy()
    if optimizer is not None:
        df = df[df.optimizer == optimizer]
    df = df[df.regulariser == regulariser].sort_values(["pattern", "n"])
    xs = [f"{p} n={int(n)}" for p, n in zip(df.pattern, df.n)]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=xs, y=df.auroc_patterned, name="patterned members", marker_color="#d62728"))
    fig.add_trace(go.Bar(x=xs, y=df.auroc_clean, name="clean members (same class)", marker_color="#1f77b4"))
    fig.add_hline(y=0.5, line=dict(color="gray", dash="dash"), annotation_text="chance")
    fig.update_layout(barmode="group", template="plotly_white", yaxis_title="membership attack AUROC",
                      title="Membership inference: are the patterned examples more exposed?", height=400)
    return fig


def canary_curve(verdict: dict) -> go.Figure:
    """The canary audit: score vs n (mean ± s.e.m.), the n = 0 band, the smallest learned n marked."""
    rows = verdict.get("per_n") or []
    xs = [str(r["n"]) for r in rows]
    fig = go.Figure()
    m0, s0 = verdict.get("baseline_mean"), verdict.get("baseline_sem") or 0.0
    if m0 is not None:
        fig.add_hrect(y0=max(0.0, m0 - s0), y1=m0 + max(s0, 0.002), fillcolor="gray", opacity=0.25, line_width=0)
    sig = [bool(r.get("significant")) for r in rows]
    fig.add_trace(go.Scatter(x=xs, y=[r["score_mean"] for r in rows], mode="lines+markers", name="score",
                             marker=dict(symbol=["star" if s else "circle" for s in sig], size=[13 if s else 8 for s in sig]),
                             error_y=dict(type="data", array=_err([r.get("score_sem") for r in rows]), visible=True)))
    learned = verdict.get("learned_n")
    if learned is not None:
        fig.add_vline(x=str(learned), line=dict(color="#d62728", dash="dash"),
                      annotation_text=f"learned from n = {learned}")
    fig.update_xaxes(type="category", title_text="n patterned training images")
    fig.update_layout(template="plotly_white", yaxis_title="spurious score", height=380,
                      title=f"Canary audit ({verdict.get('pattern')}); grey band: n = 0 mean ± s.e.m.")
    return fig
