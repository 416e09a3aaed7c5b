"""Report: generate the self-contained HTML audit report (`core.report.write_report`) and download it."""
from __future__ import annotations

import streamlit as st

from dashboard import resources
from dashboard.components.guard import NeedsSetup, run_page
from dashboard.components.job_monitor import job_monitor, launch, recent_jobs
from dashboard.components.state import context

STEP_KIND = "audit-step"   # core.audit job kind; step "report" runs core.report.write_report


def report_rel(dataset: str, model: str) -> str:
    return f"reports/{dataset}__{model}.html"


def render() -> None:
    from core.audit.pipeline import audit_dir

    st.title("Audit report")
    ctx = context()
    dataset, model, splits = ctx.require_features()
    ws = ctx.ws
    base = audit_dir(dataset, model)
    if not ws.path(f"{base}/discovery.json").exists():
        raise NeedsSetup(f"The report summarises a saved audit, and **{model}** on **{dataset}** has none "
                         "yet. "
                         "Run it (discovery, labels, rankings, gaps):",
                         f"python -m core audit --workspace {ws.root} --dataset {dataset} --model {model}")
    ranked = [s for s in splits if ws.path(f"{base}/rankings/{s}.json").exists() and s != "train"]
    if not ranked:
        raise NeedsSetup("No held-out split has a saved ranking yet; run the audit:",
                         f"python -m core audit --workspace {ws.root} --dataset {dataset} --model {model}")
    split = st.selectbox("Split for rankings and gaps", ranked, index=len(ranked) - 1, key="report_split")
    st.caption("The report holds the top features per class with thumbnails and activation maps, the label "
               "verdicts, rankings, per-class gaps with intervals, crops, sensitivity and mitigation runs — "
               "one "
               "HTML file with everything inlined. CSV/JSON exports are written next to it.")
    if STEP_KIND in resources.job_kinds():
        if st.button("Generate report", type="primary", icon=":material/description:", key="report_go"):
            launch(ws, STEP_KIND, {"step": "report", "dataset": dataset, "model": model, "split": split},
                   device="cpu")
            st.rerun()
        ids = recent_jobs(ws, STEP_KIND, dataset=dataset, model=model, limit=1,
                          where=lambda p: p.get("step") == "report")
        job_monitor(ws, ids, key="report_jobs")
    else:
        if st.button("Generate report", type="primary", icon=":material/description:", key="report_go"):
            from core.report import write_report

            bar = st.progress(0.0, text="collecting…")
            write_report(ws, dataset, model, split=split, device="cpu",
                         progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=m or "…"))
            bar.empty()
            st.success("Report written.")
    path = ws.path(report_rel(dataset, model))
    if path.exists():
        st.download_button("Download report (HTML)", data=path.read_bytes(), file_name=path.name,
                           mime="text/html", icon=":material/download:", key="report_download")
        st.caption(f"`{path}` · {path.stat().st_size / 1024:.0f} KiB")
    else:
        st.info("No report yet for this model — press **Generate report**.", icon=":material/info:")


run_page(render)
