"""Report: generate the self-contained HTML audit report (`core.report.write_report`, as a background
job) and download it. What exists is asked of `core.audit.artifacts`."""
from __future__ import annotations

import streamlit as st

from core.audit.artifacts import has_discovery, load_report, ranked_splits, report_path
from dashboard.components.guard import NeedsSetup, run_page
from dashboard.components.job_monitor import job_monitor, launch, recent_jobs
from dashboard.components.state import features_page, md_escape

STEP_KIND = "audit-step"   # core.audit job kind; step "report" runs core.report.write_report


def render() -> None:
    page = features_page("Audit report")
    ws, dataset, model = page.ws, page.dataset, page.model
    audit_command = f"python -m core audit --workspace {ws.root} --dataset {dataset} --model {model}"
    if not has_discovery(ws, dataset, model):
        raise NeedsSetup(f"The report summarises a saved audit, and **{md_escape(model)}** on "
                         f"**{md_escape(dataset)}** has none yet. Run it (discovery, labels, rankings, gaps):",
                         audit_command)
    ranked = [s for s in ranked_splits(ws, dataset, model, page.splits) if s != "train"]
    if not ranked:
        raise NeedsSetup("No held-out split has a saved ranking yet; run the audit:", audit_command)
    split = st.selectbox("Split for rankings and gaps", ranked, index=len(ranked) - 1, key="report_split")
    st.caption("The report holds the top features per class with thumbnails and activation maps, the label "
               "verdicts, rankings, per-class gaps with intervals, crops, sensitivity and mitigation runs — "
               "one HTML file with everything inlined. CSV/JSON exports are written next to it.")
    if st.button("Generate report", type="primary", icon=":material/description:", key="report_go"):
        launch(ws, STEP_KIND, {"step": "report", "dataset": dataset, "model": model, "split": split}, device="cpu")
        st.rerun()
    ids = recent_jobs(ws, STEP_KIND, dataset=dataset, model=model, limit=1,
                      where=lambda p: p.get("step") == "report")
    job_monitor(ws, ids, key="report_jobs")
    html, path = load_report(ws, dataset, model), report_path(ws, dataset, model)
    if html is not None:
        st.download_button("Download report (HTML)", data=html, file_name=path.name,
                           mime="text/html", icon=":material/download:", key="report_download")
        st.caption(f"`{path}` · {len(html) / 1024:.0f} KiB")
    else:
        st.info("No report yet for this model — press **Generate report**.", icon=":material/info:")


run_page(render)
