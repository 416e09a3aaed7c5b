"""Compare mitigation methods, and sweep one parameter of one method.

`compare` runs several registered methods (`core.mitigate.registry.METHODS`: erm, jtt, mrm, dcwp,
head-tuning, error-tuning, ffw, ...) on the same data and base model, over several seeds, and returns
a `ComparisonResult`: one row per (method, seed) with the test metrics every run reports (selection
happened on val inside each method; test is only read from the finished results), a summary table
(mean ± std over seeds per method, plus the base model as "vanilla"), and — when a spuriosity ranking
of the evaluation split is given — per-class spurious gaps of the base model and of each method's
model (first seed). `ComparisonResult.save(ws, rel_dir)` writes ``comparison.json``,
``comparison.md`` and ``figure.json`` (Plotly) through the workspace.

`sweep` runs one method over a list of values of one config parameter (e.g. DCWP's ``lambda_sparse``
or FFW's ``gamma``) and returns a `SweepResult` whose figure plots accuracy against sparsity and
against bias leakage (bias decodability).

Plot helpers return Plotly figures and never show them.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import nn

from core.audit.gaps import GapConfig, spurious_gaps
from core.device import resolve_device
from core.errors import SpurAuditError
from core.figures import safe_figure
from core.mitigate.data import SPLITS
from core.mitigate.metrics import evaluate_model, model_outputs
from core.mitigate.registry import get_method
from core.progress import ProgressFn, null_progress, sub_progress

__all__ = ["ComparisonResult", "SweepResult", "compare", "sweep", "comparison_figure", "sweep_figure",
           "summary_table", "parse_sweep", "METRIC_KEYS"]

# test metrics collected per run (missing ones are NaN)
METRIC_KEYS = ("accuracy", "unbiased_accuracy", "worst_group_accuracy", "aligned_accuracy",
               "conflicting_accuracy", "bias_decodability", "bias_accuracy")
EXTRA_KEYS = ("sparsity", "wall_time_s")


def _num(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return v


def _row_from_metrics(metrics: Mapping[str, Any], split: str) -> dict[str, float]:
    part = metrics.get(split) or {}
    row = {k: _num(part.get(k)) for k in METRIC_KEYS}
    sp = metrics.get("sparsity", part.get("sparsity"))
    row["sparsity"] = _num(sp) if sp is not None else float("nan")
    row["wall_time_s"] = _num(metrics.get("wall_time_s"))
    return row


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per method: columns ``<metric>_mean``, ``<metric>_std``, ``n_seeds``."""
    cols = [c for c in (*METRIC_KEYS, *EXTRA_KEYS) if c in runs.columns]
    grouped = runs.groupby("method", sort=False)[cols]
    mean = grouped.mean().add_suffix("_mean")
    std = grouped.std(ddof=0).add_suffix("_std")
    out = pd.concat([mean, std], axis=1)
    out["n_seeds"] = runs.groupby("method", sort=False).size()
    return out.reset_index()


def _fmt(mean: float, std: float, pct: bool = True) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    scale = 100.0 if pct else 1.0
    s = f"{scale * mean:.1f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)) and std > 0:
        s += f" ± {scale * std:.1f}"
    return s


@dataclass
class ComparisonResult:
    """runs: one row per (method, seed) — method, seed, split, the `METRIC_KEYS`, sparsity,
    wall_time_s (fractions in [0, 1] except time); summary: `summary_table` of runs (with a "vanilla"
    row for the base model); gaps: per-class spurious gaps, long format (method, class_index, gap,
    acc_high, acc_low, k), empty without a ranking; pooled_gaps: method -> pooled gap;
    results: method -> list of `MitigationResult` (one per seed; kept in memory only);
    split: the evaluation split of the table ("test")."""

    runs: pd.DataFrame
    summary: pd.DataFrame
    gaps: pd.DataFrame
    pooled_gaps: dict[str, float]
    results: dict[str, list] = field(default_factory=dict, repr=False)
    split: str = "test"
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able dict (no models)."""
        def clean(df: pd.DataFrame) -> list[dict]:
            return json.loads(df.to_json(orient="records"))
        return {"split": self.split, "params": self.params, "runs": clean(self.runs),
                "summary": clean(self.summary), "gaps": clean(self.gaps) if len(self.gaps) else [],
                "pooled_gaps": {k: (None if math.isnan(v) else v) for k, v in self.pooled_gaps.items()}}

    def to_markdown(self) -> str:
        """A Markdown table: one row per method, mean ± std over seeds, in percent."""
        heads = ["method", "seeds", "accuracy", "unbiased", "worst group", "conflicting", "bias decod.",
                 "bias acc.", "sparsity", "pooled gap", "time (s)"]
        lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        for _, r in self.summary.iterrows():
            m = r["method"]
            cells = [str(m), str(int(r["n_seeds"]))]
            for key in ("accuracy", "unbiased_accuracy", "worst_group_accuracy", "conflicting_accuracy",
                        "bias_decodability", "bias_accuracy", "sparsity"):
                cells.append(_fmt(r.get(f"{key}_mean"), r.get(f"{key}_std")))
            g = self.pooled_gaps.get(m, float("nan"))
            cells.append("–" if math.isnan(g) else f"{100 * g:.1f}")
            cells.append(_fmt(r.get("wall_time_s_mean"), r.get("wall_time_s_std"), pct=False))
            lines.append("| " + " | ".join(cells) + " |")
        return f"Metrics on the {self.split} split (percent; mean ± std over seeds).\n\n" + "\n".join(lines) + "\n"

    def figure(self):
        """Plotly figure: metrics per method (bars) and, with a ranking, per-class gaps (before/after)."""
        return comparison_figure(self)

    def save(self, ws, rel_dir: str, *, html: bool = False) -> dict[str, str]:
        """Write ``comparison.json``, ``comparison.md``, ``figure.json`` (and ``figure.html`` with
        ``html=True``, self-contained) under ``rel_dir`` via the workspace; returns name -> rel path."""
        rel_dir = str(rel_dir).rstrip("/")
        out = {"comparison_json": f"{rel_dir}/comparison.json", "comparison_md": f"{rel_dir}/comparison.md",
               "figure_json": f"{rel_dir}/figure.json"}
        ws.write_json(out["comparison_json"], self.to_dict())
        ws.write_text(out["comparison_md"], self.to_markdown())
        fig = self.figure()
        ws.write_text(out["figure_json"], fig.to_json())
        if html:
            out["figure_html"] = f"{rel_dir}/figure.html"
            ws.write_text(out["figure_html"], safe_figure(fig).to_html(include_plotlyjs="inline", full_html=True))
        return out


def comparison_figure(result: ComparisonResult):
    """Bars of the main test metrics per method (error bars = std over seeds); with per-class gaps, a
    second panel of gap per class for every method (the base model is "vanilla" = before)."""
    has_gaps = len(result.gaps) > 0
    fig = make_subplots(rows=2 if has_gaps else 1, cols=1, vertical_spacing=0.15,
                        subplot_titles=(f"metrics on {result.split} (%)",
                                        "per-class spurious gap (points; vanilla = before)")[:2 if has_gaps else 1])
    metrics = [("accuracy", "accuracy"), ("unbiased_accuracy", "unbiased"), ("worst_group_accuracy", "worst group"),
               ("conflicting_accuracy", "conflicting"), ("bias_decodability", "bias decodability"),
               ("sparsity", "sparsity")]
    s = result.summary
    for key, label in metrics:
        if f"{key}_mean" not in s or s[f"{key}_mean"].isna().all():
            continue
        fig.add_trace(go.Bar(name=label, x=s["method"], y=100 * s[f"{key}_mean"],
                             error_y=dict(type="data", array=100 * s[f"{key}_std"].fillna(0))), row=1, col=1)
    if has_gaps:
        for method, part in result.gaps.groupby("method", sort=False):
            fig.add_trace(go.Scatter(name=f"gap: {method}", x=part["class_index"], y=100 * part["gap"],
                                     mode="lines+markers"), row=2, col=1)
        fig.update_xaxes(title_text="class", row=2, col=1)
    fig.update_layout(barmode="group", height=700 if has_gaps else 420, legend_title_text="")
    return fig


def _gaps_of(ranking, model: nn.Module, x, *, device, method: str) -> tuple[pd.DataFrame, float]:
    logits, _ = model_outputs(model, x, device=device)
    res = spurious_gaps(ranking, logits.argmax(1), config=GapConfig(n_boot=0))
    df = res.per_class[["class_index", "n", "k", "acc_high", "acc_low", "gap"]].copy()
    df.insert(0, "method", method)
    return df, _num(res.pooled.get("gap"))


def compare(data, base_model: nn.Module, methods: Sequence[str], *, seeds: Iterable[int] = (0,),
            configs: Mapping[str, Mapping[str, Any]] | None = None, ranking=None, split: str = "test",
            device: str = "auto", progress: ProgressFn | None = None) -> ComparisonResult:
    """Run ``methods`` × ``seeds`` on ``data`` from ``base_model`` and tabulate the ``split`` metrics.

    Args:
        data: `core.mitigate.data.MitigationData`.
        base_model: the trained model every method starts from (each run gets a deep copy).
        methods: registry names (`core.mitigate.registry.get_method` validates them).
        seeds: run seeds. configs: method name -> config dict (missing = the method's defaults).
        ranking: optional `SpuriosityResult` of the ``split`` rows (row-aligned) for per-class gaps.
        split: the reported split ("test"; methods select on val themselves).
    """
    progress = progress or null_progress
    methods = [str(m) for m in methods]
    seeds = [int(s) for s in seeds]
    if not methods:
        raise SpurAuditError("compare needs at least one method, e.g. ['erm', 'head-tuning', 'ffw']")
    if not seeds:
        raise SpurAuditError("compare needs at least one seed")
    if split not in SPLITS or not data.has_split(split):
        raise SpurAuditError(f"the data has no {split!r} split to report on")
    configs = dict(configs or {})
    unknown_cfg = sorted(set(configs) - set(methods))
    if unknown_cfg:
        raise SpurAuditError(f"configs given for methods not being compared: {unknown_cfg}")
    fns = {m: get_method(m) for m in methods}     # validates every name before anything runs
    dev = resolve_device(device)
    rows, results = [], {m: [] for m in methods}
    vanilla = evaluate_model(base_model, data, split, device=dev)
    base_row = {"method": "vanilla", "seed": -1, "split": split, **_row_from_metrics({split: vanilla}, split)}
    base_row["sparsity"] = 0.0
    total = len(methods) * len(seeds)
    done = 0
    for m in methods:
        for seed in seeds:
            sub = sub_progress(progress, done / total, (done + 1) / total)
            res = fns[m](data, base_model=copy.deepcopy(base_model), config=dict(configs.get(m) or {}), seed=seed,
                         device=dev, progress=lambda f, msg, m=m, s=seed, sub=sub: sub(f, f"{m} seed {s}: {msg}"))
            metrics = res.metrics
            if split not in metrics:
                metrics = {**metrics, split: evaluate_model(res.model, data, split, device=dev)}
            rows.append({"method": m, "seed": seed, "split": split, **_row_from_metrics(metrics, split)})
            results[m].append(res)
            done += 1
    runs = pd.DataFrame([base_row] + rows)
    summary = summary_table(runs)
    gaps = pd.DataFrame()
    pooled: dict[str, float] = {}
    if ranking is not None:
        x = data.split(split).x
        if len(ranking.labels) != len(x):
            raise SpurAuditError(f"the ranking has {len(ranking.labels)} rows but the {split} split has {len(x)}; "
                                 "rank the same split")
        parts = []
        df, pooled["vanilla"] = _gaps_of(ranking, base_model, x, device=dev, method="vanilla")
        parts.append(df)
        for m in methods:
            df, pooled[m] = _gaps_of(ranking, results[m][0].model, x, device=dev, method=m)
            parts.append(df)
        gaps = pd.concat(parts, ignore_index=True)
    progress(1.0, "comparison done")
    return ComparisonResult(runs=runs, summary=summary, gaps=gaps, pooled_gaps=pooled, results=results,
                            split=split, params={"methods": methods, "seeds": seeds,
                                                 "configs": {k: dict(v) for k, v in configs.items()}})


# ---------------------------------------------------------------------------------------------
# parameter sweep
# ---------------------------------------------------------------------------------------------
def parse_sweep(text: str) -> tuple[str, list[Any]]:
    """``"gamma=1,10,100"`` -> ("gamma", [1, 10, 100]) (values parsed as JSON when possible)."""
    if "=" not in str(text):
        raise SpurAuditError(f"sweep must look like param=v1,v2,... (e.g. gamma=1,10,100), got {text!r}")
    name, _, rest = str(text).partition("=")
    values = [v.strip() for v in rest.split(",") if v.strip()]
    if not name.strip() or not values:
        raise SpurAuditError(f"sweep {text!r} names no parameter or no values; e.g. lambda_sparse=1e-8,1e-7")
    parsed = []
    for v in values:
        try:
            parsed.append(json.loads(v))
        except json.JSONDecodeError:
            parsed.append(v)
    return name.strip(), parsed


@dataclass
class SweepResult:
    """runs: one row per (value, seed): method, param, value, seed + the `METRIC_KEYS`, sparsity,
    wall_time_s on the reported split; summary: mean/std per value."""

    method: str
    param: str
    runs: pd.DataFrame
    summary: pd.DataFrame
    split: str = "test"

    def to_dict(self) -> dict:
        return {"method": self.method, "param": self.param, "split": self.split,
                "runs": json.loads(self.runs.to_json(orient="records")),
                "summary": json.loads(self.summary.to_json(orient="records"))}

    def to_markdown(self) -> str:
        lines = [f"Sweep of {self.method}.{self.param} ({self.split}, percent, mean over seeds).", "",
                 f"| {self.param} | accuracy | unbiased | bias decod. | sparsity |", "|---|---|---|---|---|"]
        for _, r in self.summary.iterrows():
            lines.append(f"| {r['value']} | {_fmt(r['accuracy_mean'], r['accuracy_std'])} | "
                         f"{_fmt(r['unbiased_accuracy_mean'], r['unbiased_accuracy_std'])} | "
                         f"{_fmt(r['bias_decodability_mean'], r['bias_decodability_std'])} | "
                         f"{_fmt(r['sparsity_mean'], r['sparsity_std'])} |")
        return "\n".join(lines) + "\n"

    def figure(self):
        return sweep_figure(self)

    def save(self, ws, rel_dir: str) -> dict[str, str]:
        rel_dir = str(rel_dir).rstrip("/")
        out = {"sweep_json": f"{rel_dir}/sweep.json", "sweep_md": f"{rel_dir}/sweep.md",
               "figure_json": f"{rel_dir}/sweep_figure.json"}
        ws.write_json(out["sweep_json"], self.to_dict())
        ws.write_text(out["sweep_md"], self.to_markdown())
        ws.write_text(out["figure_json"], self.figure().to_json())
        return out


def sweep_figure(result: SweepResult):
    """Two panels: unbiased accuracy vs sparsity, and unbiased accuracy vs bias decodability, one
    marker per swept value (labelled), mean over seeds."""
    s = result.summary
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy vs sparsity", "accuracy vs bias decodability"))
    acc = 100 * s["unbiased_accuracy_mean"].where(s["unbiased_accuracy_mean"].notna(), s["accuracy_mean"])
    labels = [f"{result.param}={v}" for v in s["value"]]
    fig.add_trace(go.Scatter(x=100 * s["sparsity_mean"], y=acc, mode="lines+markers+text", text=labels,
                             textposition="top center", name="accuracy–sparsity"), row=1, col=1)
    fig.add_trace(go.Scatter(x=100 * s["bias_decodability_mean"], y=acc, mode="lines+markers+text", text=labels,
                             textposition="top center", name="accuracy–bias"), row=1, col=2)
    fig.update_xaxes(title_text="sparsity (%)", row=1, col=1)
    fig.update_xaxes(title_text="bias decodability (%)", row=1, col=2)
    fig.update_yaxes(title_text=f"{result.split} accuracy (%)", row=1, col=1)
    fig.update_layout(title=f"{result.method}: sweep of {result.param}", height=420, showlegend=False)
    return fig


def sweep(data, base_model: nn.Module, method: str, param: str, values: Sequence[Any], *,
          seeds: Iterable[int] = (0,), config: Mapping[str, Any] | None = None, split: str = "test",
          device: str = "auto", progress: ProgressFn | None = None) -> SweepResult:
    """Run ``method`` for each value of ``config[param]`` (and each seed); tabulate the ``split`` metrics."""
    progress = progress or null_progress
    fn = get_method(method)
    values = list(values)
    seeds = [int(s) for s in seeds]
    if not values or not seeds:
        raise SpurAuditError("sweep needs at least one value and one seed")
    dev = resolve_device(device)
    rows = []
    total, done = len(values) * len(seeds), 0
    for v in values:
        for seed in seeds:
            cfg = {**dict(config or {}), param: v}
            sub = sub_progress(progress, done / total, (done + 1) / total)
            res = fn(data, base_model=copy.deepcopy(base_model), config=cfg, seed=seed, device=dev,
                     progress=lambda f, msg, sub=sub, v=v: sub(f, f"{param}={v}: {msg}"))
            metrics = res.metrics if split in res.metrics else {**res.metrics, split: evaluate_model(res.model, data, split, device=dev)}
            rows.append({"method": method, "param": param, "value": v, "seed": seed,
                         **_row_from_metrics(metrics, split)})
            done += 1
    runs = pd.DataFrame(rows)
    runs["value_key"] = runs["value"].astype(str)
    cols = [c for c in (*METRIC_KEYS, *EXTRA_KEYS)]
    g = runs.groupby("value_key", sort=False)
    summary = pd.concat([g[cols].mean().add_suffix("_mean"), g[cols].std(ddof=0).add_suffix("_std")], axis=1)
    summary.insert(0, "value", g["value"].first())
    summary = summary.reset_index(drop=True)
    runs = runs.drop(columns="value_key")
    progress(1.0, "sweep done")
    return SweepResult(method=method, param=param, runs=runs, summary=summary, split=split)
