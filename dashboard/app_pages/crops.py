"""Crops & sensitivity: results of `core.audit.pipeline.run_core_crops` (accuracy of the highest-
spuriosity images before/after cropping to their core features) and `run_sensitivity` (accuracy drop
when only the masked region is corrupted vs a random region of equal area), read back through
`core.audit.artifacts`. Both run as jobs."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.audit.artifacts import load_crops, load_sensitivity, ranked_splits
from core.audit.plots import sensitivity_bars
from dashboard import resources
from dashboard.components.guard import run_page
from dashboard.components.job_monitor import job_monitor, launch, recent_jobs
from dashboard.components.state import features_page, md_escape

STEP_KIND = "audit-step"   # core.audit job kind running one audit step (crops | sensitivity | ...)


def show_crops(crops: dict, class_names: list[str]) -> None:
    st.subheader("Core crops")
    c1, c2, c3 = st.columns(3)
    c1.metric("Accuracy before", f"{crops['acc_before']:.1%}")
    c2.metric("Accuracy after crop", f"{crops['acc_after']:.1%}",
              delta=f"{(crops['acc_after'] - crops['acc_before']) * 100:+.1f} pts")
    c3.metric("Images", crops.get("n", "—"))
    st.caption(f"Top {crops.get('fraction', 0.2):.0%} highest-spuriosity images of each ranked class of the "
               f"**{md_escape(crops.get('split', '?'))}** split, cropped to the box of their core features' activation "
               "maps. "
               "A gain means the spurious context was hurting the prediction.")
    per = pd.DataFrame(crops.get("per_class", []))
    if len(per):
        per.insert(0, "class", [class_names[int(c)] if int(c) < len(class_names) else str(c)
                                for c in per.class_index])
        first = ["class", *[c for c in ("n", "acc_before", "acc_after") if c in per.columns]]
        per = per[first + [c for c in per.columns if c not in (*first, "class_index")]]
        st.dataframe(per, hide_index=True, column_config={
            c: st.column_config.NumberColumn(format="%.3f") for c in ("acc_before", "acc_after")})
    if crops.get("skipped_classes"):
        st.caption("Skipped (no core feature labelled): " +
                   ", ".join(md_escape(class_names[int(c)]) for c in crops["skipped_classes"]))


def show_sensitivity(sens: pd.DataFrame, class_names: list[str]) -> None:
    st.subheader("Feature sensitivity")
    groups = sens.groupby("mask_source", sort=False) if "mask_source" in sens else [("given", sens)]
    for source, table in groups:
        summary = table[table.class_index == -1].reset_index(drop=True)
        st.plotly_chart(sensitivity_bars(summary, title=f"Accuracy drop, masks from {source} features"),
                        key=f"sens_{source}")
        with st.expander(f"Per-class table ({source})"):
            show = table.copy()
            show.insert(1, "class", ["all" if int(c) < 0 else class_names[int(c)] for c in show.class_index])
            st.dataframe(show, hide_index=True)
    st.caption("Drop = acc(clean) − acc(corrupted). A feature group the model relies on shows a larger drop "
               "with its mask than with a random region of equal area.")


def render() -> None:
    page = features_page("Core crops & feature sensitivity")
    ws, dataset, model, splits = page.ws, page.dataset, page.model, page.splits
    crops, sens = load_crops(ws, dataset, model), load_sensitivity(ws, dataset, model)
    ranked = ranked_splits(ws, dataset, model, splits)
    never_run = crops is None and sens is None
    if never_run and ranked:   # the audit ran, crops never did: offer the launch right here
        st.info("The audit of this model has run, but crops and sensitivity were never run. Launch them below "
                "(they use the labelled core features and the saved ranking).", icon=":material/info:")
    with st.expander("Run crops / sensitivity", expanded=never_run and bool(ranked)):
        c1, c2, c3 = st.columns(3)
        choices = ranked or splits
        split = c1.selectbox("Split", choices, index=len(choices) - 1, key="crops_split")
        mask_from = c2.selectbox("Sensitivity masks from", ["core", "spurious", "object"], key="crops_mask")
        device = c3.selectbox("Device", resources.device_choices(), format_func=resources.device_label, key="crops_device")
        st.caption("Both need a saved ranking of the split (run the audit) and labelled core features. "
                   "From a terminal:")
        st.code(f"python -m core crops --workspace {ws.root} --dataset {dataset} --model {model} "
                f"--split {split}\n"
                f"python -m core sensitivity --workspace {ws.root} --dataset {dataset} --model {model} "
                f"--split {split} --mask-from {mask_from}", language="bash")
        b1, b2 = st.columns(2)
        for col, step in ((b1, "crops"), (b2, "sensitivity")):
            if col.button(f"Run {step} as a job", key=f"run_{step}"):
                launch(ws, STEP_KIND, {"step": step, "dataset": dataset, "model": model, "split": split,
                                       "mask_from": mask_from}, device=device)
                st.rerun()
    ids = recent_jobs(ws, STEP_KIND, dataset=dataset, model=model, limit=2,
                      where=lambda p: p.get("step") in ("crops", "sensitivity"))
    job_monitor(ws, ids, key="crops_jobs")

    if never_run:
        if not ranked:
            st.info("No crop or sensitivity results for this model yet. They need labelled core features and a "
                    "saved ranking: run the audit (New audit page), then launch them above.", icon=":material/info:")
        return
    if crops is not None:
        show_crops(crops, page.class_names)
    if sens is not None and len(sens):
        show_sensitivity(sens, page.class_names)


run_page(render)
