"""Dataset: what the audited data holds — class counts per split, the (class × bias) groups as a heatmap
with the realised bias-conflicting fraction per split, a sample grid per class (bias-conflicting images
framed in red, object masks outlined in yellow) and the rows skipped at import. Reads the manifest
through `dashboard.resources` and `core.data.preview`; writes nothing."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.data.preview import group_heatmap, group_table, is_conflicting, load_skipped, manifest_overview, sample_rows
from dashboard import resources
from dashboard.components.guard import run_page
from dashboard.components.state import CLASS_KEY, context, md_escape

GRID_COLUMNS = 8


def render() -> None:
    st.title("Dataset")
    ctx = context()
    ws, dataset = ctx.ws, ctx.require_dataset()
    rec = ws.get_dataset(dataset)
    man = resources.manifest(ws, dataset)
    over = manifest_overview(man)
    st.caption(f"{md_escape(dataset)} · source {md_escape(rec.source)} · {len(man)} images · "
               f"{man.num_classes} classes · root {md_escape(rec.root)}")
    cols = st.columns(len(over["split_sizes"]) + 1)
    for col, (split, n) in zip(cols, over["split_sizes"].items()):
        frac = over["conflict_fraction"].get(split)
        col.metric(f"{split} images", n, help="bias-conflicting fraction below" if frac is not None else None)
    cols[-1].metric("with object mask", over["with_mask"])
    if over["conflict_fraction"]:
        st.markdown("**Realised bias-conflicting fraction** (images whose bias value is not the one their class "
                    "is correlated with): " + " · ".join(f"{s} {v:.1%}" for s, v in over["conflict_fraction"].items()))

    c1, c2 = st.columns([2, 3])
    with c1:
        st.subheader("Class counts")
        st.dataframe(over["class_counts"])
    with c2:
        groups = over["groups"]
        if groups is not None:
            st.subheader("Bias groups")
            st.plotly_chart(group_heatmap(groups), key="ds_groups")
        else:
            st.subheader("Bias groups")
            st.caption("This dataset has no bias labels, so there are no (class, bias) groups to show.")

    st.subheader("Samples per class")
    st.caption("Red frame = bias-conflicting image; yellow outline = its object mask.")
    names = man.class_names
    current = st.session_state.get(CLASS_KEY)
    index = int(current) if isinstance(current, int) and 0 <= current < len(names) else 0
    c1, c2 = st.columns([3, 1])
    cls = c1.selectbox("Class", list(range(len(names))), index=index, format_func=lambda i: f"{i}: {names[i]}",
                       key="ds_class")
    split = c2.selectbox("Split", man.splits(), key="ds_split")
    rows = sample_rows(man, int(cls), n=16, split=split)
    if not rows:
        st.caption("No images of this class in this split.")
    for start in range(0, len(rows), GRID_COLUMNS):
        grid = st.columns(GRID_COLUMNS)
        for col, row in zip(grid, rows[start:start + GRID_COLUMNS]):
            caption = "conflicting" if is_conflicting(man, row) else None
            col.image(resources.dataset_tile(ws, dataset, row), caption=caption)

    st.subheader("Rows skipped at import")
    skipped = load_skipped(ws, dataset)
    if skipped is None or not len(skipped):
        st.caption("None: every row of the source was imported.")
    else:
        st.caption(f"{len(skipped)} row(s) were left out when the dataset was imported, with the reason:")
        st.dataframe(skipped, hide_index=True)
    notes = {k: rec.params[k] for k in ("split_note", "aligned_rule") if k in rec.params}
    if notes:
        st.dataframe(pd.DataFrame([{"note": k, "value": str(v)} for k, v in notes.items()]), hide_index=True)


run_page(render)
