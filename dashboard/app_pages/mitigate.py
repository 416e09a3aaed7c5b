"""Mitigate: one-click debias-and-compare. Choose methods, device and a few parameters; one background
job (`core.jobs.submit(ws, "compare", ...)`, i.e. `core.mitigate.runner.run_comparison`) runs them
all from the audited model; watch its progress (cancel any time), then compare: a table of test metrics
per method (mean ± std over seeds, the base model as "vanilla") and the engine's figure (metrics per
method; per-class spurious gaps before = vanilla / after). Single-method runs (`"mitigate"` jobs, e.g.
from the CLI) are listed too, with their per-class gaps before/after."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.audit.artifacts import load_comparison, load_comparison_figure, load_run_gaps
from core.mitigate import METHOD_CHOICES, ffw_presets, ffw_variants, method_help
from core.mitigate.jobs import relaunch_params
from core.runs import reconcile_runs
from dashboard import resources
from dashboard.components.charts import gap_before_after_figure, plotly_chart, run_comparison_figure
from dashboard.components.guard import run_page
from dashboard.components.job_monitor import job_monitor, launch, recent_jobs
from dashboard.components.state import context, md_escape

DEFAULT_METHODS = ["head-tuning", "error-tuning"]
COMPARE_KIND = "compare"
SINGLE_KIND = "mitigate"
METRICS = ["accuracy", "unbiased_accuracy", "worst_group_accuracy", "conflicting_accuracy",
           "aligned_accuracy", "bias_decodability"]


def method_choices() -> list[str]:
    return list(METHOD_CHOICES)


def method_configs(methods: list[str], *, low_k: int, head_epochs: int, ffw_epochs: int,
                   ffw_variant: str = "gates per weight (paper)", ffw_bias_budget: float = 0.5) -> dict[str, dict]:
    """The few user-set parameters as per-method config dicts (only methods whose config takes them;
    the bias budget only for the bias-ranked FFW variant, the one rule that reads it)."""
    configs: dict[str, dict] = {}
    for m in methods:
        if m in ("head-tuning", "error-tuning"):
            configs[m] = {"epochs": int(head_epochs)}
            if m == "head-tuning":
                configs[m]["k_per_class"] = int(low_k)
        elif m == "ffw":
            preset = ffw_presets()[ffw_variants()[ffw_variant]]
            configs[m] = {"max_epochs": int(ffw_epochs), **preset}
            if preset.get("structured_rule") == "bias-rank":
                configs[m]["bias_budget"] = float(ffw_bias_budget)
    return configs


def launch_form(ws, dataset: str, model: str) -> None:
    choices = method_choices()
    with st.form("mitigate_form", border=True):
        st.markdown("**New debias-and-compare run**")
        methods = st.multiselect("Methods", choices, default=[m for m in DEFAULT_METHODS if m in choices],
                                 help="\n".join(f"- **{k}**: {v}" for k, v in method_help().items()),
                                 key="mit_methods")
        c1, c2, c3, c4, c5 = st.columns(5)
        device = c1.selectbox("Device", resources.device_choices(), format_func=resources.device_label, key="mit_device",
                              help="auto = the first GPU when there is one, else the CPU")
        seeds = c2.number_input("Seeds", min_value=1, max_value=5, value=1, key="mit_seeds",
                                help="each method runs once per seed; the table shows mean ± std")
        low_k = c3.number_input("Low-spuriosity images / class", min_value=5, value=100, step=5,
                                key="mit_low_k",
                                help="head tuning: the lowest-spuriosity training images per class "
                                     "(paper: 100)")
        head_epochs = c4.number_input("Head epochs", min_value=1, max_value=100, value=20,
                                      key="mit_head_epochs",
                                      help="head / error tuning: at most this many epochs (paper: 20)")
        ffw_epochs = c5.number_input("FFW epochs", min_value=1, max_value=200, value=60, key="mit_ffw_epochs")
        ffw_variant = st.selectbox(
            "FFW variant", list(ffw_variants()), key="mit_ffw_variant",
            help="FFW needs bias labels on the val split. The paper's gates minimise the mutual information "
                 "between features and the bias without changing any weight; 'bias-ranked neurons' keeps the "
                 "bottleneck neurons the bias explains least (held-out val bias accuracy within the bias budget "
                 "below: 0.5 = at most halfway from the vanilla's to chance) and re-fits the linear head on "
                 "them with the val split.")
        ffw_bias_budget = st.slider(
            "FFW bias budget (bias-ranked variant)", min_value=0.0, max_value=1.0, value=0.5, step=0.05,
            key="mit_ffw_budget",
            help="share of the vanilla's bias accuracy above chance that may remain: 0.5 halves it; lower "
                 "removes more of the bias and usually costs task accuracy (see `benchmarks/debias_ffw.py "
                 "--sweep bias_budget=...`)")
        submitted = st.form_submit_button("Debias and compare", type="primary", icon=":material/play_arrow:",
                                          key="mit_go")
    if submitted:
        if not methods:
            st.warning("Pick at least one method.")
            return
        params = {"dataset": dataset, "model": model, "methods": list(methods),
                  "seeds": list(range(int(seeds))),
                  "configs": method_configs(list(methods), low_k=low_k, head_epochs=head_epochs,
                                            ffw_epochs=ffw_epochs, ffw_variant=ffw_variant,
                                            ffw_bias_budget=ffw_bias_budget)}
        job_id = launch(ws, COMPARE_KIND, params, device=device)
        st.toast(f"Started job #{job_id}")
        st.rerun()


def show_comparison(ws, run) -> None:
    data = load_comparison(run)
    if data is None:
        st.warning(f"Run #{run.id} has no comparison file.")
        return
    summary = pd.DataFrame(data.get("summary", []))
    pooled = data.get("pooled_gaps") or {}
    if len(summary):
        show = pd.DataFrame({"method": summary["method"], "seeds": summary.get("n_seeds")})
        for m in METRICS + ["sparsity"]:
            if f"{m}_mean" in summary and summary[f"{m}_mean"].notna().any():
                show[m] = summary[f"{m}_mean"]
        if pooled:
            show["pooled gap"] = [pooled.get(m) for m in summary["method"]]
        if "wall_time_s_mean" in summary:
            show["time (s)"] = summary["wall_time_s_mean"]
        st.dataframe(show, hide_index=True, key=f"cmp_table_{run.id}",
                     column_config={c: st.column_config.NumberColumn(format="%.3f")
                                    for c in show.columns if c not in ("method", "seeds")})
        st.caption(f"{data.get('split', 'test')} split; mean over seeds; 'vanilla' = the audited model "
                   "before mitigation; pooled gap = acc(high spuriosity) − acc(low), lower is better.")
    figure = load_comparison_figure(run)
    if figure is not None:
        plotly_chart(figure, key=f"cmp_fig_{run.id}")


def show_single_runs(ws, dataset: str, runs: list) -> None:
    rows = []
    for r in runs:
        test = (r.metrics or {}).get("test") or {}
        gaps = (r.metrics or {}).get("gaps") or {}
        rows.append({"run": r.id, "method": r.method, "status": r.status,
                     **{m: test.get(m) for m in METRICS if m in test},
                     "gap before": gaps.get("before"), "gap after": gaps.get("after")})
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True, key="single_runs_table",
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in table.columns if c not in ("run", "method", "status")})
    done = table[table.status == "done"]
    metric_cols = [m for m in METRICS if m in done.columns]
    if len(done) and metric_cols:
        plotly_chart(run_comparison_figure(done, metrics=metric_cols, title="Single-method runs (test)"),
                        key="single_runs_fig")
    after, before = {}, None
    for r in runs:
        g = load_run_gaps(r) if r.status == "done" else None
        if g:
            before = pd.DataFrame(g["before"]) if before is None else before
            after[f"{r.method} #{r.id}"] = pd.DataFrame(g["after"])
    if before is not None:
        class_names = resources.manifest(ws, dataset).class_names
        plotly_chart(gap_before_after_figure(before, after, class_names=class_names),
                        key="single_runs_gaps")


def failed_runs(ws, runs: list) -> None:
    """Failed or cancelled runs (also those whose process died: `reconcile_runs`), each with its reason
    and two actions: run it again with the same settings as a new job, or clear it (the run's record and
    its partial files; finished runs are never offered)."""
    if not runs:
        return
    st.subheader("Failed or cancelled runs")
    for r in sorted(runs, key=lambda r: r.id, reverse=True):
        with st.container(border=True):
            st.markdown(f"**Run #{r.id}** · {md_escape(r.method)} · {r.status} · "
                        f"{md_escape(r.updated[:16].replace('T', ' '))}")
            st.text(r.error or "no reason recorded")
            c1, c2, _ = st.columns([1, 1, 4])
            if c1.button("Re-launch", key=f"mit_relaunch_{r.id}", icon=":material/replay:",
                         help="start a new job with this run's methods, seeds and options"):
                kind, params = relaunch_params(r)
                job_id = launch(ws, kind, params, device=params.get("device") or "auto")
                st.toast(f"Started job #{job_id}")
                st.rerun()
            if c2.button("Clear", key=f"mit_clear_{r.id}", icon=":material/delete:",
                         help="remove this run's record and its partial files"):
                ws.delete_run(r.id)
                st.toast(f"Cleared run #{r.id}")
                st.rerun()


def comparison_label(run) -> str:
    methods = ", ".join(run.params.get("methods", []))
    return f"#{run.id} · {methods} · {run.updated[:16].replace('T', ' ')}"


def render() -> None:
    st.title("Debias and compare")
    ctx = context()
    dataset, model = ctx.require_model()
    ws = ctx.ws
    st.caption(f"Dataset **{md_escape(dataset)}**, audited model **{md_escape(model)}**. Training runs in a background job, "
               "never in this page; you can leave and come back. Head tuning uses the audit's spuriosity "
               "rankings.")
    launch_form(ws, dataset, model)
    job_monitor(ws, recent_jobs(ws, (COMPARE_KIND, SINGLE_KIND), dataset=dataset, model=model, limit=3),
                key="mit_jobs")

    reconcile_runs(ws)   # a run whose process died is shown failed, not "running"
    runs = [r for r in ws.list_runs(dataset=dataset, model=model)]
    comparisons = [r for r in runs if r.method == COMPARE_KIND]
    singles = [r for r in runs
               if r.method not in (COMPARE_KIND, "sweep") and not r.method.startswith("audit")]
    if not comparisons and not singles:
        st.info("No mitigation runs for this model yet — pick methods above and press "
                "**Debias and compare**.",
                icon=":material/info:")
        return
    done = [r for r in comparisons if r.status == "done"]
    if done:
        st.subheader("Finished runs")
        by_id = {r.id: r for r in done}
        newest = max(by_id)
        if st.session_state.get("mit_cmp_newest") != newest:     # a new comparison finished: show it
            st.session_state["mit_cmp_newest"] = newest
            st.session_state["mit_cmp_run"] = newest
        chosen = st.selectbox("Comparison", sorted(by_id, reverse=True), key="mit_cmp_run",
                              format_func=lambda i: comparison_label(by_id[i]))
        show_comparison(ws, by_id[chosen])
    failed_runs(ws, [r for r in comparisons + singles if r.status in ("failed", "cancelled")])
    if singles:
        st.subheader("Single-method runs")
        show_single_runs(ws, dataset, singles)


run_page(render)
