"""Features: per class, the top-k discovered neural features, with top-activating thumbnails,
activation-map overlays and feature attacks; label each (class, feature) as core / spurious_object /
spurious_background / unsure (written immediately to the workspace through `core.audit.labels`);
machine suggestions (masks / CLIP / SAM-IoU) and the derived verdict are shown separately.

For many classes: the class navigator (search, order, status filter), the labelling progress overall
and for the class, "next unlabelled" (the next (class, feature) that needs a person, in the
navigator's order) with keyboard answers 1–4 that save and advance, and accepting a class's machine
suggestions in one action (recorded as human answers that say so). Overlays and attacks are read
from the workspace cache; what is missing is rendered live only for small models — the
labelling-assets job renders them for any model (`core.audit.assets`).

Labels a person already has come in through the *Import labels* form (`components.label_import`: a labels
CSV, Salient ImageNet's answers CSV and its masks folder, previewed before anything is written); a feature
with imported Salient ImageNet masks shows them outlined on their images (`salient_view`)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.audit.labelling import accept_machine_rows, next_unlabelled
from core.audit.labels import add_answers
from core.errors import SpurAuditError
from core.features.assets import existing_attacks, existing_overlays, top_activating_rows
from core.features.maps import cached_attack, cached_overlay
from dashboard import resources
from dashboard.components.class_nav import class_navigator, progress_line, set_class
from dashboard.components.guard import NeedsSetup, run_page
from dashboard.components.image_grid import GridItem, image_grid
from dashboard.components.job_monitor import job_monitor, launch, recent_jobs
from dashboard.components.label_import import import_labels_form
from dashboard.components.state import features_page, md_escape

ANSWER_LABELS = {
    "core": "Core (part of the object)",
    "spurious_object": "Spurious: a separate object",
    "spurious_background": "Spurious: background",
    "unsure": "Unsure",
}
#: keyboard answers of the focused feature (Streamlit's button shortcuts)
ANSWER_KEYS = {"core": "1", "spurious_object": "2", "spurious_background": "3", "unsure": "4"}
SHORT_LABELS = {"core": "Core", "spurious_object": "Spurious object", "spurious_background": "Spurious background",
                "unsure": "Unsure"}
ANNOTATOR_KEY = "sa_annotator"
FOCUS_KEY = "features_focus"
NEEDS_NAME_KEY = "features_needs_name"
NAV_KEY = "features_nav"
ASSETS_KIND = "labelling-assets"
N_TOP_IMAGES = 6
N_ATTACK_IMAGES = 3          # feature attacks (100 gradient steps each) are rendered for the first few only
ATTACK_MAX_PARAMS = 5_000_000  # above this, rendering live would be long work for the Streamlit process


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def visual_items(ws, dataset: str, model_name: str, fs, rows: np.ndarray, feature: int,
                 mode: str) -> tuple[list[GridItem], int]:
    """(grid items for ``rows``, how many overlays are missing): the images, with the feature's
    activation-map overlay or its feature attack read from the workspace cache; a missing one is
    rendered live (and cached) only for models up to `ATTACK_MAX_PARAMS` parameters."""
    manifest = fs.manifest
    acts = np.asarray(fs.features[rows, feature], dtype=np.float32)
    pairs = [(int(r), int(feature)) for r in rows]
    cached, want = {}, []
    if mode == "activation maps":
        want = pairs
        cached = existing_overlays(ws, dataset, model_name, manifest, want)
    elif mode == "feature attacks":
        want = pairs[:N_ATTACK_IMAGES]
        cached = existing_attacks(ws, dataset, model_name, manifest, want)
    missing = [p for p in want if p not in cached]
    if missing:
        model = resources.audit_model(ws, model_name)
        if n_params(model) <= ATTACK_MAX_PARAMS:
            render = cached_overlay if mode == "activation maps" else cached_attack
            for r, j in missing:
                cached[(r, j)] = render(ws, dataset, model_name, model, manifest, r, j, device="cpu")
    items = [GridItem(path=manifest.image_path(r), caption=f"act {act:.2f}", overlay=cached.get((r, j)))
             for (r, j), act in zip(pairs, acts)]
    return items, sum(1 for p in want if p not in cached)


def _save(ws, dataset: str, model: str, rows: list[dict]) -> None:
    add_answers(ws, dataset, model, rows)


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
        _save(ws, dataset, model, [{"class_index": class_index, "feature": feature, "answer": answer,
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


def _go_next(pairs, order: list[int], after: tuple[int, int] | None) -> None:
    """Focus the next (class, feature) needing a person (wrapping); a toast when none is left."""
    nxt = next_unlabelled(pairs, order, after=after) if pairs is not None else None
    if nxt is None:
        st.session_state.pop(FOCUS_KEY, None)
        st.toast("Every top feature of the listed classes has a person's answer.")
        return
    set_class(nxt[0])
    st.session_state[FOCUS_KEY] = (int(nxt[0]), int(nxt[1]))


def focus_panel(ws, dataset, model, fs, class_index: int, feature: int, rank: int, annotator: str, mode: str,
                labels, verdicts, pairs, order) -> None:
    """The focused (class, feature): images, labels, and answer buttons 1–4 that save and advance."""
    with st.container(border=True):
        st.subheader(f"Now labelling · #{rank + 1} · feature {feature}")
        rows = top_activating_rows(fs, class_index, feature, N_TOP_IMAGES)
        with st.spinner("Rendering…"):
            items, _ = visual_items(ws, dataset, model, fs, rows, feature, mode)
        image_grid(items, key=f"focus_{class_index}_{feature}", per_page=N_TOP_IMAGES, columns=N_TOP_IMAGES + 2,
                   size=96, paginate=False, show_overlay=mode != "images")
        salient_view(ws, dataset, model, class_index, feature)
        feature_labels_view(labels, verdicts, class_index, feature)
        st.caption("Keys: 1 core · 2 spurious object · 3 spurious background · 4 unsure (save and go to the next "
                   "unlabelled feature) · N skip to the next.")
        if st.session_state.pop(NEEDS_NAME_KEY, False):
            st.warning("Type your name in the *Annotator* box above before labelling.")
        cols = st.columns(5)
        for col, (answer, key) in zip(cols, ANSWER_KEYS.items()):
            # callbacks run before the next script run: save + advance cost one run, not two
            col.button(f"{key} · {SHORT_LABELS[answer]}", key=f"quick_{answer}", shortcut=key,
                       type="primary" if answer != "unsure" else "secondary", on_click=_answer_and_advance,
                       args=(ws, dataset, model, class_index, feature, answer, pairs, order))
        cols[4].button("N · Skip", key="quick_skip", shortcut="n", on_click=_go_next,
                       args=(pairs, order, (class_index, feature)))


def _answer_and_advance(ws, dataset: str, model: str, class_index: int, feature: int, answer: str, pairs,
                        order) -> None:
    """Button callback: record the answer (refused without a name), then focus the next unlabelled."""
    annotator = str(st.session_state.get(ANNOTATOR_KEY, "")).strip()
    if not annotator:
        st.session_state[NEEDS_NAME_KEY] = True
        return
    _save(ws, dataset, model, [{"class_index": class_index, "feature": feature, "answer": answer,
                                "annotator": annotator, "source": "human", "note": "keyboard answer"}])
    st.toast(f"Saved: class {class_index}, feature {feature} → {answer}")
    _go_next(pairs, order, (class_index, feature))


def assets_panel(ws, dataset: str, model: str, class_index: int, k: int, missing: int) -> None:
    """Launch the labelling-assets job (this class or every class, on a chosen device) and follow it."""
    with st.expander("Render overlays and attacks in the background (labelling-assets job)",
                     expanded=missing > 0):
        if missing:
            st.info(f"{missing} overlay(s) or attack(s) of this class are not rendered yet and this model is too "
                    f"large to render them here (> {ATTACK_MAX_PARAMS / 1e6:.0f} M parameters). The job renders "
                    "them into the workspace cache; this page then shows them.", icon=":material/info:")
        c1, c2, c3 = st.columns([1, 1, 1])
        scope = c1.radio("Classes", ["this class", "every class"], horizontal=True, key="assets_scope")
        device = c2.selectbox("Device", resources.device_choices(), key="assets_device")
        if c3.button("Render assets", key="assets_run", icon=":material/imagesmode:"):
            params = {"dataset": dataset, "model": model, "k": int(k),
                      "classes": [int(class_index)] if scope == "this class" else None}
            job_id = launch(ws, ASSETS_KIND, params, device=device)
            st.toast(f"Labelling-assets job {job_id} started")
        job_monitor(ws, recent_jobs(ws, ASSETS_KIND, dataset=dataset, model=model, limit=2), key="assets_jobs")


# ---- issue 14: a feature's imported Salient ImageNet masks, outlined on their images (core.audit.salient_masks)
N_SALIENT_IMAGES = 6


def salient_view(ws, dataset: str, model: str, class_index: int, feature: int) -> None:
    """An expander with the first images that have an imported Salient mask of (class, feature), the mask's
    region (soft value >= 0.5) outlined in yellow; nothing when the pair has none."""
    art = resources.salient_masks(ws, dataset, model)
    rows = art.pair(class_index, feature) if art is not None else None
    if rows is None or not len(rows):
        return
    with st.expander(f"Salient ImageNet masks of this feature: {len(rows)} image(s), region outlined",
                     expanded=False):
        cols = st.columns(N_SALIENT_IMAGES + 2)
        for col, r in zip(cols, rows.head(N_SALIENT_IMAGES).itertuples()):
            col.image(resources.salient_tile(ws, dataset, model, r.mask, r.split, r.row), width=96,
                      caption=f"{r.split} #{r.row}")


def render() -> None:
    page = features_page("Features")
    ws, dataset, model, splits = page.ws, page.dataset, page.model, page.splits
    split = "train" if "train" in splits else splits[0]
    fs = resources.feature_set(ws, dataset, model, split)

    class_index = class_navigator(ws, dataset, model, page.class_names, fs.num_classes, key=NAV_KEY)
    order = st.session_state.get(f"{NAV_KEY}_view") or list(range(fs.num_classes))
    table = resources.class_table(ws, dataset, model)
    pairs = resources.label_pairs(ws, dataset, model)
    if pairs is not None:
        done = int((pairs.status != "none").sum())
        st.progress(done / max(len(pairs), 1), text=progress_line(table, class_index))
    import_labels_form(ws, dataset, model)          # issue 14: labels CSV, Salient ImageNet answers and masks

    c1, c2, c3 = st.columns([1, 2, 3])
    k = c1.number_input("Top k", min_value=1, max_value=min(20, fs.dim), value=min(5, fs.dim),
                        key="features_k")
    st.session_state.setdefault(ANNOTATOR_KEY, "")
    annotator = c2.text_input("Annotator", key=ANNOTATOR_KEY, placeholder="your name")
    mode = c3.radio("Show", ["images", "activation maps", "feature attacks"], horizontal=True,
                    key="features_mode",
                    help="Top-activating images of the class, the feature's activation map over them, or the "
                         "image pushed by gradient ascent on the feature (cached in the workspace).")
    st.caption(f"Features of the **{md_escape(split)}** split ({fs.n:,} images, {fs.dim} features). Importance of "
               "feature j for class c = mean activation × head weight over the images predicted as c.")

    disc = resources.saved_discovery(ws, dataset, model)      # the audit's, when it ran (core.audit.artifacts)
    if disc is None or disc.top_features.shape[1] < int(k):
        if not resources.computes_live(ws, dataset, model, split):
            raise NeedsSetup(f"The {md_escape(split)} split is large ({fs.n} images), so its top features are "
                             f"found by the audit job, not in this page. Run it (top {int(k)} features per class):",
                             f"python -m core discover --workspace {ws.root} --dataset {dataset} "
                             f"--model {model} --k {int(k)}")
        disc = resources.discovery(ws, dataset, model, split, k=int(k))
    table_c = disc.table()
    table_c = table_c[(table_c.class_index == class_index) & (table_c["rank"] < int(k))]
    labels = resources.labels(ws, dataset, model)        # cached per label stamp (one load per change)
    verdicts = resources.verdicts(ws, dataset, model)

    a1, a2, _ = st.columns([1, 2, 2])
    focus = st.session_state.get(FOCUS_KEY)
    a1.button("Next unlabelled", key="features_next", icon=":material/skip_next:",
              help="The next (class, feature) without a person's answer, in the navigator's order",
              on_click=_go_next, args=(pairs, order, tuple(focus) if focus else (class_index, -1)))
    n_machine = 0
    if pairs is not None:
        mine = pairs[(pairs.class_index == class_index) & (pairs["rank"] < int(k))]
        n_machine = int((mine.status == "machine").sum())
    if a2.button(f"Accept this class's machine suggestions ({n_machine})", key="features_accept",
                 disabled=n_machine == 0, icon=":material/done_all:",
                 help="Record the latest machine answer of each top feature without a person's answer as your "
                      "answer (the note says which suggestion you accepted)"):
        try:
            rows = accept_machine_rows(labels, pairs[pairs["rank"] < int(k)], class_index, annotator=annotator)
        except SpurAuditError as exc:
            st.warning(str(exc))
        else:
            _save(ws, dataset, model, rows)
            st.toast(f"Accepted {len(rows)} machine suggestion(s) of class {class_index}")
            st.rerun()

    if class_index in disc.fallback_classes:
        st.info("The model never predicts this class on this split; features are ranked over its labelled "
                "images.")
    if mode != "images" and not resources.audit_model(ws, model).has_spatial_map:
        st.warning("This model has no spatial feature map, so activation maps and attacks are not available.")
        mode = "images"
    if mode == "feature attacks":
        st.caption(f"Feature attacks: the first {N_ATTACK_IMAGES} images of each feature after 100 steps "
                   "of gradient ascent on its activation (cached in the workspace).")

    focus_feature = None
    if focus and int(focus[0]) == class_index and int(focus[1]) in table_c.feature.astype(int).tolist():
        focus_feature = int(focus[1])
        r = table_c[table_c.feature == focus_feature].iloc[0]
        focus_panel(ws, dataset, model, fs, class_index, focus_feature, int(r["rank"]), annotator, mode, labels,
                    verdicts, pairs, order)
    missing = 0
    for r in table_c.itertuples():
        feature = int(r.feature)
        if feature == focus_feature:
            continue
        with st.container(border=True):
            gap = getattr(r, "gap", np.nan)
            gap_txt = f" · single-feature gap {gap * 100:+.1f} pts" if pd.notna(gap) else ""
            st.subheader(f"#{int(r.rank) + 1} · feature {feature}")
            st.caption(f"importance {r.importance:.3f}{gap_txt}")
            rows = top_activating_rows(fs, class_index, feature, N_TOP_IMAGES)
            with st.spinner("Rendering…"):
                items, miss = visual_items(ws, dataset, model, fs, rows, feature, mode)
            missing += miss
            image_grid(items, key=f"feat_{class_index}_{feature}", per_page=N_TOP_IMAGES,
                       columns=N_TOP_IMAGES + 2, size=96, paginate=False, show_overlay=mode != "images")
            salient_view(ws, dataset, model, class_index, feature)
            left, right = st.columns([1, 1])
            with left:
                feature_labels_view(labels, verdicts, class_index, feature)
            with right:
                label_form(ws, dataset, model, class_index, feature, annotator)
    if mode != "images":
        assets_panel(ws, dataset, model, class_index, int(k), missing)


run_page(render)
