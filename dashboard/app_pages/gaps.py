"""Gaps: per-class spurious gap acc(high spuriosity) − acc(low) with its bootstrap interval, for any
number of classes: a sorted view (top/bottom N by gap or by interval width), a search, clickable bars
(a click opens that class in Rankings), unranked classes counted by their true reason with an
expandable list, a "Class" section (the class navigator, bound to the shared current class: that
class's gap, interval, slice size and accuracies, and a button to open it in Rankings), and a table
comparing every model that has features of the split. A "Ranking"
selector (when the split has concept rankings) measures all of it on a saved concept ranking
("by concept: water") with the same gap code."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.audit.coverage import NO_SPURIOUS, REASONS, unranked_summary, unranked_table
from core.audit.labelling import sort_classes
from dashboard import resources
from dashboard.components.charts import gap_view_figure, plotly_chart
from dashboard.components.class_nav import RANKINGS_PAGE, class_label, class_navigator, open_class, set_class
from dashboard.components.concept_pick import ranking_choice
from dashboard.components.guard import run_page
from dashboard.components.ranking_note import saved_ranking_note
from dashboard.components.state import features_page, md_escape

GO_RANKINGS_KEY = "gaps_go_rankings"
RANKING_KEY = "gaps_ranking"          # the Ranking selector: None = by features, else a concept ranking's name
RANK_RANKING_KEY = "rank_ranking"     # Rankings' Ranking selector (dashboard/app_pages/rankings.py)
NAV_KEY = "gaps_nav"                  # the class navigator's widget keys (search, order, status)
NO_CONCEPT_SCORE = "no finite concept score"
#: view name -> (column, ascending)
VIEWS = {
    "largest gap": ("gap", False),
    "smallest gap": ("gap", True),
    "widest interval": ("ci_width", False),
    "narrowest interval": ("ci_width", True),
    "class index": ("class_index", True),
}


def held_out_split(splits: list[str]) -> str:
    for s in ("test", "val"):
        if s in splits:
            return s
    return splits[0]


def gap_view(per_class: pd.DataFrame, class_names, *, view: str, n: int, search: str) -> pd.DataFrame:
    """The ranked classes of ``per_class`` matching ``search`` (index or name), sorted by ``view``,
    first ``n``; adds ``name`` and ``ci_width``."""
    df = per_class[per_class.ranked.astype(bool)].copy()
    df["name"] = [str(class_names[int(c)]) if int(c) < len(class_names) else str(c) for c in df.class_index]
    df["ci_width"] = df["ci_high"] - df["ci_low"]
    df = sort_classes(df, order="index", search=search)
    col, asc = VIEWS[view]
    return df.sort_values([col, "class_index"], ascending=[asc, True], na_position="last", kind="stable").head(int(n))


def _open_in_rankings(c: int, split: str, concept: str | None = None) -> None:
    """Open class ``c`` in Rankings on the same split and ranking."""
    st.session_state["rank_split"] = split           # Rankings' split selector (not drawn on this page)
    st.session_state[RANK_RANKING_KEY] = concept     # Rankings' Ranking selector (None = by features)
    open_class(c, RANKINGS_PAGE)


def _on_bar_select(split: str, concept: str | None = None) -> None:
    """Selection callback (runs before the next script run): a clicked bar's class becomes current and
    the next run goes straight to Rankings, without recomputing this page first."""
    event = st.session_state.get("gaps_chart")
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    for p in points:
        cd = p.get("customdata")
        if cd is not None:
            st.session_state["rank_split"] = split
            st.session_state[RANK_RANKING_KEY] = concept
            set_class(int(cd[0]))
            st.session_state[GO_RANKINGS_KEY] = True
            return


def class_section(ws, dataset: str, model: str, class_names, per_class: pd.DataFrame, unranked: pd.DataFrame,
                  split: str, concept: str | None) -> None:
    """The class navigator (the shared current class) and that class's gap, interval, slice size and
    accuracies on this page's split and ranking, with a button that opens it in Rankings."""
    st.subheader("Class")
    # the navigator orders and labels classes by this page's gaps (its split and ranking), not the saved audit's
    c = class_navigator(ws, dataset, model, class_names, len(per_class), split=split, key=NAV_KEY, gaps=per_class,
                        gaps_from=f"as on this page ({split}" + (f", by concept: {concept})" if concept else ")"))
    row = per_class[per_class.class_index == c]
    if not len(row) or not bool(row.ranked.iloc[0]):
        why = unranked.loc[unranked.class_index == c, "why"]
        st.info(f"Class **{md_escape(class_label(class_names, c))}** is not ranked on {md_escape(split)}"
                + (f": {why.iloc[0]}." if len(why) else "."), icon=":material/info:")
    else:
        r = row.iloc[0]
        m1, m2, m3 = st.columns(3)          # three per row, as the pooled metrics: an interval needs the width
        m4, m5, _ = st.columns(3)
        m1.metric("Gap", f"{r.gap * 100:+.1f} pts", help="acc(high) − acc(low) of this class")
        m2.metric("Interval", f"[{r.ci_low * 100:+.1f}, {r.ci_high * 100:+.1f}]" if pd.notna(r.ci_low) else "—",
                  help="bootstrap interval of the gap")
        m3.metric("Images (k per slice)", f"{int(r.n):,} ({int(r.k)})",
                  help="images of the class in the split; k highest and k lowest are compared")
        m4.metric("Accuracy high", f"{r.acc_high:.1%}", help="on the k highest-spuriosity images")
        m5.metric("Accuracy low", f"{r.acc_low:.1%}", help="on the k lowest-spuriosity images")
    if st.button("Open in Rankings", key="gaps_open", icon=":material/sort:"):
        _open_in_rankings(int(c), split, concept)


def render() -> None:
    if st.session_state.pop(GO_RANKINGS_KEY, False):
        st.switch_page(RANKINGS_PAGE)
    page = features_page("Spurious gaps")
    ws, dataset, model, splits = page.ws, page.dataset, page.model, page.splits
    class_names = page.class_names
    c1, c2, c3 = st.columns([1, 1.4, 1])
    split = c1.selectbox("Split (held-out images)", splits, index=splits.index(held_out_split(splits)),
                         key="gaps_split")
    concept = ranking_choice(ws, dataset, split, key=RANKING_KEY, container=c2)
    n_boot = c3.selectbox("Bootstrap resamples", [200, 1000, 5000], index=1, key="gaps_boot")
    cname = concept.name if concept is not None else None
    verdicts = resources.verdicts(ws, dataset, model)
    if concept is None and (not len(verdicts) or not (verdicts.verdict == "spurious").any()):
        st.info("No feature of this model is labelled spurious yet, so there is no ranking to measure gaps "
                "on. Label features on the **Features** page.", icon=":material/info:")
        return
    if concept is None:
        saved_ranking_note(ws, dataset, model, split)
    with st.spinner("Computing spurious gaps…"):
        if concept is None:
            result = resources.gaps(ws, dataset, model, split, n_boot=int(n_boot))
            ranking = resources.spuriosity(ws, dataset, model, split)
        else:
            result = resources.concept_gaps(ws, dataset, cname, split, evaluated=model, n_boot=int(n_boot))
            ranking = resources.concept_ranking(ws, dataset, cname, split, labels_from=model)
            st.caption(f"Images ranked {md_escape(concept.label)} (CLIP concept spuriosity, made on the "
                       "Automation page), not by the model's labelled features.")
    per_class = result.per_class
    pooled = result.pooled
    K = len(per_class)
    m1, m2, m3 = st.columns(3)
    m1.metric("Pooled gap", f"{pooled['gap'] * 100:+.1f} pts" if pd.notna(pooled.get("gap")) else "—",
              help="accuracy on all classes' high-spuriosity slices − on their low slices")
    m2.metric("Interval", f"[{pooled['ci_low'] * 100:+.1f}, {pooled['ci_high'] * 100:+.1f}]"
              if pd.notna(pooled.get("ci_low")) else "—")
    m3.metric("Ranked classes", f"{int(pooled.get('n_classes', per_class.ranked.sum())):,} / {K:,}")

    unranked = unranked_table(per_class, ranking.classes_without_spurious, class_names)
    if len(unranked) and concept is not None:       # a concept ranking has concepts, not features
        unranked["why"] = unranked["why"].replace(REASONS[NO_SPURIOUS], NO_CONCEPT_SCORE)
    if len(unranked):
        summary = unranked_summary(unranked, K)
        st.caption(summary if concept is None else summary.replace(REASONS[NO_SPURIOUS], NO_CONCEPT_SCORE))
        with st.expander(f"Unranked classes ({len(unranked):,})"):
            st.dataframe(unranked[["class_index", "class", "n", "why"]].rename(
                columns={"n": "images in split", "why": "not ranked because"}), hide_index=True,
                height=min(400, 38 + 35 * len(unranked)))

    v1, v2, v3 = st.columns([1, 1, 2])
    view_name = v1.selectbox("Show", list(VIEWS), key="gaps_view",
                             help="Sort the ranked classes and show the first N of that order.")
    ranked_n = int(per_class.ranked.astype(bool).sum())
    n = v2.number_input("Classes shown", min_value=1, max_value=max(1, ranked_n), value=min(30, max(1, ranked_n)),
                        step=10, key="gaps_n")
    search = v3.text_input("Search classes", key="gaps_search", placeholder="name or index")
    view = gap_view(per_class, class_names, view=view_name, n=int(n), search=search)
    if not len(view):
        st.info("No ranked class matches the search.", icon=":material/search_off:")
    else:
        title = f"{view_name.capitalize()}: {len(view):,} of {ranked_n:,} ranked classes — {model} on {split}"
        if concept is not None:
            title += f" · {concept.label}"
        plotly_chart(gap_view_figure(view, title=title), key="gaps_chart",
                        on_select=lambda: _on_bar_select(split, cname), selection_mode=("points", "box"))
        st.caption("gap = acc(k highest-spuriosity images) − acc(k lowest), disjoint slices; error bars: "
                   "bootstrap interval. A positive gap means the model leans on the spurious cue. "
                   "Click a bar to open that class in **Rankings**.")

    class_section(ws, dataset, model, class_names, per_class, unranked, split, cname)

    negative = per_class[per_class.get("negative", False) == True]  # noqa: E712
    if len(negative):
        st.warning(f"{len(negative):,} class(es) have a negative gap: high-spuriosity images are classified "
                   "*better*; these are often multi-object or mislabelled images — inspect them on the "
                   "**Rankings** page (sort the view by smallest gap to list them).", icon=":material/flag:")
    show = view.drop(columns=["name", "ci_width", "reason"], errors="ignore").copy() if len(view) else view
    if len(show):
        show.insert(1, "class", view["name"].tolist())
        number = st.column_config.NumberColumn(format="%.3f")
        st.dataframe(show, hide_index=True,
                     column_config={c: number for c in ("acc_high", "acc_low", "gap", "ci_low", "ci_high")})

    others = [m.name for m in ws.list_models() if m.name != model
              and split in resources.feature_splits(ws, dataset, m.name)]
    if others:
        st.subheader("Other models on the same ranking")
        chosen = st.multiselect("Models", others, default=others[:5], key="gaps_models")
        shown = view.class_index.astype(int).tolist()[:20] if len(view) else []
        rows = []
        with st.spinner("Computing the other models' gaps…"):
            for name in [model, *chosen]:
                res = resources.gaps(ws, dataset, model, split, evaluated=name, n_boot=int(n_boot)) \
                    if concept is None else resources.concept_gaps(ws, dataset, cname, split, evaluated=name,
                                                                  n_boot=int(n_boot))
                p = res.pooled
                row = {"model": name, "pooled gap": p["gap"], "ci_low": p.get("ci_low"),
                       "ci_high": p.get("ci_high"), "acc high": p.get("acc_high"), "acc low": p.get("acc_low")}
                by_class = res.per_class.set_index("class_index").gap
                row.update({f"gap {class_label(class_names, c)}": by_class.get(c) for c in shown})
                rows.append(row)
        if shown:
            st.caption(f"Per-class columns: the first {len(shown)} classes of the view above.")
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
    st.caption(f"Ranked by {md_escape(s.ranking_model)} on split {md_escape(summ['config']['split'])}.")
    c1, c2 = st.columns(2)
    if s.scatter is not None:
        with c1:
            plotly_chart(s.scatter, key="study_scatter")
    if s.heatmap is not None:
        with c2:
            plotly_chart(s.heatmap, key="study_heatmap")
    st.caption("Left: one point per model; below the dashed y = x line a model is more accurate on "
               "high-spuriosity images (a positive gap); effective robustness = distance above the fitted line. "
               "Right: correlation of per-class gaps between models.")
    cols = [c for c in ("model", "source", "accuracy", "acc_high", "acc_low", "gap", "ci_low", "ci_high",
                        "effective_robustness", "mean_corr") if c in s.models.columns]
    st.dataframe(s.models[cols], hide_index=True,
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in cols
                                if c not in ("model", "source")})


run_page(render_studies)
