"""Rankings: per class, images sorted by spuriosity (lowest = least spurious cue, highest = most),
as paginated thumbnail grids. A class without spurious features is said plainly."""
from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard import resources
from dashboard.components.class_nav import class_select
from dashboard.components.guard import run_page
from dashboard.components.image_grid import GridItem, image_grid
from dashboard.components.ranking_note import saved_ranking_note
from dashboard.components.state import features_page, md_escape


def grid_items(fs, rows: np.ndarray, scores: np.ndarray, preds: np.ndarray) -> list[GridItem]:
    manifest = fs.manifest
    items = []
    for row in rows:
        row = int(row)
        ok = "✓" if preds[row] == fs.labels[row] else "✗"
        items.append(GridItem(path=manifest.image_path(row), caption=f"{scores[row]:+.2f} {ok}"))
    return items


def render() -> None:
    page = features_page("Spuriosity rankings")
    ws, dataset, model, splits = page.ws, page.dataset, page.model, page.splits
    class_names = page.class_names
    c1, c2, c3 = st.columns([1, 2, 1])
    split = c1.selectbox("Split", splits, key="rank_split")
    fs = resources.feature_set(ws, dataset, model, split)
    class_index = class_select(c2, class_names, fs.num_classes)
    per_page = c3.selectbox("Images per page", [12, 24, 48], index=1, key="rank_per_page")

    verdicts = resources.verdicts(ws, dataset, model)
    if not len(verdicts) or not (verdicts.verdict == "spurious").any():
        st.info("No feature is labelled spurious yet, so no class can be ranked. Label features on the "
                "**Features** page (or import them with `python -m core label import FILE`).",
                icon=":material/info:")
        return
    saved_ranking_note(ws, dataset, model, split)
    ranking = resources.spuriosity(ws, dataset, model, split)
    if class_index in ranking.classes_without_spurious:
        st.info(f"Class **{md_escape(class_names[class_index])}** has no spurious features (none of its labelled "
                "features has a spurious verdict), so its images are not ranked.", icon=":material/info:")
        return
    order = ranking.ranking(class_index)
    spurious = ranking.spurious.get(class_index, [])
    preds = resources.predictions(ws, dataset, model, split)
    st.caption(f"{order.size} images of class {md_escape(class_names[class_index])} ranked by spuriosity (mean "
               f"within-class z-score of spurious feature(s) {', '.join(map(str, spurious))}; higher = "
               "stronger "
               "spurious cue). "
               "Caption: spuriosity, ✓/✗ = model correct.")
    low_tab, high_tab = st.tabs(["Lowest spuriosity", "Highest spuriosity"])
    with low_tab:
        image_grid(grid_items(fs, order, ranking.scores, preds), key=f"rank_low_{split}_{class_index}",
                   per_page=per_page, columns=8)
    with high_tab:
        high = order[::-1]
        image_grid(grid_items(fs, high, ranking.scores, preds), key=f"rank_high_{split}_{class_index}",
                   per_page=per_page, columns=8)


run_page(render)
