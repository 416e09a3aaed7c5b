"""Embeddings: a 2-D projection (PCA; UMAP when umap-learn is installed) of a split's penultimate
features, coloured by class, bias, spuriosity, correctness or aligned/conflicting; a box or lasso
selection shows those images. Above the chosen size the points are a class-stratified sample (the page
says so). Before / after a mitigation run: the same images in the audited model's and the run's
representation (computed by the ``embedding`` job, read here)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.features.projection import available_methods
from core.mitigate.embeddings import runs_with_models
from dashboard import resources
from dashboard.components.charts import embedding_figure, plotly_chart
from dashboard.components.guard import run_page
from dashboard.components.image_grid import GridItem, image_grid
from dashboard.components.job_monitor import job_monitor, launch, recent_jobs
from dashboard.components.state import features_page, md_escape

COLOURS = ["class", "bias", "spuriosity", "correct", "aligned"]
EMBED_KIND = "embedding"
N_SELECTED_SHOWN = 48


def point_table(fs, rows: np.ndarray, xy: np.ndarray, preds: np.ndarray, spuriosity: np.ndarray | None,
                class_names) -> pd.DataFrame:
    """One row per shown point with every colouring column."""
    df = fs.manifest.df
    lab = np.asarray(fs.labels)[rows]
    t = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "row": rows, "class_index": lab})
    t["class"] = [f"{int(c)}: {class_names[int(c)]}" if int(c) < len(class_names) else str(int(c)) for c in lab]
    t["bias"] = df["bias"].to_numpy()[rows] if "bias" in df else np.nan
    t["aligned"] = (pd.Series(df["aligned"].to_numpy()[rows]).map({True: "aligned", False: "conflicting"})
                    .fillna("unknown").to_numpy() if "aligned" in df else "unknown")
    t["correct"] = np.where(preds[rows] == lab, "correct", "wrong")
    t["spuriosity"] = spuriosity[rows] if spuriosity is not None else np.nan
    t["label"] = [f"{c} · {ok}" + (f" · spuriosity {s:+.2f}" if pd.notna(s) else "")
                  for c, ok, s in zip(t["class"], t["correct"], t["spuriosity"])]
    return t


def _colour_column(t: pd.DataFrame, colour: str) -> tuple[str, bool]:
    """(column to colour by, categorical?): many classes are coloured by index on a scale."""
    cat = _categorical(t, colour)
    return ("class_index" if colour == "class" and not cat else colour), cat


def _categorical(t: pd.DataFrame, colour: str) -> bool:
    if colour in ("correct", "aligned"):
        return True
    if colour == "class":
        return t["class_index"].nunique() <= 20
    if colour == "bias":
        return t["bias"].nunique(dropna=True) <= 20
    return False


def _selected_rows(key: str) -> list[int]:
    event = st.session_state.get(key)
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    out = []
    for p in points:
        cd = p.get("customdata")
        if cd is not None:
            out.append(int(cd[0]) if isinstance(cd, (list, tuple)) else int(cd))
    return list(dict.fromkeys(out))


def show_selection(ws, dataset: str, model: str, split: str, fs, rows: list[int], *, key: str) -> None:
    if not rows:
        st.caption("Draw a box or lasso around points (or click one) to see those images.")
        return
    st.markdown(f"**{len(rows):,} selected image(s)**" + (f" — the first {N_SELECTED_SHOWN} shown"
                                                           if len(rows) > N_SELECTED_SHOWN else ""))
    preds = resources.predictions(ws, dataset, model, split) if fs.n <= 200_000 else None  # cached argmax
    items = []
    for r in rows[:N_SELECTED_SHOWN]:
        ok = "" if preds is None else (" ✓" if preds[r] == fs.labels[r] else " ✗")
        items.append(GridItem(path=fs.manifest.image_path(r), caption=f"row {r} · class {int(fs.labels[r])}{ok}"))
    image_grid(items, key=key, per_page=N_SELECTED_SHOWN, columns=12, size=64, paginate=False)


@st.fragment
def chart_and_selection(fig, ws, dataset: str, model: str, split: str, fs) -> None:
    """The main scatter and the images of its selection, as a fragment: a box / lasso selection reruns
    only this part (not the selectors, the projection look-ups and the before/after section)."""
    def body() -> None:
        plotly_chart(fig, escaped=True, key="emb_chart", on_select="rerun",
                     selection_mode=("box", "lasso", "points"))
        show_selection(ws, dataset, model, split, fs, _selected_rows("emb_chart"), key="emb_selected")

    run_page(body)        # a fragment rerun runs outside the page's guard: the same error policy here


def render() -> None:
    page = features_page("Embeddings")
    ws, dataset, model, splits = page.ws, page.dataset, page.model, page.splits
    class_names = page.class_names
    methods = available_methods()
    c1, c2, c3, c4 = st.columns([1, 1, 1, 1])
    split = c1.selectbox("Split", splits, index=splits.index("test") if "test" in splits else 0, key="emb_split")
    colour = c2.selectbox("Colour by", COLOURS, key="emb_colour")
    method = c3.selectbox("Projection", methods, key="emb_method", format_func=str.upper,
                          help="PCA always; UMAP when the optional package umap-learn is installed.")
    max_points = c4.number_input("Points shown at most", min_value=200, max_value=50_000, value=3000, step=500,
                                 key="emb_max", help="Above this, a class-stratified random sample is shown.")
    fs = resources.feature_set(ws, dataset, model, split)
    with st.spinner(f"Projecting {min(fs.n, int(max_points)):,} points ({method.upper()})…"):
        proj = resources.projection(ws, dataset, model, split, method=method, max_points=int(max_points))
        preds = resources.predictions(ws, dataset, model, split)
        spur = None
        if colour == "spuriosity":
            verdicts = resources.verdicts(ws, dataset, model)
            if len(verdicts) and (verdicts.verdict == "spurious").any():
                spur = resources.spuriosity(ws, dataset, model, split).scores
    if colour == "spuriosity" and spur is None:
        st.info("No feature is labelled spurious yet, so there is no spuriosity to colour by.",
                icon=":material/info:")
    t = point_table(fs, proj.rows, proj.xy, preds, spur, class_names)
    note = (f"Showing a class-stratified sample of {len(proj.rows):,} of {proj.n_total:,} images (raise *Points "
            "shown at most* to see more)." if proj.subsampled else f"All {proj.n_total:,} images of the split.")
    if proj.explained:
        note += f" PCA axes explain {proj.explained[0]:.0%} and {proj.explained[1]:.0%} of the variance."
    st.caption(note)
    title = f"{model} · {split} · {method.upper()} · coloured by {colour}"
    col, cat = _colour_column(t, colour)
    # a selection reruns the page: the figure (built and escaped once per view) is reused
    fig = resources.safe_chart(ws, dataset, model, split, ("embedding", method, int(max_points), colour),
                               lambda: embedding_figure(t, colour=col, categorical=cat, title=title))
    chart_and_selection(fig, ws, dataset, model, split, fs)

    st.subheader("Before / after a mitigation run")
    runs = runs_with_models(ws, dataset, model)
    if not runs:
        st.caption("No finished single-method mitigation run of this model yet (start one on **Mitigate**).")
        return
    r1, r2, r3 = st.columns([2, 1, 1])
    run = r1.selectbox("Run", runs, format_func=lambda r: f"#{r.id} {r.method}", key="emb_run")
    device = r2.selectbox("Device", resources.device_choices(), key="emb_device")
    saved = resources.run_embedding(ws, run.id, split)
    if r3.button("Compute (job)" if saved is None else "Compute again (job)", key="emb_compute",
                 icon=":material/play_arrow:"):
        job_id = launch(ws, EMBED_KIND, {"run_id": int(run.id), "split": split, "max_points": int(max_points),
                                         "method": method}, device=device)
        st.toast(f"Embedding job {job_id} started")
    job_monitor(ws, recent_jobs(ws, EMBED_KIND, limit=2, where=lambda p: p.get("run_id") == run.id),
                key="emb_jobs")
    if saved is None:
        st.caption(f"Run #{run.id}'s representation of {md_escape(split)} is not computed yet: start the job.")
        return
    rows = np.asarray(saved["rows"], dtype=np.int64)
    st.caption(f"{len(rows):,} of {saved['n_total']:,} images of {md_escape(saved['split'])}, "
               f"{saved['projection'].upper()} of each representation separately.")
    b, a = st.columns(2)
    for col, side in ((b, "before"), (a, "after")):
        xy = np.asarray(saved[side], dtype=np.float32)
        tt = point_table(fs, rows, xy, preds, spur, class_names)
        with col:
            col, cat = _colour_column(tt, colour)
            plotly_chart(embedding_figure(tt, colour=col, categorical=cat, height=420,
                                             title=f"{side}: " + (model if side == "before" else
                                                                  f"run #{run.id} {run.method}")),
                            key=f"emb_{side}", on_select="rerun", selection_mode=("box", "lasso", "points"))
    show_selection(ws, dataset, model, split, fs, _selected_rows("emb_before") or _selected_rows("emb_after"),
                   key="emb_ba_selected")


run_page(render)
