"""The "Ranking" selector of the Rankings and Gaps pages: "by features" (the audited model's labelled
spurious features) or a saved concept ranking of the split ("by concept: water, sky",
`core.concepts.artifacts`). Drawn only when the dataset has concept rankings for the split."""
from __future__ import annotations

import streamlit as st

from core.concepts.artifacts import ConceptRanking, list_concept_rankings

BY_FEATURES = "by features"


def ranking_choice(ws, dataset: str, split: str, *, key: str, container=None) -> ConceptRanking | None:
    """The concept ranking picked in the selector (``None`` = "by features"; also when the split has
    no concept ranking, and then no selector is drawn)."""
    saved = list_concept_rankings(ws, dataset, split=split)
    if not saved:
        return None
    by_name = {r.name: r for r in saved}
    if st.session_state.get(key) not in (None, *by_name):
        st.session_state.pop(key)          # a ranking of another split (or deleted): back to features
    pick = (container or st).selectbox(
        "Ranking", [None, *by_name], key=key,
        format_func=lambda n: BY_FEATURES if n is None else by_name[n].label,
        help="Order the images by the audited model's labelled spurious features, or by a concept "
             "ranking (CLIP similarity to concept texts, made on the Automation page).")
    return by_name.get(pick)
