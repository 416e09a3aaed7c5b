"""The *Import labels* form (on the Features page; New audit links to it): the formats of the CLI's
``label import`` — SpurAudit's labels CSV, or Salient ImageNet's MTurk answers CSV and/or its masks folder.

*Preview* parses the CSV and lists the masks folder (`core.audit.label_import.preview_label_import`: no
image decoded, nothing written) and shows the counts; *Import* is offered for what was previewed. Answers
alone are written here (one transaction); a masks folder is imported by the ``label-import`` job
(decoding and resizing up to 325 k masks is long work), followed by the job monitor below the form.
"""
from __future__ import annotations

from dataclasses import asdict

import streamlit as st

from core.audit.label_import import LabelImportConfig, preview_label_import, run_label_import
from core.audit.salient_masks import DEFAULT_SIDE
from dashboard.components import forms
from dashboard.components.job_monitor import job_monitor, launch

KIND = "label-import"
FORMAT_LABELS = {"csv": "SpurAudit labels CSV",
                 "salient-imagenet": "Salient ImageNet: MTurk answers CSV and/or masks folder"}
PREVIEW_KEY = "li_preview"
DONE_KEY = "li_done"
ANY_SPLIT = "any split"


def _config(ws, dataset: str, model: str) -> LabelImportConfig:
    """The form's values as the job's config; paths checked on this machine (`forms.check_file` / `check_folder`)."""
    fmt = st.session_state.get("li_format", "csv")
    file = str(st.session_state.get("li_file", "") or "").strip()
    masks = str(st.session_state.get("li_masks", "") or "").strip() if fmt == "salient-imagenet" else ""
    if file:
        file = str(forms.check_file(file, what="Answers CSV", suffixes=(".csv", ".txt")))
    if masks:
        masks = str(forms.check_folder(masks, what="Masks folder"))
    split = st.session_state.get("li_split", ANY_SPLIT)
    return forms.checked(LabelImportConfig, {
        "dataset": dataset, "model": model, "file": file or None, "format": fmt,
        "annotator": str(st.session_state.get("li_annotator", "") or "").strip(), "masks": masks or None,
        "mask_split": None if split == ANY_SPLIT else split,
        "mask_side": int(st.session_state.get("li_side", DEFAULT_SIDE))}, what="label import")


def _preview(ws, config: LabelImportConfig) -> None:
    with st.spinner("Reading the CSV and listing the masks folder…"):
        result = preview_label_import(ws, config)
    st.session_state[PREVIEW_KEY] = {"config": config, "result": result}


def _import(ws, config: LabelImportConfig) -> bool:
    if config.masks:
        params = {k: v for k, v in asdict(config).items() if k != "device"}     # launch fills the device
        job_id = launch(ws, KIND, params, device="cpu")
        st.session_state[DONE_KEY] = f"Label import job {job_id} started ({'answers and ' if config.file else ''}masks)."
    else:
        out = run_label_import(ws, config)
        st.session_state[DONE_KEY] = f"Imported {out['written']:,} answers."
    st.session_state.pop(PREVIEW_KEY, None)
    return True


def _import_jobs(ws, dataset: str, model: str, limit: int = 2) -> list[int]:
    """The newest label-import jobs of (dataset, model), read without `core.jobs.reconcile` (this form is on
    every Features run, which must stay quick; the job monitor reconciles while it polls an active job)."""
    return [j.id for j in ws.list_jobs(limit=50) if j.kind == KIND and j.params.get("dataset") == dataset
            and j.params.get("model") == model][:limit]


def import_labels_form(ws, dataset: str, model: str, *, expanded: bool = False) -> None:
    """The expander with the form, the preview, the import and the import jobs of (dataset, model)."""
    done = st.session_state.pop(DONE_KEY, None)
    jobs_ = _import_jobs(ws, dataset, model)
    with st.expander("Import labels (labels CSV, Salient ImageNet answers and masks)",
                     expanded=expanded or bool(done) or PREVIEW_KEY in st.session_state):
        if done:
            st.success(done, icon=":material/check_circle:")
        fmt = st.radio("Format", list(FORMAT_LABELS), format_func=FORMAT_LABELS.get, horizontal=True,
                       key="li_format")
        st.text_input("Answers CSV (a path on the machine running the dashboard)", key="li_file",
                      placeholder="discover_spurious_features.csv" if fmt == "salient-imagenet" else "labels.csv")
        if fmt == "salient-imagenet":
            c1, c2, c3 = st.columns([3, 1, 1])
            c1.text_input("Masks folder (optional): <wnid>/feature_<idx>/[cams/]<image>.png|jpg", key="li_masks",
                          placeholder="/data/salient_imagenet_dataset")
            c2.selectbox("Images of the masks", [ANY_SPLIT, "train", "val", "test"], key="li_split",
                         help="Needed when the same file names exist in two splits (Salient ImageNet's are train)")
            c3.number_input("Stored mask side (px)", min_value=8, max_value=512, value=DEFAULT_SIDE, key="li_side")
        else:
            st.text_input("Annotator for rows without one", key="li_annotator")
        if st.button("Preview", key="li_preview_btn", icon=":material/preview:"):
            st.session_state.pop(PREVIEW_KEY, None)
            config = forms.attempt(lambda: _config(ws, dataset, model))
            if config is not None:
                forms.attempt(lambda: _preview(ws, config))
        shown = st.session_state.get(PREVIEW_KEY)
        if shown is not None:
            result, config = shown["result"], shown["config"]
            st.caption("Preview — nothing written yet:")
            for line in result["lines"]:
                st.text(line)
            what = "answers and masks (as a job)" if config.masks and config.file else (
                "masks (as a job)" if config.masks else "answers")
            if not result["ok"]:
                st.warning("This import would be refused or would import nothing; fix the inputs and preview "
                           "again.", icon=":material/warning:")
            elif st.button(f"Import {what}", key="li_import_btn", type="primary", icon=":material/download:"):
                if forms.attempt(lambda: _import(ws, config)):
                    st.rerun()
        job_monitor(ws, jobs_, key="li_jobs")
        last = ws.get_job(jobs_[0]) if jobs_ else None
        if last is not None and last.status == "done" and (last.result or {}).get("lines"):
            st.caption(f"What job #{last.id} imported:")
            for line in last.result["lines"]:
                st.text(line)
