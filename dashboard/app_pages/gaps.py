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


# --------------------------------------------------------------------------------------------------
# issue 14: the many-model study (this block only; the page above belongs to the Gaps page's owner)
# --------------------------------------------------------------------------------------------------
from core.audit.artifacts import audited_models  # noqa: E402 - the study block's imports stay in its block
from core.study.artifacts import list_studies  # noqa: E402
from dashboard.components.job_monitor import job_monitor, launch, recent_jobs  # noqa: E402
from dashboard.components.state import NeedsSetup, context  # noqa: E402

STUDY_KIND = "study"


def _study_form(ws, dataset: str, model: str | None, audited: list[str]) -> None:
    with st.expander("Run a study", icon=":material/science:", expanded=False):
        st.caption("Each model's predictions on the split ranked by the ranking model's audit; per-class gaps, "
                   "the pooled gap, acc(high) vs acc(low) with a fitted line and the correlation of per-class "
                   "gaps between models. Runs as a background job (resumable).")
        c1, c2, c3 = st.columns(3)
        ranker = c1.selectbox("Ranking model (audited)", audited,
                              index=audited.index(model) if model in audited else 0, key="study_ranker")
        split = c2.text_input("Ranked split", value="val", key="study_split")
        device = c3.selectbox("Device", resources.device_choices(), format_func=resources.device_label,
                              key="study_device")
        names = [m.name for m in ws.list_models() if m.name != ranker]
        chosen = st.multiselect("Workspace models", names, default=names[:8], key="study_models")
        extra = st.text_area("More models, one spec per line (arch@checkpoint, timm:NAME@checkpoint, "
                             "clip-zeroshot:NAME@tag)", key="study_extra", height=80)
        if st.button("Run study", icon=":material/play_arrow:", key="study_run"):
            specs = chosen + [ln.strip() for ln in extra.splitlines() if ln.strip() and not ln.strip().startswith("#")]
            launch(ws, STUDY_KIND, {"dataset": dataset, "ranking_model": ranker, "models": specs,
                                    "split": split.strip() or "val"}, device=device)
            st.rerun()
    ids = recent_jobs(ws, STUDY_KIND, dataset=dataset, limit=2)
    if ids:
        job_monitor(ws, ids, key="study_jobs")


def render_studies() -> None:
    try:
        ctx = context()
    except NeedsSetup:
        return      # the page above already says what is missing
    ws, dataset = ctx.ws, ctx.dataset
    if dataset is None:
        return
    st.divider()
    st.subheader("Many-model study")
    audited = audited_models(ws, dataset)
    names = list_studies(ws, dataset=dataset)
    if audited:
        _study_form(ws, dataset, ctx.model, audited)
    if not names:
        st.caption("No study of this dataset yet. Run one above, or: python -m core study --dataset D "
                   "--ranking-model M --models a,b,c")
        return
    name = st.selectbox("Study", names, key="study_name")
    s = resources.study(ws, name)
    summ = s.summary
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Models", len(s.models))
    mp = summ.get("mean_pairwise_pearson")
    m2.metric("Mean pairwise Pearson", "—" if mp is None else f"{mp:.2f}",
              help="mean correlation of per-class gaps over distinct model pairs")
    fit = summ.get("fit") or {}
    m3.metric("Fit slope", "—" if fit.get("slope") is None else f"{fit['slope']:.2f}",
              help="acc(low) = slope · acc(high) + intercept over the models")
    m4.metric("Common classes", summ.get("n_common_classes", "—"))
    st.caption(f"Ranked by {s.ranking_model} on split {summ['config']['split']}.")
    c1, c2 = st.columns(2)
    if s.scatter is not None:
        c1.plotly_chart(s.scatter, key="study_scatter")
    if s.heatmap is not None:
        c2.plotly_chart(s.heatmap, key="study_heatmap")
    st.caption("Left: one point per model; below the dashed y = x line a model is more accurate on "
               "high-spuriosity images (a positive gap); effective robustness = distance above the fitted line. "
               "Right: correlation of per-class gaps between models.")
    cols = [c for c in ("model", "source", "accuracy", "acc_high", "acc_low", "gap", "ci_low", "ci_high",
                        "effective_robustness", "mean_corr") if c in s.models.columns]
    st.dataframe(s.models[cols], hide_index=True,
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in cols
                                if c not in ("model", "source")})


run_page(render_studies)
