"""The note (and re-rank button) shown when a large split's ranking comes from the audit's saved results."""
from __future__ import annotations

import streamlit as st

from dashboard import resources
from dashboard.components.job_monitor import job_monitor, launch, recent_jobs
from dashboard.components.state import md_escape

STEP_KIND = "audit-step"   # core.audit job kind; step "rank" re-ranks a split


def saved_ranking_note(ws, dataset: str, model: str, split: str) -> None:
    """For splits above `resources.LIVE_MAX_ROWS` rows: say that the saved ranking is shown (labels added
    since are not in it) and offer to re-rank as a background job (`audit-step` step ``rank``)."""
    if resources.computes_live(ws, dataset, model, split):
        return
    st.caption(f"The {md_escape(split)} split is large, so this page shows the ranking the audit saved; labels added "
               "since then count after re-ranking.")
    if st.button("Re-rank as a job", key=f"rerank_{split}", icon=":material/refresh:"):
        launch(ws, STEP_KIND, {"step": "rank", "dataset": dataset, "model": model, "split": split},
               device="cpu")
        st.rerun()
    ids = recent_jobs(ws, STEP_KIND, dataset=dataset, model=model, limit=1,
                      where=lambda p: p.get("step") == "rank" and p.get("split") == split)
    job_monitor(ws, ids, key=f"rerank_jobs_{split}")
