"""Crops & sensitivity: results of `core.audit.pipeline.run_core_crops` (accuracy of the highest-
spuriosity images before/after cropping to their core features) and `run_sensitivity` (accuracy drop
when only the masked region is corrupted vs a random region of equal area), read back through
`core.audit.artifacts`. Both run as jobs.

For many classes: the pooled results first, then a "Class" section (the class navigator, bound to the
shared current class: that class's crop accuracies and sensitivity rows), then every class's rows
sorted by a chosen order, the first N shown (not a 1,000-row wall); skipped classes are a count with
an expandable list."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.audit.artifacts import ranked_splits
from core.audit.pipeline import MASK_SOURCES
from core.audit.plots import sensitivity_bars
from dashboard import resources
from dashboard.components.charts import plotly_chart
from dashboard.components.class_nav import class_navigator
from dashboard.components.guard import run_page
from dashboard.components.job_monitor import job_monitor, launch, recent_jobs
from dashboard.components.state import features_page, md_escape

STEP_KIND = "audit-step"   # core.audit job kind running one audit step (crops | sensitivity | ...)


CROP_ORDERS = {     # the all-class crops table's orders: name -> (column, ascending)
    "largest gain": ("gain", False),
    "largest loss": ("gain", True),
    "most images": ("n", False),
    "lowest accuracy before": ("acc_before", True),
    "class index": ("class_index", True),
}
SENS_ORDERS = {     # the all-class sensitivity table's orders
    "largest drop (mask)": ("drop_masked", False),
    "mask minus random drop": ("excess_drop", False),
    "class index": ("class_index", True),
}
NAV_KEY = "crops_nav"
DEFAULT_SHOWN = 30


def crops_table(crops: dict, class_names) -> pd.DataFrame:
    """crops.json's per-class rows with ``class`` (name) and ``gain`` = acc_after − acc_before."""
    per = pd.DataFrame(crops.get("per_class", []), columns=["class_index", "n", "acc_before", "acc_after"])
    per["class_index"] = per["class_index"].astype(int)
    per.insert(1, "class", [_name(class_names, c) for c in per.class_index])
    per["gain"] = per["acc_after"] - per["acc_before"]
    return per


def _name(class_names, c: int) -> str:
    return "all" if int(c) < 0 else (str(class_names[int(c)]) if int(c) < len(class_names) else str(c))


def top_rows(table: pd.DataFrame, orders: dict, *, order: str, n: int) -> pd.DataFrame:
    """The first ``n`` rows of ``table`` in ``order`` (one of ``orders``; ties by class index)."""
    col, asc = orders[order]
    return table.sort_values([col, "class_index"], ascending=[asc, True], na_position="last",
                             kind="stable").head(int(n))


def _order_and_n(key: str, orders: dict, total: int) -> tuple[str, int]:
    o1, o2, _ = st.columns([1.3, 1, 2])
    order = o1.selectbox("Order", list(orders), key=f"{key}_order")
    n = o2.number_input("Classes shown", min_value=1, max_value=max(1, total), value=min(DEFAULT_SHOWN, max(1, total)),
                        step=10, key=f"{key}_n")
    return order, int(n)


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
    skipped = crops.get("skipped_classes") or []
    if skipped:
        with st.expander(f"Skipped classes ({len(skipped):,}): no core feature labelled"):
            st.dataframe(pd.DataFrame({"class_index": [int(c) for c in skipped],
                                       "class": [_name(class_names, c) for c in skipped]}), hide_index=True,
                         height=min(400, 38 + 35 * len(skipped)))


def all_class_crops(crops: dict, class_names: list[str]) -> None:
    """Every class's crop result, sorted, the first N shown (a wall at 1,000 classes otherwise)."""
    per = crops_table(crops, class_names)
    if not len(per):
        return
    st.markdown("**Core crops, all classes**")
    order, n = _order_and_n("crops_all", CROP_ORDERS, len(per))
    shown = top_rows(per, CROP_ORDERS, order=order, n=n)
    st.caption(f"{len(shown):,} of {len(per):,} classes, ordered by {order}. gain = accuracy after − before.")
    st.dataframe(shown, hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%.3f") for c in ("acc_before", "acc_after", "gain")})


def _sens_groups(sens: pd.DataFrame):
    return sens.groupby("mask_source", sort=False) if "mask_source" in sens else [("given", sens)]


def show_sensitivity(sens: pd.DataFrame, class_names: list[str]) -> None:
    st.subheader("Feature sensitivity")
    for source, table in _sens_groups(sens):
        summary = table[table.class_index == -1].reset_index(drop=True)
        plotly_chart(sensitivity_bars(summary, title=f"Accuracy drop, masks from {source} features"),
                        key=f"sens_{source}")
    st.caption("Drop = acc(clean) − acc(corrupted). A feature group the model relies on shows a larger drop "
               "with its mask than with a random region of equal area.")


def all_class_sensitivity(sens: pd.DataFrame, class_names: list[str]) -> None:
    """Per mask source, every class's sensitivity rows (all corruptions), the first N classes of an order."""
    for source, table in _sens_groups(sens):
        per = table[table.class_index >= 0].copy()
        if not len(per):
            continue
        with st.expander(f"Per-class sensitivity, all classes ({source} masks, {per.class_index.nunique():,} "
                         "classes)"):
            per["excess_drop"] = per["drop_masked"] - per["drop_random"]
            by_class = per.groupby("class_index", as_index=False)[["drop_masked", "excess_drop"]].mean()
            order, n = _order_and_n(f"sens_all_{source}", SENS_ORDERS, len(by_class))
            keep = top_rows(by_class, SENS_ORDERS, order=order, n=n).class_index.tolist()
            rank = {c: i for i, c in enumerate(keep)}
            show = per[per.class_index.isin(keep)].copy()
            show = show.iloc[np.lexsort((show.index.to_numpy(), show.class_index.map(rank).to_numpy()))]
            show.insert(1, "class", [_name(class_names, c) for c in show.class_index])
            st.caption(f"{len(keep):,} of {len(by_class):,} classes, ordered by {order} (mean over corruptions); "
                       "one row per corruption. excess_drop = drop with the mask − with a random region.")
            st.dataframe(show, hide_index=True)


def crop_grid(ws, dataset: str, crops: dict, class_names: list[str], c: int, *, shown: int = 12) -> None:
    """Up to ``shown`` of class ``c``'s cropped images (saved boxes; nothing is recomputed)."""
    mine = [r for r in crops.get("images") or [] if int(r["class_index"]) == c]
    if not mine:
        st.caption("These results hold no crop boxes (run crops again to see the images).")
        return
    cols = st.columns(4)
    for i, r in enumerate(mine[:shown]):
        before, after = _name(class_names, r["pred_before"]), _name(class_names, r["pred_after"])
        mark = "✓" if int(r["pred_after"]) == c else "✗"
        cols[i % 4].image(resources.crop_tile(ws, dataset, crops.get("split", ""), int(r["row"]), tuple(r["box"])),
                          caption=md_escape(f"predicted {before} → {after} {mark}"))   # captions are Markdown
    if len(mine) > shown:
        st.caption(f"{shown} of {len(mine)} cropped images of this class shown.")


def class_view(ws, dataset: str, crops: dict | None, sens: pd.DataFrame | None, class_names: list[str],
               c: int) -> None:
    """The current class's core-crop row and sensitivity rows (or why it has none)."""
    label = md_escape(f"{c}: {_name(class_names, c)}")
    if crops is not None:
        per = crops_table(crops, class_names)
        row = per[per.class_index == c]
        if len(row):
            r = row.iloc[0]
            m1, m2, m3 = st.columns(3)
            m1.metric("This class: accuracy before crop", f"{r.acc_before:.1%}")
            m2.metric("This class: after crop", f"{r.acc_after:.1%}", delta=f"{r.gain * 100:+.1f} pts")
            m3.metric("This class: images cropped", f"{int(r.n):,}")
            st.caption(f"The top {crops.get('fraction', 0.2):.0%} highest-spuriosity images of class {label} on "
                       f"{md_escape(crops.get('split', '?'))}: each image with its core-crop box (yellow) beside "
                       "the crop, and the model's prediction before → after.")
            crop_grid(ws, dataset, crops, class_names, c)
        elif c in {int(x) for x in crops.get("skipped_classes") or []}:
            st.info(f"Core crops skipped class {label}: it has no core feature labelled.", icon=":material/info:")
        else:
            st.info(f"Core crops have no result for class {label} (it was not ranked on "
                    f"{md_escape(crops.get('split', '?'))}, or it had no image among the evaluated ones).",
                    icon=":material/info:")
    if sens is not None and len(sens):
        mine = sens[sens.class_index == c]
        if len(mine):
            show = mine.drop(columns=["class_index"]).copy()
            show["excess_drop"] = show["drop_masked"] - show["drop_random"]
            st.dataframe(show, hide_index=True, column_config={
                col: st.column_config.NumberColumn(format="%.3f") for col in show.columns
                if col.startswith(("acc_", "drop_", "excess", "mask_area"))})
        else:
            st.caption(f"Feature sensitivity has no image of class {label} (it measures a seeded subset of the "
                       "split and only classes with labelled features of the mask source).")


def render() -> None:
    page = features_page("Core crops & feature sensitivity")
    ws, dataset, model, splits = page.ws, page.dataset, page.model, page.splits
    crops, sens = resources.crop_results(ws, dataset, model)      # cached per file stamp
    ranked = ranked_splits(ws, dataset, model, splits)
    never_run = crops is None and sens is None
    if never_run and ranked:   # the audit ran, crops never did: offer the launch right here
        st.info("The audit of this model has run, but crops and sensitivity were never run. Launch them below "
                "(they use the labelled core features and the saved ranking).", icon=":material/info:")
    with st.expander("Run crops / sensitivity", expanded=never_run and bool(ranked)):
        c1, c2, c3 = st.columns(3)
        choices = ranked or splits
        split = c1.selectbox("Split", choices, index=len(choices) - 1, key="crops_split")
        sources = [m for m in MASK_SOURCES if not m.startswith("salient")] + \
            ([m for m in MASK_SOURCES if m.startswith("salient")] if resources.salient_masks(ws, dataset, model) else [])
        mask_from = c2.selectbox("Sensitivity masks from", sources, key="crops_mask",
                                 help="core / spurious: activation maps of the class's labelled features; object: "
                                      "the dataset's object masks; salient*: imported Salient ImageNet masks")
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
    has_sens = sens is not None and len(sens) > 0
    if crops is not None:
        show_crops(crops, page.class_names)
    if has_sens:
        show_sensitivity(sens, page.class_names)

    st.subheader("Class")
    result_split = (crops or {}).get("split")
    nav_split = result_split if result_split in splits else None
    fs = resources.feature_set(ws, dataset, model, nav_split or splits[-1])
    c = class_navigator(ws, dataset, model, page.class_names, fs.num_classes, split=nav_split, key=NAV_KEY)
    class_view(ws, dataset, crops, sens if has_sens else None, page.class_names, c)

    st.subheader("All classes")
    if crops is not None:
        all_class_crops(crops, page.class_names)
    if has_sens:
        all_class_sensitivity(sens, page.class_names)


run_page(render)
