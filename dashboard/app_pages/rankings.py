"""Rankings: per class, images sorted by spuriosity (lowest = least spurious cue, highest = most), as
thumbnail grids. For large classes: jump to a rank (slider or number) and step by page; filters
(misclassified only, one bias group, aligned / conflicting); an image detail view (the image, overlays
of its class's spurious and core features, the top-5 predictions of every model with features of the
split). Only the chosen view (lowest / highest first) is rendered. A class that is not ranked is said
plainly, with the reason. A "Ranking" selector (when the split has concept rankings) orders the images
by a saved concept ranking ("by concept: water") instead of the labelled spurious features."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.audit.coverage import REASONS, unranked_reason
from core.audit.labels import core_features, spurious_features
from core.features.assets import existing_overlays
from core.features.maps import cached_overlay
from dashboard import resources
from dashboard.components.class_nav import class_navigator
from dashboard.components.concept_pick import ranking_choice
from dashboard.components.guard import run_page
from dashboard.components.image_grid import GridItem, image_grid
from dashboard.components.ranking_note import saved_ranking_note
from dashboard.components.state import features_page, md_escape

LIVE_MAX_PARAMS = 5_000_000      # overlays of the detail view are rendered live only for small models
RANKING_KEY = "rank_ranking"     # the Ranking selector: None = by features, else a concept ranking's name
VIEWS = ["Lowest spuriosity first", "Highest spuriosity first"]


def grid_items(fs, rows: np.ndarray, scores: np.ndarray, preds: np.ndarray, ranks: np.ndarray) -> list[GridItem]:
    manifest = fs.manifest
    items = []
    for row, rank in zip(rows, ranks):
        row = int(row)
        ok = "✓" if preds[row] == fs.labels[row] else "✗"
        items.append(GridItem(path=manifest.image_path(row), caption=f"#{int(rank)} {scores[row]:+.2f} {ok}"))
    return items


def filter_rows(order: np.ndarray, fs, preds: np.ndarray, *, misclassified: bool, bias: object,
                alignment: str) -> np.ndarray:
    """The rows of ``order`` (ranked) that pass the filters, in rank order."""
    keep = np.ones(len(order), dtype=bool)
    df = fs.manifest.df
    if misclassified:
        keep &= preds[order] != fs.labels[order]
    if bias is not None and "bias" in df:
        keep &= df["bias"].to_numpy()[order] == bias
    if alignment != "any" and "aligned" in df:
        al = df["aligned"].to_numpy()[order]
        keep &= (al == True) if alignment == "aligned" else (al == False)  # noqa: E712 - nullable booleans
    return np.flatnonzero(keep)


def top5_table(ws, dataset: str, split: str, row: int, class_names) -> pd.DataFrame:
    """Top-5 predictions of ``row`` for every model with features of ``split`` (softmax of stored logits)."""
    out = []
    for rec in ws.list_feature_sets(dataset=dataset):
        if rec.split != split:
            continue
        fs = resources.feature_set(ws, dataset, rec.model, split)
        if fs.n <= row:
            continue
        z = np.asarray(fs.logits[row], dtype=np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        top = np.argsort(-p)[:5]
        out.append({"model": rec.model, **{f"#{i + 1}": f"{class_names[c] if c < len(class_names) else c} "
                                                         f"({p[c]:.0%})" for i, c in enumerate(top)}})
    return pd.DataFrame(out)


def detail_view(ws, dataset: str, model: str, split: str, fs, row: int, class_index: int, rank: int,
                scores: np.ndarray, preds: np.ndarray, spurious: list[int], core: list[int], class_names) -> None:
    manifest = fs.manifest
    with st.container(border=True):
        st.subheader(f"Image #{rank} of the ranking")
        left, right = st.columns([1, 3])
        with left:
            st.image(resources.thumb(manifest.image_path(row), 224), width=224)
            st.text(f"sample {int(manifest.df['sample_id'].iat[row])} · spuriosity {scores[row]:+.2f}\n"
                    f"label {class_names[class_index]} · predicted "
                    f"{class_names[int(preds[row])] if int(preds[row]) < len(class_names) else int(preds[row])}")
        with right:
            feats = [(j, "spurious") for j in spurious] + [(j, "core") for j in core]
            if feats:
                model_obj = resources.audit_model(ws, model)
                if not model_obj.has_spatial_map:
                    st.caption("This model has no spatial feature map: no overlays.")
                else:
                    pairs = [(row, j) for j, _ in feats]
                    cached = existing_overlays(ws, dataset, model, manifest, pairs)
                    live = sum(p.numel() for p in model_obj.parameters()) <= LIVE_MAX_PARAMS
                    cols = st.columns(min(len(feats), 6))
                    for col, (j, kind) in zip(cols, feats[:6]):
                        path = cached.get((row, j))
                        if path is None and live:
                            path = cached_overlay(ws, dataset, model, model_obj, manifest, row, j, device="cpu")
                        with col:
                            if path is None:
                                st.caption(f"{kind} #{j}: not rendered (run the labelling-assets job)")
                            else:
                                st.image(resources.thumb(path, 128), caption=f"{kind} feature {j}", width=128)
            else:
                st.caption("No feature of this class is labelled yet.")
            st.dataframe(top5_table(ws, dataset, split, row, class_names), hide_index=True)


def _bias_values(fs) -> list:
    df = fs.manifest.df
    if "bias" not in df:
        return []
    return sorted(int(v) for v in pd.unique(df["bias"].dropna()) if int(v) >= 0)


def render() -> None:
    page = features_page("Spuriosity rankings")
    ws, dataset, model, splits = page.ws, page.dataset, page.model, page.splits
    class_names = page.class_names
    c1, c2, c3 = st.columns([1, 1.4, 1])
    split = c1.selectbox("Split", splits, key="rank_split")
    concept = ranking_choice(ws, dataset, split, key=RANKING_KEY, container=c2)
    per_page = c3.selectbox("Images per page", [12, 24, 48], index=1, key="rank_per_page")
    fs = resources.feature_set(ws, dataset, model, split)
    concept_gaps = resources.concept_gaps(ws, dataset, concept.name, split, evaluated=model, n_boot=0).per_class \
        if concept is not None else None      # the navigator's gaps follow the chosen ranking
    class_index = class_navigator(ws, dataset, model, class_names, fs.num_classes, key="rank_nav", gaps=concept_gaps,
                                  gaps_from=concept.label if concept is not None else None)

    verdicts = resources.verdicts(ws, dataset, model)
    if concept is None and (not len(verdicts) or not (verdicts.verdict == "spurious").any()):
        st.info("No feature is labelled spurious yet, so no class can be ranked. Label features on the "
                "**Features** page (or import them with `python -m core label import FILE`).",
                icon=":material/info:")
        return
    if concept is None:
        saved_ranking_note(ws, dataset, model, split)
    with st.spinner("Ranking…"):
        ranking = resources.spuriosity(ws, dataset, model, split) if concept is None else \
            resources.concept_ranking(ws, dataset, concept.name, split, labels_from=model)
        preds = resources.predictions(ws, dataset, model, split)
    order = ranking.ranking(class_index)
    if concept is not None and (class_index in ranking.classes_without_spurious or order.size == 0):
        st.info(f"Class **{md_escape(class_names[class_index])}** is not ranked {md_escape(concept.label)}: no "
                "image of it has a finite concept score (the ranking has no spurious concept for this class). "
                "Pick another class, or **by features** in the Ranking selector.", icon=":material/info:")
        return
    if class_index in ranking.classes_without_spurious or order.size == 0:
        why = REASONS[unranked_reason(int(order.size) if class_index not in ranking.classes_without_spurious
                                      else len(fs.class_rows(class_index)), 1,
                                      class_index not in ranking.classes_without_spurious) or "no_spurious"]
        st.info(f"Class **{md_escape(class_names[class_index])}** is not ranked: {why}.", icon=":material/info:")
        return
    spurious = ranking.spurious.get(class_index, []) if concept is None else \
        (spurious_features(verdicts, fs.num_classes).get(class_index, []) if len(verdicts) else [])
    core = core_features(verdicts, fs.num_classes).get(class_index, []) if len(verdicts) else []

    f1, f2, f3, f4 = st.columns([2.2, 1, 1, 1.4])
    view = f1.segmented_control("Order", VIEWS, default=VIEWS[0], key="rank_view") or VIEWS[0]
    misclassified = f2.checkbox("Misclassified only", key="rank_wrong")
    bias_values = _bias_values(fs)
    bias = f3.selectbox("Bias group", [None, *bias_values], key="rank_bias",
                        format_func=lambda v: "any" if v is None else f"bias = {v}") if bias_values else None
    alignment = f4.radio("Bias-aligned", ["any", "aligned", "conflicting"], horizontal=True, key="rank_align") \
        if "aligned" in fs.manifest.df else "any"

    ranked = order if view == VIEWS[0] else order[::-1]
    ranks = np.arange(1, len(order) + 1) if view == VIEWS[0] else np.arange(len(order), 0, -1)
    keep = filter_rows(ranked, fs, preds, misclassified=misclassified, bias=bias, alignment=alignment)
    rows, ranks = ranked[keep], ranks[keep]
    how = (f"by spuriosity (mean within-class z-score of spurious feature(s) {', '.join(map(str, spurious))}"
           if concept is None else f"{md_escape(concept.label)} (within-class z-score of the CLIP similarity to "
           "the spurious concept texts minus the core ones")
    st.caption(f"{order.size:,} images of class {md_escape(class_names[class_index])} ranked {how}; higher = "
               f"stronger spurious cue); {len(rows):,} pass the filters. Caption: rank, spuriosity, "
               "✓/✗ = model correct.")
    if not len(rows):
        st.info("No image of this class passes the filters.", icon=":material/filter_alt_off:")
        return

    n_pages = max(1, -(-len(rows) // int(per_page)))
    pos_key = f"rank_pos_{split}_{concept.name if concept else ''}_{class_index}_{view[:3]}_{misclassified}_{bias}_{alignment}"
    st.session_state.setdefault(pos_key, 1)
    st.session_state[pos_key] = min(max(1, int(st.session_state[pos_key])), len(rows))

    def step(delta: int) -> None:
        st.session_state[pos_key] = min(max(1, int(st.session_state[pos_key]) + delta * int(per_page)), len(rows))

    p1, p2, p3, p4 = st.columns([1, 4, 1.3, 1])
    p1.button("◀ Previous", key="rank_prev", on_click=step, args=(-1,), disabled=st.session_state[pos_key] <= 1,
              width="stretch")
    if len(rows) > 1:
        p2.slider("Position in the (filtered) list", 1, len(rows), key=pos_key,
                  help="Drag to any position; the grid shows the page that holds it.")
    if not 1 <= int(st.session_state.get("rank_jump", 1)) <= len(rows):
        st.session_state["rank_jump"] = 1

    def jump() -> None:
        st.session_state[pos_key] = int(st.session_state["rank_jump"])

    p3.number_input("Jump to position", 1, len(rows), key="rank_jump", on_change=jump)
    p4.button("Next ▶", key="rank_next", on_click=step, args=(1,),
              disabled=st.session_state[pos_key] > len(rows) - int(per_page), width="stretch")
    page_no = (int(st.session_state[pos_key]) - 1) // int(per_page)
    start = page_no * int(per_page)
    stop = min(start + int(per_page), len(rows))
    st.caption(f"page {page_no + 1} of {n_pages:,} · positions {start + 1:,}–{stop:,} of {len(rows):,}")
    page_rows, page_ranks = rows[start:stop], ranks[start:stop]
    image_grid(grid_items(fs, page_rows, ranking.scores, preds, page_ranks), key=f"rank_grid_{class_index}",
               per_page=int(per_page), columns=8, paginate=False)

    pick = st.selectbox("Inspect an image of this page", [None, *range(len(page_rows))], key="rank_detail",
                        format_func=lambda i: "—" if i is None else f"#{int(page_ranks[i])} (sample "
                        f"{int(fs.manifest.df['sample_id'].iat[int(page_rows[i])])})")
    if pick is not None:
        with st.spinner("Loading the image detail…"):
            detail_view(ws, dataset, model, split, fs, int(page_rows[pick]), class_index, int(page_ranks[pick]),
                        ranking.scores, preds, spurious, core, class_names)


run_page(render)
