"""`python -m core job list|show|submit|cancel|run|slots`: background jobs and their queue."""
from __future__ import annotations

import argparse
import json

from core.commands.context import CommandContext
from core.errors import SpurAuditError
from core.jobs import (cancel, job_slots, job_summary, log_tail, queue_positions, reconcile, run_job,
                       set_job_slots, submit, wait)


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    job = subparsers.add_parser("job", help="list, inspect, submit, cancel and run background jobs",
                                description="Background jobs recorded in the workspace (jobs/<id>.log holds logs).")
    sub = job.add_subparsers(dest="job_command", metavar="ACTION")
    job.set_defaults(handler=lambda ctx: _help(job))

    p = sub.add_parser("list", parents=[common], help="list jobs (newest first; dead ones are reconciled)")
    p.add_argument("--status", choices=["queued", "running", "done", "failed", "cancelled"], default=None)
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(handler=_list)

    p = sub.add_parser("show", parents=[common], help="show one job with its log tail")
    p.add_argument("id", type=int)
    p.add_argument("--lines", type=int, default=30, help="log lines to show")
    p.set_defaults(handler=_show)

    p = sub.add_parser("submit", parents=[common], help="start a job in the background")
    p.add_argument("kind", help="job kind (e.g. extract, sleep)")
    p.add_argument("--params", default="{}", help="job parameters as a JSON object")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (GPU index) or mps")
    p.add_argument("--wait", action="store_true", help="wait for the job to finish")
    p.set_defaults(handler=_submit)

    p = sub.add_parser("cancel", parents=[common], help="cancel a queued/running job")
    p.add_argument("id", type=int)
    p.add_argument("--grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL")
    p.set_defaults(handler=_cancel)

    p = sub.add_parser("run", parents=[common], help="run a queued job in this process (used by the job runner)")
    p.add_argument("id", type=int)
    p.set_defaults(handler=_run)

    p = sub.add_parser("slots", parents=[common],
                       help="show or set how many jobs may run at once per device (GPU default 1, CPU no limit)")
    p.add_argument("--device", default=None, help="cpu, cuda (every GPU), cuda:N or mps")
    p.add_argument("--limit", type=int, default=None, help="jobs at once on that device (>= 1)")
    p.set_defaults(handler=_slots)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _fmt(job: dict) -> str:
    where = f" (#{job['queue_position']} in the {job['device'] or 'auto'} queue)" if job.get("queue_position") else ""
    return (f"{job['id']:>5}  {job['kind']:<10} {job['status']:<9} {job['progress'] * 100:5.1f}%  "
            f"{(job['message'] or '')[:60]}{where}")


def _list(ctx: CommandContext) -> int:
    ws = ctx.workspace()
    reconciled = reconcile(ws)
    positions = queue_positions(ws)
    jobs = [job_summary(j, queue_position=positions.get(j.id))
            for j in ws.list_jobs(status=ctx.args.status, limit=ctx.args.limit)]
    text = "\n".join(["   id  kind       status    progress  message"] + [_fmt(j) for j in jobs]) if jobs \
        else "no jobs"
    ctx.emit({"jobs": jobs, "reconciled": reconciled}, text)
    return 0


def _show(ctx: CommandContext) -> int:
    ws = ctx.workspace()
    reconcile(ws)
    job = job_summary(ws.get_job(ctx.args.id), queue_position=queue_positions(ws).get(ctx.args.id))
    job["log_tail"] = log_tail(ws, ctx.args.id, lines=ctx.args.lines)
    text = _fmt(job) + (f"\nerror: {job['error']}" if job["error"] else "") + \
        (f"\nresult: {json.dumps(job['result'])}" if job["result"] else "") + f"\n--- {job['log']} ---\n{job['log_tail']}"
    ctx.emit(job, text)
    return 0


def _submit(ctx: CommandContext) -> int:
    try:
        params = json.loads(ctx.args.params)
    except json.JSONDecodeError as exc:
        raise SpurAuditError(f"--params is not valid JSON ({exc}); pass an object such as '{{\"seconds\": 2}}'") from None
    if not isinstance(params, dict):
        raise SpurAuditError("--params must be a JSON object")
    ws = ctx.workspace()
    job_id = submit(ws, ctx.args.kind, params, device=ctx.args.device)
    job = wait(ws, job_id) if ctx.args.wait else ws.get_job(job_id)
    out = job_summary(job)
    ctx.emit(out, f"job {job_id} ({ctx.args.kind}) {out['status']}; follow it with `python -m core job show {job_id}`")
    return 0 if out["status"] in ("queued", "running", "done") else 1


def _cancel(ctx: CommandContext) -> int:
    job = job_summary(cancel(ctx.workspace(), ctx.args.id, grace_s=ctx.args.grace))
    ctx.emit(job, f"job {job['id']} {job['status']}")
    return 0


def _run(ctx: CommandContext) -> int:
    return run_job(ctx.workspace(), ctx.args.id)


def _slots(ctx: CommandContext) -> int:
    ws = ctx.workspace()
    if (ctx.args.device is None) != (ctx.args.limit is None):
        raise SpurAuditError("give both --device and --limit to set a limit (or neither to show them)")
    slots = set_job_slots(ws, ctx.args.device, ctx.args.limit) if ctx.args.device else job_slots(ws)
    lines = [f"{k}: {v} at once" for k, v in sorted(slots.items())] or ["defaults: 1 job at once per GPU, no CPU limit"]
    ctx.emit({"job_slots": slots}, "\n".join(lines))
    return 0
