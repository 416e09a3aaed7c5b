"""`python -m core workspace check|backup|info` and `python -m core run list|show`.

    python -m core workspace check [--no-record]        # integrity + every recorded artifact exists, right size
    python -m core workspace backup DEST [--artifacts copy|list]
    python -m core workspace info                        # counts, identity, read-only, last backup
    python -m core run list [--status failed] [--method ffw] [--limit 50]
    python -m core run show ID
    python -m core run relaunch ID [--device cpu]       # a failed/cancelled mitigation run again, as a job
    python -m core run clear ID                          # remove a failed/cancelled run and its files

``workspace check`` exits 0 when all is well and 1 when it found a problem (listed); a database that
cannot be opened at all is a user error (exit 2, the message names the file and the fix). Listing runs
marks runs whose process died as failed (`core.runs.reconcile_runs`). Read-only workspaces: every
command here works on them (backup needs a writable DEST; nothing is recorded in the source).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from core.commands.context import CommandContext
from core.errors import SpurAuditError
from core.jobs import reconcile, submit
from core.mitigate.jobs import relaunch_params
from core.runs import reconcile_runs
from core.workspace import Workspace

RUN_STATUSES = ("running", "done", "failed", "cancelled")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    ws = subparsers.add_parser("workspace", parents=[common], help="check, back up and describe the workspace",
                               description="Check the workspace database and artifacts, back them up, describe them.")
    sub = ws.add_subparsers(dest="workspace_command", metavar="ACTION")
    ws.set_defaults(handler=lambda ctx: _help(ws))

    c = sub.add_parser("check", parents=[common],
                       help="SQLite integrity check + every artifact a record points to exists with its recorded size")
    c.add_argument("--no-record", action="store_true",
                   help="do not record the sizes of artifacts whose size was never recorded")
    c.set_defaults(handler=_check)

    b = sub.add_parser("backup", parents=[common], help="consistent copy of the database (+ the artifacts) into DEST")
    b.add_argument("dest", type=Path, help="a new or empty folder outside the workspace")
    b.add_argument("--artifacts", choices=("copy", "list"), default="copy",
                   help="copy the artifact files (default) or only list them in DEST/backup.json")
    b.set_defaults(handler=_backup)

    i = sub.add_parser("info", parents=[common], help="counts, identity, read-only state and the last backup")
    i.set_defaults(handler=_info)

    run = subparsers.add_parser("run", parents=[common], help="list and show recorded runs (dead ones are marked failed)",
                                description="Runs recorded in the workspace (mitigation, comparisons, audit gaps).")
    rsub = run.add_subparsers(dest="run_command", metavar="ACTION")
    run.set_defaults(handler=lambda ctx: _help(run))
    ls = rsub.add_parser("list", parents=[common], help="list runs (oldest first)")
    ls.add_argument("--status", choices=RUN_STATUSES, default=None)
    ls.add_argument("--method", default=None)
    ls.add_argument("--dataset", default=None)
    ls.add_argument("--model", default=None)
    ls.add_argument("--limit", type=int, default=50, help="show the newest N (default 50)")
    ls.set_defaults(handler=_run_list)
    sh = rsub.add_parser("show", parents=[common], help="one run: params, metrics, artifacts, error")
    sh.add_argument("id", type=int)
    sh.set_defaults(handler=_run_show)
    rl = rsub.add_parser("relaunch", parents=[common],
                         help="start a failed or cancelled mitigation run again as a job, with its own settings")
    rl.add_argument("id", type=int)
    rl.add_argument("--device", default=None, help="default: the device the run was given")
    rl.set_defaults(handler=_run_relaunch)
    cl = rsub.add_parser("clear", parents=[common], help="remove a failed or cancelled run: its record and files")
    cl.add_argument("id", type=int)
    cl.set_defaults(handler=_run_clear)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _existing(ctx: CommandContext):
    """The workspace, which must exist (these commands never create one)."""
    if ctx._workspace is None:
        ctx._workspace = Workspace(ctx.workspace_dir, create=False)
    return ctx._workspace


def _check(ctx: CommandContext) -> int:
    ws = _existing(ctx)
    out = ws.check(record_sizes=not ctx.args.no_record)
    if "error" not in out:
        out["reconciled_runs"] = reconcile_runs(ws)
        out["reconciled_jobs"] = reconcile(ws)
    lines = [f"workspace {out['workspace']}" + (" (read-only)" if out["read_only"] else ""),
             f"database integrity: {'ok' if out['integrity'] == ['ok'] else 'PROBLEMS'}"]
    if out["integrity"] != ["ok"]:
        lines += [f"  {line}" for line in out["integrity"][:20]]
    if out.get("application_id_ok") is False:
        lines.append("application id: not SpurAudit's")
    lines.append(f"artifacts checked: {out['artifacts_checked']}, missing: {len(out['missing'])}, "
                 f"size changed: {len(out['size_mismatch'])}, sizes recorded now: {out['recorded_now']}")
    lines += [f"  missing: {m['path']} ({m['record']})" for m in out["missing"][:50]]
    lines += [f"  size changed: {m['path']} ({m['record']}): recorded {m['recorded']} bytes, now {m['actual']}"
              for m in out["size_mismatch"][:50]]
    if out.get("unrecorded"):
        lines.append(f"  {out['unrecorded']} artifact size(s) never recorded (read-only workspace: not recorded now)")
    for key, what in (("reconciled_runs", "runs"), ("reconciled_jobs", "jobs")):
        if out.get(key):
            lines.append(f"{what} whose process was gone, now marked failed: {out[key]}")
    lines.append("ok" if out["ok"] else "problems found: restore the listed files or the database from a backup "
                                        "(`python -m core workspace backup` makes them), or re-run the steps that "
                                        "made them")
    ctx.emit(out, "\n".join(lines))
    return 0 if out["ok"] else 1


def _backup(ctx: CommandContext) -> int:
    ws = _existing(ctx)
    out = ws.backup(ctx.args.dest, artifacts=ctx.args.artifacts, progress=ctx.progress("backup"))
    art = out["artifacts"]
    text = (f"backed up {ws.root} to {out['dest']}: database {out['db_bytes']:,} bytes (one consistent snapshot), "
            + (f"{art['copied']} artifact files copied ({art['bytes']:,} bytes)" if art["mode"] == "copy" else
               f"{art['listed']} artifact files listed in backup.json, not copied")
            + (f"; {art['skipped']} cache/temporary files skipped" if art["skipped"] else "")
            + (f"; {len(art['external'])} dataset folder(s) outside the workspace not copied (see backup.json)"
               if art["external"] else "")
            + ("" if out["recorded"] else "; read-only workspace: the backup is not recorded in it"))
    ctx.emit(out, text)
    return 0


def _info(ctx: CommandContext) -> int:
    ws = _existing(ctx)
    out = {**ws.summary(), "db": str(ws.db_path), "last_backup": ws.last_backup()}
    last = out["last_backup"]
    text = "\n".join([f"workspace {out['root']} (schema {out['schema_version']}"
                      + (", read-only)" if out["read_only"] else ")"),
                      ", ".join(f"{k} {out[k]}" for k in ("datasets", "models", "feature_sets", "labels", "runs",
                                                            "jobs", "jobs_active")),
                      f"last backup: {last['created'][:19]} UTC to {last['dest']}" if last else
                      "last backup: none (`python -m core workspace backup DEST`)"])
    ctx.emit(out, text)
    return 0


def _run_dict(run: Any) -> dict:
    return {"id": run.id, "method": run.method, "dataset": run.dataset, "model": run.model, "status": run.status,
            "params": run.params, "metrics": run.metrics, "artifacts": {k: str(v) for k, v in run.artifacts.items()},
            "error": run.error, "created": run.created, "updated": run.updated, "owner_pid": run.owner_pid,
            "owner_host": run.owner_host, "heartbeat": run.heartbeat}


def _run_list(ctx: CommandContext) -> int:
    ws = _existing(ctx)
    a = ctx.args
    reconciled = reconcile_runs(ws)
    runs = ws.list_runs(dataset=a.dataset, model=a.model, method=a.method, status=a.status)
    if a.limit is not None and a.limit >= 0:
        runs = runs[-a.limit:] if a.limit else []
    rows = [_run_dict(r) for r in runs]
    text = "\n".join(["   id  method        status     dataset/model              updated"] +
                     [f"{r.id:>5}  {r.method:<13} {r.status:<10} {f'{r.dataset}/{r.model}':<26} {r.updated[:19]}"
                      + (f"\n       {(r.error or '').splitlines()[0][:100]}" if r.status == "failed" and r.error else "")
                      for r in runs]) if runs else "no runs yet"
    if reconciled:
        text += f"\nmarked failed (their process was gone): {reconciled}"
    ctx.emit({"runs": rows, "reconciled": reconciled}, text)
    return 0


def _run_show(ctx: CommandContext) -> int:
    ws = _existing(ctx)
    reconcile_runs(ws)
    run = ws.get_run(ctx.args.id)
    out = _run_dict(run)
    lines = [f"run {run.id}: {run.method} on {run.dataset}/{run.model} ({run.status})",
             f"created {run.created[:19]}, updated {run.updated[:19]}"
             + (f", owner pid {run.owner_pid} on {run.owner_host}" if run.owner_pid else "")]
    if run.error:
        lines.append(f"error: {run.error}")
    if run.params:
        lines.append("params: " + json.dumps(run.params, default=str)[:500])
    if run.metrics:
        lines.append("metrics: " + json.dumps(run.metrics, default=str)[:500])
    lines += [f"  {k}: {v}" for k, v in sorted(out["artifacts"].items())]
    ctx.emit(out, "\n".join(lines))
    return 0


def _ended_badly(ws: Workspace, run_id: int, action: str):
    """The run ``run_id`` after reconciling, which must be failed or cancelled for ``action``."""
    reconcile_runs(ws)
    run = ws.get_run(run_id)
    if run.status not in ("failed", "cancelled"):
        raise SpurAuditError(f"run {run.id} is {run.status}; only failed or cancelled runs can be {action} "
                             "(see python -m core run list --status failed)")
    return run


def _run_relaunch(ctx: CommandContext) -> int:
    ws = _existing(ctx)
    run = _ended_badly(ws, ctx.args.id, "re-launched")
    kind, params = relaunch_params(run)
    device = ctx.args.device or params.get("device") or "auto"
    params["device"] = device
    job_id = submit(ws, kind, params, device=device)
    ctx.emit({"run": run.id, "job": job_id, "kind": kind, "params": params},
             f"run {run.id} re-launched as job {job_id} ({kind}); follow it with python -m core job show {job_id}")
    return 0


def _run_clear(ctx: CommandContext) -> int:
    ws = _existing(ctx)
    run = _ended_badly(ws, ctx.args.id, "cleared")
    ws.delete_run(run.id)
    ctx.emit({"cleared": run.id}, f"run {run.id} ({run.method}, {run.status}) cleared")
    return 0
