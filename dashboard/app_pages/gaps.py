"""Gaps: per-class spurious gap acc(high spuriosity) − acc(low) with its bootstrap interval (Plotly
bars), negative gaps flagged, and a table comparing every model that has features of the split."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.audit.plots import gap_bar
from dashboard import resources
from dashboard.components.guard import run_page
from dashboard.components.ranking_note import saved_ranking_note
from dashboard.components.state import features_page, md_escape


def held_out_split(splits: list[str]) -> str:
    for s in ("test", "val"):
        if s in splits:
            return s
    return splits[0]


def render() -> None:
    page = features_page("Spurious gaps")
    ws, dataset, model, splits = page.ws, page.dataset, page.model, page.splits
    class_names = page.class_names
    c1, c2 = st.columns([1, 1])
    split = c1.selectbox("Split (held-out images)", splits, index=splits.index(held_out_split(splits)),
                         key="gaps_split")
    n_boot = c2.selectbox("Bootstrap resamples", [200, 1000, 5000], index=1, key="gaps_boot")
    verdicts = resources.verdicts(ws, dataset, model)
    if not len(verdicts) or not (verdicts.verdict == "spurious").any():
        st.info("No feature of this model is labelled spurious yet, so there is no ranking to measure gaps "
                "on. Label features on the **Features** page.", icon=":material/info:")
        return
    saved_ranking_note(ws, dataset, model, split)
    result = resources.gaps(ws, dataset, model, split, n_boot=int(n_boot))
    per_class = result.per_class
    pooled = result.pooled
    m1, m2, m3 = st.columns(3)
    m1.metric("Pooled gap", f"{pooled['gap'] * 100:+.1f} pts",
              help="accuracy on all classes' high-spuriosity slices − on their low slices")
    m2.metric("Interval", f"[{pooled['ci_low'] * 100:+.1f}, {pooled['ci_high'] * 100:+.1f}]"
              if pd.notna(pooled.get("ci_low")) else "—")
    m3.metric("Ranked classes", f"{int(pooled.get('n_classes', per_class.ranked.sum()))} / {len(per_class)}")
    st.plotly_chart(gap_bar(per_class, class_names=class_names,
                            title=f"Spurious gap per class — {model} on {split}"), key="gaps_chart")
    st.caption("gap = acc(k highest-spuriosity images) − acc(k lowest), disjoint slices; error bars: "
               "bootstrap interval. A positive gap means the model leans on the spurious cue.")

    negative = per_class[per_class.get("negative", False) == True]  # noqa: E712
    if len(negative):
        names = ", ".join(md_escape(class_names[int(c)]) for c in negative.class_index)
        st.warning(f"Negative gap in {names}: high-spuriosity images are classified *better*; these are "
                   "often multi-object or mislabelled images — inspect them on the **Rankings** page.",
                   icon=":material/flag:")
    unranked = per_class[~per_class.ranked.astype(bool)]
    if len(unranked):
        st.caption("Not ranked (no spurious feature): " +
                   ", ".join(md_escape(class_names[int(c)]) for c in unranked.class_index))
    show = per_class.copy()
    show.insert(1, "class", [class_names[int(c)] for c in show.class_index])
    number = st.column_config.NumberColumn(format="%.3f")
    st.dataframe(show, hide_index=True,
                 column_config={c: number for c in ("acc_high", "acc_low", "gap", "ci_low", "ci_high")})

    others = [m.name for m in ws.list_models() if m.name != model
              and split in resources.feature_splits(ws, dataset, m.name)]
    if others:
        st.subheader("Other models on the same ranking")
        chosen = st.multiselect("Models", others, default=others[:5], key="gaps_models")
        rows = []
        for name in [model, *chosen]:
            res = resources.gaps(ws, dataset, model, split, evaluated=name, n_boot=int(n_boot))
            p = res.pooled
            row = {"model": name, "pooled gap": p["gap"], "ci_low": p.get("ci_low"),
                   "ci_high": p.get("ci_high"), "acc high": p.get("acc_high"), "acc low": p.get("acc_low")}
            row.update({f"gap {class_names[int(r.class_index)]}": r.gap for r in res.per_class.itertuples()})
            rows.append(row)
        st.dataframe(pd.DataFrame(rows), hide_index=True,
                     column_config={c: st.column_config.NumberColumn(format="%.3f")
                                    for c in pd.DataFrame(rows).columns if c != "model"})


run_page(render)
