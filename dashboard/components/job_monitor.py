"""Job monitor: progress bar + message + cancel button for background jobs (`core.jobs`).

The monitor is an ``st.fragment(run_every=...)``: while a job is queued/running only the fragment
reruns (every ``poll_s`` seconds), reading the job row from the workspace; when the job reaches a final
state the whole page reruns once so it can show the results, and polling stops. A job survives browser
refreshes (its id is in the database, not only in the session).
"""
from __future__ import annotations

from typing import Callable

import streamlit as st

from core import jobs
from dashboard.components.guard import run_page

STATUS_ICON = {"queued": ":material/schedule:", "running": ":material/autorenew:",
               "done": ":material/check_circle:", "failed": ":material/error:",
               "cancelled": ":material/cancel:"}


def _cancel(ws, job_id: int) -> None:
    jobs.cancel(ws, job_id)


def job_status_line(job) -> str:
    icon = STATUS_ICON.get(job.status, "")
    device = f" on {job.device}" if job.device else ""
    return f"{icon} Job #{job.id} · {job.kind}{device} · **{job.status}**"


def queue_line(job, position: int | None) -> str | None:
    """"Waiting: 2nd in the queue for cuda:0 (1 job ahead)" for a job waiting for a free slot, else None."""
    if job.status != "queued" or position is None:
        return None
    ahead = position - 1
    where = jobs.device_slot(job.device)
    return (f"Waiting for a free slot on {where}: position {position} in its queue "
            f"({ahead} job{'s' if ahead != 1 else ''} ahead). Cancel it to remove it; it will then never start.")


def render_job(ws, job, *, key: str, position: int | None = None) -> None:
    """Static view of one job (no polling): status, queue position while it waits, progress, message,
    cancel, error/log tail."""
    st.markdown(job_status_line(job))
    waiting = queue_line(job, position)
    if waiting:
        st.info(waiting, icon=":material/schedule:")
    if job.active:
        st.progress(min(max(float(job.progress), 0.0), 1.0), text=job.message or job.status)
        label = "Cancel queued job" if waiting else "Cancel job"
        if st.button(label, key=f"{key}__cancel_{job.id}", icon=":material/cancel:"):
            _cancel(ws, job.id)
            st.rerun()
    elif job.status == "done":
        st.progress(1.0, text=job.message or "finished")
    elif job.status == "failed":
        st.error(f"Job #{job.id} failed: {job.error or job.message or 'no message'}")
        tail = jobs.log_tail(ws, job.id, lines=40)
        if tail:
            with st.expander("Log tail"):
                st.code(tail, language="text")
    elif job.status == "cancelled":
        st.warning(f"Job #{job.id} was cancelled.")


def job_monitor(ws, job_ids: list[int], *, key: str, poll_s: float = 1.0) -> None:
    """Show ``job_ids`` (newest first). Polls while any of them is active; reruns the page when the
    last active one finishes."""
    if not job_ids:
        return
    jobs_now = [ws.get_job(j) for j in job_ids]
    any_active = any(j.active for j in jobs_now)

    def body() -> None:
        jobs.reconcile(ws)
        current = [ws.get_job(j) for j in job_ids]
        positions = jobs.queue_positions(ws)
        for job in current:
            with st.container(border=True):
                render_job(ws, job, key=key, position=positions.get(job.id))
        if any_active and not any(j.active for j in current):
            st.rerun(scope="app")

    @st.fragment(run_every=poll_s if any_active else None)
    def _monitor() -> None:
        run_page(body)          # a fragment rerun is outside the page's guard: guard it too

    _monitor()


def launch(ws, kind: str, params: dict, *, device: str = "auto") -> int:
    """Start ``kind`` as a background job (`core.jobs.submit`); returns its id. Never runs the work
    in the Streamlit process."""
    return jobs.submit(ws, kind, params, device=device)


def recent_jobs(ws, kinds: tuple[str, ...] | str, *, dataset: str | None = None, model: str | None = None,
                limit: int = 3, where: Callable[[dict], bool] | None = None) -> list[int]:
    """Ids of the newest jobs of ``kinds`` for (dataset, model) whose params pass ``where`` (read from
    the workspace, so they survive a browser refresh), after marking dead processes failed
    (`core.jobs.reconcile`)."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    jobs.reconcile(ws)
    out = []
    for job in ws.list_jobs(limit=200):
        if job.kind not in kinds:
            continue
        if dataset is not None and job.params.get("dataset") not in (None, dataset):
            continue
        if model is not None and job.params.get("model") not in (None, model):
            continue
        if where is not None and not where(job.params):
            continue
        out.append(job.id)
        if len(out) >= limit:
            break
    return out
