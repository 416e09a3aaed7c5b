"""Features: per class, the top-k discovered neural features, with top-activating thumbnails,
activation-map overlays and feature attacks; label each (class, feature) as core / spurious_object /
spurious_background / unsure (written immediately to the workspace through `core.audit.labels`);
machine suggestions (masks / CLIP / SAM-IoU) and the derived verdict are shown separately."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.audit.labels import add_answers
from core.features.maps import cached_attack, cached_overlay
from dashboard import resources
from dashboard.components.class_nav import class_select
from dashboard.components.guard import NeedsSetup, run_page
from dashboard.components.image_grid import GridItem, image_grid
from dashboard.components.state import features_page, md_escape

ANSWER_LABELS = {
    "core": "Core (part of the object)",
    "spurious_object": "Spurious: a separate object",
    "spurious_background": "Spurious: background",
    "unsure": "Unsure",
}
ANNOTATOR_KEY = "sa_annotator"
N_TOP_IMAGES = 6
N_ATTACK_IMAGES = 3          # feature attacks (100 gradient steps each) are rendered for the first few only
ATTACK_MAX_PARAMS = 5_000_000  # above this, attacks would be long work for the Streamlit process


def top_activating_rows(fs, class_index: int, feature: int, n: int) -> np.ndarray:
    """Row indices of the ``n`` images of ``class_index`` where ``feature`` fires most (display order)."""
    rows = fs.class_rows(class_index)
    if rows.size == 0:
        return rows
    acts = np.asarray(fs.features[rows, feature], dtype=np.float32)
    return rows[np.argsort(-acts, kind="stable")[:n]]


def visual_items(ws, dataset: str, model_name: str, fs, rows: np.ndarray, feature: int,
                 mode: str) -> list[GridItem]:
    """Grid items for ``rows``: the images, with the feature's activation-map overlay or its feature
    attack as the overlay (both rendered once by `core.features.maps` and cached in the workspace)."""
    manifest = fs.manifest
    acts = np.asarray(fs.features[rows, feature], dtype=np.float32)
    model = resources.audit_model(ws, model_name) if mode != "images" else None
    items = []
    for row, act in zip(rows, acts):
        row = int(row)
        overlay = None
        if mode == "activation maps":
            overlay = cached_overlay(ws, dataset, model_name, model, manifest, row, feature, device="cpu")
        elif mode == "feature attacks" and len(items) < N_ATTACK_IMAGES:
            overlay = cached_attack(ws, dataset, model_name, model, manifest, row, feature, device="cpu")
        items.append(GridItem(path=manifest.image_path(row), caption=f"act {act:.2f}", overlay=overlay))
    return items


def label_form(ws, dataset: str, model: str, class_index: int, feature: int, annotator: str) -> None:
    with st.form(key=f"label_{class_index}_{feature}", clear_on_submit=True, border=False):
        answer = st.radio("Your answer", list(ANSWER_LABELS), format_func=ANSWER_LABELS.get, horizontal=True,
                          index=None, key=f"answer_{class_index}_{feature}")
        note = st.text_input("Note (optional)", key=f"note_{class_index}_{feature}")
        submitted = st.form_submit_button("Save label", icon=":material/save:",
                                          key=f"save_{class_index}_{feature}")
    if submitted:
        if answer is None:
            st.warning("Pick an answer first.")
            return
        if not annotator.strip():
            st.warning("Type your name in the *Annotator* box above before labelling.")
            return
        add_answers(ws, dataset, model, [{"class_index": class_index, "feature": feature, "answer": answer,
                                          "annotator": annotator.strip(), "source": "human", "note": note}])
        st.toast(f"Saved: class {class_index}, feature {feature} → {answer}")
        st.rerun()


def feature_labels_view(labels: pd.DataFrame, verdicts: pd.DataFrame, class_index: int, feature: int) -> None:
    mine = labels[(labels.class_index == class_index) & (labels.feature == feature)]
    human = mine[mine.source == "human"]
    machine = mine[mine.source != "human"]
    v = verdicts[(verdicts.class_index == class_index) & (verdicts.feature == feature)]
    if len(v):
        r = v.iloc[0]
        kind = f" ({r.kind})" if r.verdict == "spurious" and r.kind else ""
        st.markdown(f"**Verdict: {r.verdict}{kind}** — from {r.n_answers} {r.basis} answer(s): {r.answers}")
    else:
        st.markdown("**Verdict: not labelled yet**")
    if len(human):
        shown = human.assign(created=human.created.str.slice(0, 19).str.replace("T", " "))
        st.dataframe(shown[["annotator", "answer", "note", "created"]].iloc[::-1], hide_index=True)
    if len(machine):
        st.caption("Machine suggestions (used only when no person has answered)")
        machine = machine.assign(created=machine.created.str.slice(0, 19).str.replace("T", " "))
        st.dataframe(machine[["source", "answer", "score", "created"]].iloc[::-1], hide_index=True,
                     column_config={"score": st.column_config.NumberColumn(format="%.3f")})


def render() -> None:
    page = features_page("Features")
    ws, dataset, model, splits = page.ws, page.dataset, page.model, page.splits
    split = "train" if "train" in splits else splits[0]
    fs = resources.feature_set(ws, dataset, model, split)

    c1, c2, c3, c4 = st.columns([2, 1, 2, 2])
    class_index = class_select(c1, page.class_names, fs.num_classes)
    k = c2.number_input("Top k", min_value=1, max_value=min(20, fs.dim), value=min(5, fs.dim),
                        key="features_k")
    st.session_state.setdefault(ANNOTATOR_KEY, "")
    annotator = c3.text_input("Annotator", key=ANNOTATOR_KEY, placeholder="your name")
    mode = c4.radio("Show", ["images", "activation maps", "feature attacks"], horizontal=True,
                    key="features_mode",
                    help="Top-activating images of the class, the feature's activation map over them, or the "
                         "image pushed by gradient ascent on the feature (cached in the workspace).")
    st.caption(f"Features of the **{md_escape(split)}** split ({fs.n} images, {fs.dim} features). Importance of "
               "feature j for class c = mean activation × head weight over the images predicted as c.")

    disc = resources.saved_discovery(ws, dataset, model)      # the audit's, when it ran (core.audit.artifacts)
    if disc is None or disc.top_features.shape[1] < int(k):
        if not resources.computes_live(ws, dataset, model, split):
            raise NeedsSetup(f"The {md_escape(split)} split is large ({fs.n} images), so its top features are "
                             f"found by the audit job, not in this page. Run it (top {int(k)} features per class):",
                             f"python -m core discover --workspace {ws.root} --dataset {dataset} "
                             f"--model {model} --k {int(k)}")
        disc = resources.discovery(ws, dataset, model, split, k=int(k))
    table = disc.table()
    table = table[(table.class_index == class_index) & (table["rank"] < int(k))]
    labels = ws.labels(dataset, model)
    verdicts = resources.verdicts(ws, dataset, model)
    if class_index in disc.fallback_classes:
        st.info("The model never predicts this class on this split; features are ranked over its labelled "
                "images.")
    if mode != "images" and not resources.audit_model(ws, model).has_spatial_map:
        st.warning("This model has no spatial feature map, so activation maps and attacks are not available.")
        mode = "images"
    if mode == "feature attacks":
        n_params = sum(p.numel() for p in resources.audit_model(ws, model).parameters())
        if n_params > ATTACK_MAX_PARAMS:
            st.warning("Feature attacks are rendered here only for small models (this one has "
                       f"{n_params / 1e6:.0f} M parameters).")
            mode = "images"
        else:
            st.caption(f"Feature attacks: the first {N_ATTACK_IMAGES} images of each feature after 100 steps "
                       "of gradient ascent on its activation (cached in the workspace).")

    for r in table.itertuples():
        feature = int(r.feature)
        with st.container(border=True):
            gap = getattr(r, "gap", np.nan)
            gap_txt = f" · single-feature gap {gap * 100:+.1f} pts" if pd.notna(gap) else ""
            st.subheader(f"#{int(r.rank) + 1} · feature {feature}")
            st.caption(f"importance {r.importance:.3f}{gap_txt}")
            rows = top_activating_rows(fs, class_index, feature, N_TOP_IMAGES)
            with st.spinner("Rendering…"):
                items = visual_items(ws, dataset, model, fs, rows, feature, mode)
            image_grid(items, key=f"feat_{class_index}_{feature}", per_page=N_TOP_IMAGES,
                       columns=N_TOP_IMAGES + 2, size=96, paginate=False, show_overlay=mode != "images")
            left, right = st.columns([1, 1])
            with left:
                feature_labels_view(labels, verdicts, class_index, feature)
            with right:
                label_form(ws, dataset, model, class_index, feature, annotator)


run_page(render)
