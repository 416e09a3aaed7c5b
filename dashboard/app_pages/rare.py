"""Rare patterns: how few patterned training images does a network need to learn a spurious pattern?

Configure a sweep (patterns × n × optimizer × regulariser × seeds, on built-in MNIST / sklearn digits /
colored MNIST or a workspace dataset) or a canary audit (a workspace dataset and a training recipe,
your own patch PNG) and launch it as a background job (`core.rare.jobs`: kinds ``rare-sweep`` and
``rare-canary``). Results are read through `core.rare.artifacts` (runs listed and reloadable): the
score-vs-n curve per pattern (error bars, the n = 0 band), the regularisation comparison, membership
inference, deletion, the canary verdict, and a preview of the patterned images.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import SpurAuditError
from core.rare.artifacts import list_patches, list_rare_runs, patch_preview, save_patch
from core.rare.canary import check_canary
from core.rare.data import BUILTIN_DATA
from core.rare.inject import CORNERS, PATCH, PATTERNS
from core.rare.plots import canary_curve, membership_bars, regulariser_bars, score_curves
from core.rare.sweep import check_sweep, sweep_cells
from dashboard import resources
from dashboard.components.charts import plotly_chart
from dashboard.components.guard import run_page
from dashboard.components.job_monitor import job_monitor, launch, recent_jobs
from dashboard.components.state import context

KINDS = ("rare-sweep", "rare-canary")
PATTERN_HELP = ("s1/s2/s3: a white 1×1 / 3×3 / 5×5 square top-left; r1/r2/r3: fixed uniform noise ×0.25 / 0.5 / 1; "
                "core: a vertical white bar; patch: your own PNG (below)")
WS_PREFIX = "workspace: "
RUN_KEY = "rare_selected_run"
UPLOAD_KEY = "rare_last_upload"


def data_choices(ws) -> list[str]:
    return list(BUILTIN_DATA) + [WS_PREFIX + d.name for d in ws.list_datasets()]


def data_params(choice: str) -> dict:
    if choice.startswith(WS_PREFIX):
        return {"data": "workspace", "dataset": choice[len(WS_PREFIX):]}
    return {"data": choice}


# --------------------------------------------------------------------------------------------------
# the user's patch (shared by both forms)
# --------------------------------------------------------------------------------------------------
def patch_section(ws) -> dict | None:
    """Upload / pick a patch PNG and its placement; returns the `PatchSpec` mapping or None."""
    with st.expander("Your own patch (a logo, a watermark, a timestamp: a PNG with alpha)", expanded=False):
        upload = st.file_uploader("Upload a PNG", type=["png"], key="rare_patch_file")
        if upload is not None and st.session_state.get(UPLOAD_KEY) != upload.file_id:
            rel = save_patch(ws, upload.name, upload.getvalue())
            st.session_state[UPLOAD_KEY] = upload.file_id
            st.session_state["rare_patch_choice"] = rel
        stored = list_patches(ws)
        if not stored:
            st.caption("No patch stored in this workspace yet.")
            return None
        if st.session_state.get("rare_patch_choice") not in stored:
            st.session_state["rare_patch_choice"] = stored[-1]
        c1, c2, c3, c4 = st.columns([2, 2, 1, 1])
        rel = c1.selectbox("Stored patch", stored, key="rare_patch_choice")
        position = c2.selectbox("Position", list(CORNERS) + ["row,col"], index=3, key="rare_patch_position")
        if position == "row,col":
            position = c2.text_input("Row, col of its top-left pixel", value="20,20", key="rare_patch_rowcol")
        scale = c3.number_input("Scale", min_value=0.1, max_value=10.0, value=1.0, step=0.25, key="rare_patch_scale")
        opacity = c4.number_input("Opacity", min_value=0.05, max_value=1.0, value=1.0, step=0.05,
                                  key="rare_patch_opacity")
        st.image(patch_preview(ws, rel), caption="the stored patch (its own pixel size)", width=64)
        return {"path": rel, "position": position, "scale": float(scale), "opacity": float(opacity)}


# --------------------------------------------------------------------------------------------------
# launch forms
# --------------------------------------------------------------------------------------------------
def _launch(ws, kind: str, params: dict, device: str) -> None:
    try:
        if kind == "rare-sweep":
            cfg = check_sweep(ws, params)
            what = f"{len(sweep_cells(cfg))} models"
        else:
            check_canary(ws, params)
            what = "a canary audit"
    except SpurAuditError as exc:          # a form error: a message, never a traceback
        st.error(str(exc), icon=":material/error:")
        return
    job_id = launch(ws, kind, params, device=device)
    st.toast(f"Started job #{job_id} ({what})")
    st.rerun()


def sweep_form(ws, patch: dict | None) -> None:
    patterns = list(PATTERNS) + ([PATCH] if patch else [])
    with st.form("rare_sweep_form", border=True):
        st.markdown("**Sweep** — the paper's experiment on any data")
        c1, c2, c3 = st.columns(3)
        data = c1.selectbox("Data", data_choices(ws), key="rare_sw_data",
                            help="mnist: the 4,000 shipped training digits; digits: scikit-learn's 8×8 digits; "
                                 "colored-mnist: built in memory; or a workspace dataset")
        arch = c2.selectbox("Architecture", ["mlp", "small_cnn", "resnet18"], key="rare_sw_arch",
                            help="mlp = the reference's LargeMLP (256-256-256)")
        target = c3.number_input("Target class", min_value=0, value=0, key="rare_sw_target")
        chosen = st.multiselect("Patterns", patterns, default=["s3", "r3"], key="rare_sw_patterns", help=PATTERN_HELP)
        c1, c2, c3 = st.columns(3)
        counts = c1.text_input("n (comma-separated; 0 is always added)", value="0,3,10,100", key="rare_sw_counts")
        optimizers = c2.multiselect("Optimizers", ["sgd", "adam"], default=["sgd"], key="rare_sw_opt",
                                    help="SGD lr 0.01 momentum 0.9; Adam lr 1e-3")
        regs = c3.text_input("Regularisers", value="none", key="rare_sw_regs",
                             help="comma-separated: none, wd=5e-4 (weight decay), clip=1 (gradient clipping), "
                                  "noise=0.1 (Gaussian input noise σ), or combinations like wd=5e-4+noise=0.1")
        c1, c2, c3, c4 = st.columns(4)
        seeds = c1.number_input("Seeds", min_value=2, max_value=10, value=3, key="rare_sw_seeds")
        epochs = c2.number_input("Epochs", min_value=1, max_value=200, value=20, key="rare_sw_epochs",
                                 help="the reference trains 70")
        deletion = c3.text_input("Deletion at n", value="", key="rare_sw_deletion",
                                 help="counts at which to delete the patterned images (incremental retraining, "
                                      "group influence) and re-measure")
        device = c4.selectbox("Device", resources.device_choices(), format_func=resources.device_label, key="rare_sw_device")
        membership = st.checkbox("Membership inference (a shadow model per setting)", value=True, key="rare_sw_mia")
        go = st.form_submit_button("Launch sweep", type="primary", icon=":material/play_arrow:", key="rare_sw_go")
    if go:
        params = {**data_params(data), "arch": arch, "target": int(target), "patterns": list(chosen),
                  "counts": counts, "optimizers": list(optimizers), "regularisers": regs,
                  "seeds": list(range(int(seeds))), "epochs": int(epochs), "membership": bool(membership),
                  "deletion_counts": deletion}
        if PATCH in chosen and patch:
            params["patch"] = patch
        _launch(ws, "rare-sweep", params, device)


def canary_form(ws, patch: dict | None, dataset: str | None) -> None:
    datasets = [d.name for d in ws.list_datasets()]
    if not datasets:
        st.info("A canary audit runs on a workspace dataset; this workspace has none yet. Build one:",
                icon=":material/info:")
        st.code(f"python -m core dataset build colored-mnist --name cmnist --workspace {ws.root}", language="bash")
        return
    with st.form("rare_canary_form", border=True):
        st.markdown("**Canary audit** — how many stray patterned images does *your* recipe need to learn them?")
        c1, c2, c3 = st.columns(3)
        ds = c1.selectbox("Dataset", datasets, index=datasets.index(dataset) if dataset in datasets else 0,
                          key="rare_ca_dataset")
        models = ["(give the recipe)"] + [m.name for m in ws.list_models()]
        model = c2.selectbox("Recipe from model", models, key="rare_ca_model",
                             help="the architecture and training options saved with a workspace model")
        arch = c3.selectbox("Architecture (no model)", ["small_cnn", "mlp", "resnet18"], key="rare_ca_arch")
        c1, c2, c3, c4 = st.columns(4)
        pattern = c1.selectbox("Pattern", list(PATTERNS) + [PATCH], index=len(PATTERNS) if patch else 2,
                               key="rare_ca_pattern", help=PATTERN_HELP)
        target = c2.number_input("Target class", min_value=0, value=0, key="rare_ca_target")
        counts = c3.text_input("n to try, in order", value="0,1,2,4,8,16,32", key="rare_ca_counts")
        seeds = c4.number_input("Seeds", min_value=2, max_value=10, value=3, key="rare_ca_seeds")
        c1, c2, c3, c4 = st.columns(4)
        epochs = c1.number_input("Epochs (0 = the recipe's)", min_value=0, max_value=200, value=0, key="rare_ca_epochs")
        shift = c2.number_input("Augment: shift up to (px)", min_value=0, max_value=8, value=0, key="rare_ca_shift")
        stop = c3.checkbox("Stop at the first significant n", value=True, key="rare_ca_stop")
        device = c4.selectbox("Device", resources.device_choices(), format_func=resources.device_label, key="rare_ca_device")
        go = st.form_submit_button("Launch canary audit", type="primary", icon=":material/play_arrow:", key="rare_ca_go")
    if go:
        params = {"dataset": ds, "pattern": pattern, "target": int(target), "counts": counts,
                  "seeds": list(range(int(seeds))), "augment_shift": int(shift), "stop_early": bool(stop)}
        if model != models[0]:
            params["model"] = model
        else:
            params["arch"] = arch
        if epochs:
            params["train"] = {"epochs": int(epochs)}
        if pattern == PATCH:
            if not patch:
                st.error("Pattern 'patch' needs a patch: upload a PNG under 'Your own patch' first.",
                         icon=":material/error:")
                return
            params["patch"] = patch
        _launch(ws, "rare-canary", params, device)


def preview_section(ws, patch: dict | None) -> None:
    with st.expander("Preview the patterns", expanded=False):
        c1, c2, c3 = st.columns([2, 3, 1])
        data = c1.selectbox("Data", data_choices(ws), key="rare_pv_data")
        names = list(PATTERNS) + ([PATCH] if patch else [])
        chosen = c2.multiselect("Patterns", names, default=["s3", "r3", "core"], key="rare_pv_patterns")
        target = c3.number_input("Class", min_value=0, value=0, key="rare_pv_target")
        show_images(ws, data=data_params(data), patterns=chosen, patch=patch, target=int(target))


def show_images(ws, *, data: dict, patterns: list[str], patch: dict | None, target: int) -> None:
    images = resources.rare_preview(ws, data=data["data"], dataset=data.get("dataset"), patterns=patterns,
                                    patch=patch, target=target, k=4)
    for name, row in images.items():
        st.text(name)
        st.image(row, width=84)


# --------------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------------
def _select(label: str, options: list, key: str, **kw):
    if st.session_state.get(key) not in options:
        st.session_state.pop(key, None)
    return st.selectbox(label, options, key=key, **kw)


def show_run(ws, run_id: int) -> None:
    run = resources.rare_run(ws, run_id)
    done, total = run.progress
    st.text(f"Run #{run.id} · {run.method} · {run.status} · {done}/{total} cells · data {run.config.get('data')}"
            f"{' ' + str(run.config.get('dataset')) if run.config.get('dataset') else ''} · arch {run.config.get('arch')}")
    if run.error and run.status != "done":
        with st.expander(f"Run {run.status}: what stopped it"):
            st.text(run.error)
    for note in run.notes:
        st.text(f"note: {note}")
    if len(run.table) == 0:
        st.info("No cell has finished yet; results appear here as the sweep goes.", icon=":material/hourglass:")
        return
    cells = run.frame("cells")
    if run.is_canary and run.summary.get("canary"):
        verdict = run.summary["canary"]
        learned = verdict.get("learned_n")
        c1, c2, c3 = st.columns(3)
        c1.metric("Smallest learned n", "not learned" if learned is None else str(learned))
        c2.metric("Score at n = 0", f"{(verdict.get('baseline_mean') or 0):.4f}")
        c3.metric("Largest n tried", str(verdict.get("largest_n_tried")))
        plotly_chart(canary_curve(verdict), key=f"rare_canary_fig_{run.id}")
    c1, c2 = st.columns(2)
    with c1:
        opt = _select("Optimizer", list(dict.fromkeys(cells.optimizer)), f"rare_opt_{run.id}")
    regs = list(dict.fromkeys(cells.regulariser))
    with c2:
        reg = _select("Regulariser", regs, f"rare_reg_{run.id}")
    plotly_chart(score_curves(cells, optimizer=opt, regulariser=reg), key=f"rare_curve_{run.id}")
    show = [c for c in ("pattern", "n", "optimizer", "regulariser", "seeds", "score_mean", "score_sem", "clean_mean",
                        "p_value", "significant", "l2_norm", "test_accuracy_mean", "mia_auroc_patterned_mean",
                        "mia_auroc_clean_mean") if c in cells.columns]
    st.dataframe(cells[show], hide_index=True, key=f"rare_cells_{run.id}",
                 column_config={c: st.column_config.NumberColumn(format="%.4f") for c in show
                                if c.endswith(("_mean", "_sem", "p_value", "l2_norm"))})
    trends = run.frame("patterns")
    if len(trends):
        st.markdown("**Per pattern** — does the score rise with n, and from which n is it learned?")
        cols = [c for c in ("pattern", "optimizer", "regulariser", "l2_norm", "spearman_n_score", "n_to_level",
                            "smallest_significant_n", "max_score") if c in trends.columns]
        st.dataframe(trends[cols], hide_index=True, key=f"rare_trends_{run.id}")
        for row in run.summary.get("norm_vs_n", []):
            rho = row.get("spearman_norm_n")
            st.text(f"{row['optimizer']} / {row['regulariser']}: rank correlation between ℓ2 norm and the n needed "
                    f"for a score of {row['level']}: {'undefined' if rho is None else f'{rho:+.2f}'} "
                    f"(reached by {', '.join(row['reached']) or 'none'})")
    if len(regs) > 1:
        st.subheader("Regularisation")
        counts = sorted(int(n) for n in set(cells.n) if n > 0)
        n_sel = st.selectbox("At n", counts, index=len(counts) - 1, key=f"rare_reg_n_{run.id}") if counts else 0
        plotly_chart(regulariser_bars(cells, n=int(n_sel), optimizer=opt), key=f"rare_regfig_{run.id}")
        comp = run.frame("regularisers")
        if len(comp):
            cols = [c for c in ("pattern", "n", "optimizer", "regulariser", "score", "score_none", "score_n0",
                                "cut_fraction", "acc_cost_points", "val_cut_fraction", "val_acc_cost_points")
                    if c in comp.columns]
            st.dataframe(comp[cols], hide_index=True, key=f"rare_regtable_{run.id}")
            st.caption("cut_fraction: share of the score's excess over n = 0 that the regulariser removes "
                       "(≥ 0.5 halves it); acc_cost_points: test accuracy lost. Choose on the val_ columns.")
    mem = run.frame("membership")
    if len(mem):
        st.subheader("Membership inference")
        plotly_chart(membership_bars(mem, optimizer=opt, regulariser=reg), key=f"rare_memfig_{run.id}")
        st.dataframe(mem, hide_index=True, key=f"rare_memtable_{run.id}")
    dele = run.frame("deletion")
    if len(dele):
        st.subheader("Deleting the patterned examples")
        st.dataframe(dele, hide_index=True, key=f"rare_deltable_{run.id}")
        st.caption("still_learned_*: the score after deletion is still significantly above n = 0.")
    with st.expander("Patterned images of this run"):
        cfg = run.config
        data = {"data": cfg.get("data", "mnist"), "dataset": cfg.get("dataset")}
        show_images(ws, data=data, patterns=list(cfg.get("patterns") or []), patch=cfg.get("patch"),
                    target=int(cfg.get("target", 0)))


def results_section(ws) -> None:
    st.header("Results")
    runs = list_rare_runs(ws)
    if not runs:
        st.info("No rare-pattern run in this workspace yet: launch a sweep or a canary audit above "
                "(or `python -m core rare sweep --data digits --epochs 20`).", icon=":material/info:")
        return
    table = pd.DataFrame(runs)
    st.dataframe(table, hide_index=True, key="rare_runs_table")
    ids = [r["id"] for r in runs]
    labels = {r["id"]: f"#{r['id']} · {r['method']} · {r['status']} · {r['data']} · {r['patterns']}" for r in runs}
    c1, c2 = st.columns([4, 1])
    if st.session_state.get(RUN_KEY) not in ids:
        st.session_state[RUN_KEY] = ids[0]
    run_id = c1.selectbox("Run", ids, format_func=lambda i: labels[i], key=RUN_KEY)
    if c2.button("Reload", key="rare_reload", icon=":material/refresh:"):
        st.rerun()
    show_run(ws, int(run_id))


def render() -> None:
    st.title("Rare patterns")
    ctx = context()
    ws = ctx.ws
    st.caption("Add a pattern to n training images of one class, train, and measure how often the pattern alone "
               "raises that class's probability (spurious score: share of other-class test images with Δp > 0.1), "
               "against models trained with n = 0. Training runs in a background job.")
    patch = patch_section(ws)
    tab_sweep, tab_canary = st.tabs(["Sweep", "Canary audit"])
    with tab_sweep:
        sweep_form(ws, patch)
    with tab_canary:
        canary_form(ws, patch, ctx.dataset)
    preview_section(ws, patch)
    job_monitor(ws, recent_jobs(ws, KINDS, limit=3), key="rare_jobs")
    results_section(ws)


run_page(render)
