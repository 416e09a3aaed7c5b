"""Home: workspace summary (datasets, models, feature sets, labels, runs, jobs) and what to do next."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.runs import reconcile_runs
from dashboard.components.guard import run_page
from dashboard.components.state import context, demo_command

#: run methods that record audit results rather than runs to compare on Mitigate
AUDIT_RECORD_METHODS = ("audit-gaps",)


def next_steps(ws, summary: dict, dataset: str | None, model: str | None) -> list[str]:
    """Plain-language next steps from the workspace counts."""
    root = str(ws.root)
    if summary["datasets"] == 0:
        return [f"Build the demo workspace: `{demo_command(root)}`"]
    steps = []
    if summary["models"] == 0:
        steps.append(f"Train a model: `python -m core model train {dataset}-cnn --workspace {root} "
                     f"--dataset {dataset} --arch small_cnn`")
    elif summary["feature_sets"] == 0:
        steps.append(f"Extract features: `python -m core extract --workspace {root} --dataset {dataset} "
                     f"--model {model}`")
    elif summary["labels"] == 0:
        steps.append("Label features as core or spurious on the **Features** page (or import labels), then "
                     f"run the audit: `python -m core audit --workspace {root} --dataset {dataset} "
                     f"--model {model}`")
    else:
        steps.append("Browse images by spuriosity on **Rankings** and check the **Gaps** page.")
        if summary["runs"] == 0:
            steps.append("Launch a one-click debias-and-compare run on the **Mitigate** page.")
        else:
            steps.append("Compare runs on **Mitigate** and export the **Report**.")
    return steps


def render() -> None:
    st.title("SpurAudit")
    st.caption("Find, measure and remove spurious correlations in image classifiers.")
    ctx = context()
    ws = ctx.ws
    reconcile_runs(ws)   # runs whose process died show as failed, not "running" forever
    summary = ws.summary()
    all_runs = ws.list_runs()
    runs = [r for r in all_runs if r.method not in AUDIT_RECORD_METHODS]
    summary["runs"] = len(runs)          # the audit's gap records are results of the audit, not runs to compare
    st.markdown(f"Workspace: `{ws.root}`" + (" (read-only)" if summary.get("read_only") else ""))
    last = ws.last_backup()
    st.caption(f"Last backup: {last['created'][:19].replace('T', ' ')} UTC to `{last['dest']}`" if last else
               f"No backup yet: `python -m core workspace backup DEST --workspace {ws.root}`")
    cols = st.columns(6)
    for col, (label, key) in zip(cols, [("Datasets", "datasets"), ("Models", "models"),
                                         ("Feature sets", "feature_sets"), ("Labels", "labels"),
                                         ("Runs", "runs"), ("Active jobs", "jobs_active")]):
        col.metric(label, summary[key])

    if summary["datasets"] == 0:
        st.page_link("app_pages/new_audit.py", label="Start a new audit: your dataset and model, from the browser",
                     icon=":material/add_circle:")
        st.info("This workspace is empty. Run the demo (builds a small Colored-MNIST dataset, trains a small "
                "CNN, extracts features, audits it and runs a mitigation) or build a dataset:",
                icon=":material/info:")
        st.code(f"{demo_command(ws.root)}\n# or build a dataset first\n"
                f"python -m core dataset build colored-mnist --workspace {ws.root} --name cmnist",
                language="bash")
        return

    st.subheader("What to do next")
    for step in next_steps(ws, summary, ctx.dataset, ctx.model):
        st.markdown(f"- {step}")

    st.subheader("Datasets")
    st.dataframe(pd.DataFrame([{"name": d.name, "source": d.source, "classes": d.num_classes,
                                "bias columns": ", ".join(d.bias_columns), "created": d.created[:19]}
                               for d in ws.list_datasets()]), hide_index=True)
    models = ws.list_models()
    if models:
        st.subheader("Models")
        st.dataframe(pd.DataFrame([{"name": m.name, "dataset": m.dataset, "arch": m.arch,
                                    **{k: v for k, v in (m.metrics or {}).items()
                                       if isinstance(v, (int, float)) and not isinstance(v, bool)}}
                                   for m in models]), hide_index=True)
    fsets = ws.list_feature_sets()
    if fsets:
        st.subheader("Feature sets")
        st.dataframe(pd.DataFrame([{"dataset": f.dataset, "model": f.model, "split": f.split, "n": f.n,
                                    "dim": f.dim, "classes": f.num_classes} for f in fsets]), hide_index=True)
    if runs or all_runs:
        st.subheader("Runs")
    if len(all_runs) > len(runs):
        st.caption(f"{len(all_runs) - len(runs)} audit gap record(s) (method audit-gaps) are results of the audit, "
                   "shown on **Gaps**, and are not counted as runs.")
    if runs:
        st.dataframe(pd.DataFrame([{"id": r.id, "method": r.method, "dataset": r.dataset, "model": r.model,
                                    "status": r.status, "updated": r.updated[:19]} for r in runs]),
                     hide_index=True)
    jobs = ws.list_jobs(limit=20)
    if jobs:
        st.subheader("Recent jobs")
        st.dataframe(pd.DataFrame([{"id": j.id, "kind": j.kind, "status": j.status,
                                    "progress": f"{j.progress:.0%}", "message": j.message,
                                    "device": j.device} for j in jobs]), hide_index=True)


run_page(render)
