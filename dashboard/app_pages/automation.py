"""Automation: so that a person does not have to label every feature (seed 002 §1.3).

- **CLIP concept spuriosity** (job ``clip-rank``): spurious and core concept texts per class. The
  defaults hold for every class (spurious: pre-filled from the default vocabulary in
  ``assets/concepts/``; core: each class's own name unless a shared list is typed); a class gets its
  own lists through an override table that shows only the overridden classes (added one at a time
  from a searchable class picker, so 1,000 classes stay one short table), the prompt-template ensemble,
  the CLIP model and its pretrained tag or weights file. The result is a named concept ranking
  (`core.concepts.artifacts`) that the Rankings and Gaps pages list as "by concept: …".
- **CLIP label suggestions** (job ``clip-labels``) and **SAM-IoU labels** (job ``sam-labels``) for the
  discovered features; they appear beside each feature on the Features page with their score and never
  override a person's answer.

Missing weights or a missing optional package are messages naming the file or the ``pip install``
(`dashboard.components.forms`).
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.audit.artifacts import has_discovery
from core.concepts.artifacts import list_concept_rankings
from core.concepts.jobs import ClipLabelsJob, ClipRankJob, SamLabelsJob
from core.concepts.vocabulary import (PER_CLASS_COLUMNS, check_per_class, check_templates, core_concepts,
                                      default_spurious_concepts, default_templates, parse_concepts,
                                      per_class_from_rows)
from core.errors import SpurAuditError
from dashboard import resources
from dashboard.components import forms
from dashboard.components.guard import run_page
from dashboard.components.job_monitor import job_monitor, launch, recent_jobs
from dashboard.components.state import context, md_escape

CLIP_TAGS = ("openai", "laion2b_s34b_b79k", "laion400m_e32")
KINDS = ("clip-rank", "clip-labels", "sam-labels")


def _clip_fields(prefix: str) -> tuple[str, str | None, bool]:
    """CLIP model name, weights (tag or file, validated later), random-init flag."""
    c1, c2 = st.columns(2)
    name = c1.text_input("CLIP model (open_clip name)", "ViT-B-32", key=f"{prefix}_clip_model")
    weights = c2.text_input("Pretrained tag or weights file", "", key=f"{prefix}_clip_weights",
                            placeholder="/models/clip-vit-b-32.pt  or  openai (when cached)",
                            help="nothing is downloaded: a tag works only when its weights are in the "
                                 "open_clip cache")
    random_init = st.checkbox("Random-init weights (tests the plumbing; the scores mean nothing)",
                              key=f"{prefix}_clip_random")
    return name.strip(), weights, random_init


def _weights(weights: str | None, random_init: bool) -> str | None:
    forms.check_package("open_clip", what="CLIP")
    if random_init:
        return None
    value = forms.check_weights(weights or "", what="CLIP weights", tags=CLIP_TAGS)
    if value is None:
        raise SpurAuditError("CLIP weights: type a weights file (or a cached tag such as openai), or tick "
                                   "random-init to test the plumbing")
    return value


def _override_rows_key(dataset: str) -> str:
    """Session key of the per-class override rows of ``dataset`` (one list per dataset: switching
    datasets never carries one dataset's classes to another)."""
    return f"au_overrides::{dataset}"


def _per_class_overrides(dataset: str, class_names: list[str], spurious: str) -> list[dict]:
    """The override table (only the overridden classes) and the picker adding one; returns its rows
    as edited (cells comma-separated; `core.concepts.vocabulary.per_class_from_rows` reads them)."""
    key = _override_rows_key(dataset)
    rows = st.session_state.setdefault(key, [])
    version = st.session_state.setdefault(f"{key}::version", 0)
    st.markdown("**Per-class overrides** (a class not listed uses the lists above)")
    edited = rows
    if rows:
        # a new version after each added row: the editor restarts from the saved rows with the new one
        table = st.data_editor(
            pd.DataFrame(rows, columns=list(PER_CLASS_COLUMNS)), key=f"au_override_editor::{dataset}::{version}",
            num_rows="dynamic", hide_index=True, width="stretch",
            column_config={"class": st.column_config.TextColumn("class", help="a class name of this dataset"),
                           "spurious": st.column_config.TextColumn("spurious concepts", help="comma-separated"),
                           "core": st.column_config.TextColumn("core concepts", help="comma-separated")})
        edited = table.to_dict("records")
    known = {str(r.get("class")) for r in edited}
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    pick = c1.selectbox("Add an override for class", [n for n in class_names if n not in known], index=None,
                        placeholder=f"type to search {len(class_names)} classes", key=f"au_override_class::{dataset}")
    if c2.button("Add override", key="au_override_add", disabled=pick is None, icon=":material/add:"):
        st.session_state[key] = [*edited, {"class": pick, "spurious": ", ".join(parse_concepts(spurious)),
                                           "core": core_concepts([pick])[0]}]
        st.session_state[f"{key}::version"] = version + 1
        st.rerun()
    return edited


def _concept_ranking(ws, dataset: str, model: str | None, class_names: list[str], splits: list[str],
                     device: str) -> None:
    st.subheader("CLIP concept spuriosity")
    st.caption("Scores every image of a split with CLIP: mean similarity to its class's spurious concepts minus "
               "mean similarity to its class's core concepts, z-scored within the class. The ranking appears on "
               "Rankings and Gaps as 'by concept: …'.")
    c1, c2 = st.columns(2)
    spurious = c1.text_area("Spurious concepts, every class (one per line)",
                            "\n".join(default_spurious_concepts()[:8]), key="au_spurious", height=170)
    example = ", ".join(core_concepts(class_names[:2]))
    core = c2.text_area("Core concepts, every class (one per line; blank = each class's own name)", "",
                        key="au_core", height=170, placeholder=f"blank: each class's own name ({example}, …)")
    overrides = _per_class_overrides(dataset, class_names, spurious)
    templates = st.text_area("Prompt templates (ensemble; one per line, {} = the concept)",
                             "\n".join(default_templates()), key="au_templates", height=100)
    name, weights, random_init = _clip_fields("au_rank")
    c1, c2 = st.columns(2)
    split = c1.selectbox("Split", splits, index=splits.index("val") if "val" in splits else 0, key="au_rank_split")
    rname = c2.text_input("Ranking name (blank = from the concepts)", key="au_rank_name")
    if st.button("Rank by concept as a job", type="primary", key="au_rank_go", icon=":material/sort:"):
        def build() -> dict:
            # unknown class, empty cell: a message now, not a failed job
            resolved = check_per_class(per_class_from_rows(overrides), class_names)
            per_class = {class_names[c]: texts for c, texts in sorted(resolved.items())}
            job = forms.checked(ClipRankJob, {
                "dataset": dataset, "split": split, "concepts": parse_concepts(spurious),
                "core_concepts": parse_concepts(core) or None, "per_class": per_class or None,
                "templates": check_templates(templates.splitlines()),
                "clip_model": name, "clip_weights": _weights(weights, random_init),
                "name": rname.strip() or None}, what="CLIP concept ranking")
            return {k: getattr(job, k) for k in ("dataset", "split", "concepts", "core_concepts", "per_class",
                                                 "templates", "clip_model", "clip_weights", "name")}
        params = forms.attempt(build)
        if params is not None:
            launch(ws, "clip-rank", params, device=device)
            st.rerun()
    job_monitor(ws, recent_jobs(ws, "clip-rank", dataset=dataset, limit=1), key="au_rank_jobs")
    saved = list_concept_rankings(ws, dataset)
    if saved:
        st.caption("Saved concept rankings" + (f"; pooled gap = the spurious gap of model {model} on that "
                                               "ranking (the same gap code as feature rankings)" if model else ""))
        st.dataframe(pd.DataFrame([{"name": r.name, "shown as": r.label, "splits": ", ".join(r.splits),
                                    "CLIP": f"{r.clip.get('model', '')} / {r.clip.get('pretrained') or 'random init'}",
                                    **{f"AUROC {s}": v for s, v in r.auroc.items()},
                                    **_concept_gaps(ws, dataset, model, r)} for r in saved]),
                     hide_index=True)


def _concept_gaps(ws, dataset: str, model: str | None, ranking) -> dict:
    """{"pooled gap <split>": gap} of ``model`` on each split of a concept ranking it has features of."""
    out: dict = {}
    if model is None:
        return out
    have = {fs.split for fs in ws.list_feature_sets(dataset, model)}
    for split in ranking.splits:
        if split not in have:
            continue
        res = resources.concept_gaps(ws, dataset, ranking.name, split, evaluated=model, n_boot=0)
        out[f"pooled gap {split}"] = res.pooled.get("gap")
    return out


def _suggestions(ws, dataset: str, model: str | None, device: str) -> None:
    st.subheader("Label suggestions for the discovered features")
    if model is None or not has_discovery(ws, dataset, model):
        st.caption("Needs a model with discovered features: run the audit (New audit page) first.")
        return
    st.caption("Written as machine labels (sources clip and sam_iou); the Features page shows them beside each "
               "feature with their score. A person's answer always wins.")
    tab_clip, tab_sam = st.tabs(["CLIP", "SAM-IoU"])
    with tab_clip:
        concepts = st.text_area("Spurious concepts (one per line)", "\n".join(default_spurious_concepts()),
                                key="au_lab_concepts", height=150)
        name, weights, random_init = _clip_fields("au_lab")
        top_n = st.number_input("Top-activating images per feature", value=5, step=1, key="au_lab_topn")
        if st.button("Suggest labels with CLIP", key="au_lab_go", icon=":material/smart_toy:"):
            def build() -> dict:
                job = forms.checked(ClipLabelsJob, {"dataset": dataset, "model": model,
                                                    "concepts": parse_concepts(concepts), "clip_model": name,
                                                    "clip_weights": _weights(weights, random_init), "top_n": top_n},
                                    what="CLIP labels")
                return {k: getattr(job, k) for k in ("dataset", "model", "concepts", "clip_model", "clip_weights",
                                                     "top_n")}
            params = forms.attempt(build)
            if params is not None:
                launch(ws, "clip-labels", params, device=device)
                st.rerun()
    with tab_sam:
        c1, c2 = st.columns([1, 3])
        sam_type = c1.selectbox("SAM type", ["vit_b", "vit_l", "vit_h"], key="au_sam_type")
        ckpt = c2.text_input("SAM checkpoint file", key="au_sam_ckpt", placeholder="/models/sam_vit_b_01ec64.pth")
        random_sam = st.checkbox("Random-init SAM (tests the plumbing; the labels mean nothing)", key="au_sam_random")
        if st.button("Label with SAM-IoU", key="au_sam_go", icon=":material/select_all:"):
            def build() -> dict:
                forms.check_package("segment_anything", what="SAM-IoU labels")
                path = None if random_sam else str(forms.check_file(ckpt, what="SAM checkpoint",
                                                                    suffixes=forms.WEIGHT_SUFFIXES))
                job = forms.checked(SamLabelsJob, {"dataset": dataset, "model": model, "sam_type": sam_type,
                                                   "sam_checkpoint": path}, what="SAM-IoU labels")
                return {"dataset": job.dataset, "model": job.model, "sam_type": job.sam_type,
                        "sam_checkpoint": job.sam_checkpoint}
            params = forms.attempt(build)
            if params is not None:
                launch(ws, "sam-labels", params, device=device)
                st.rerun()
    job_monitor(ws, recent_jobs(ws, ("clip-labels", "sam-labels"), dataset=dataset, model=model, limit=2),
                key="au_lab_jobs")
    table = ws.labels(dataset, model)
    machine = table[table.source.isin(["clip", "sam_iou"])] if len(table) else table
    if len(machine):
        st.caption(f"{len(machine)} machine suggestion(s) so far")
        st.dataframe(machine[["class_index", "feature", "source", "answer", "score"]], hide_index=True)


def render() -> None:
    st.title("Automation")
    st.caption("Concept rankings and label suggestions from CLIP and SAM, as background jobs. Weights are read "
               "from files on this machine; nothing is downloaded.")
    ctx = context()
    ws, dataset = ctx.ws, ctx.require_dataset()
    man = resources.manifest(ws, dataset)
    device = st.selectbox("Device", resources.device_choices(), key="au_device")
    st.markdown(f"Dataset **{md_escape(dataset)}**" + (f", model **{md_escape(ctx.model)}**" if ctx.model else ""))
    _concept_ranking(ws, dataset, ctx.model, [str(n) for n in man.class_names], man.splits(), device)
    st.divider()
    _suggestions(ws, dataset, ctx.model, device)


run_page(render)
