"""Run ownership: which process works on a run, its heartbeat, and what happens when it dies.

A run row (``Workspace.add_run``) records the process that created it: ``owner_pid``, ``owner_host``
and ``owner_token`` (the kernel boot id and the process start time, so a pid reused after the owner
died is not taken for it). While the work goes on, `track_run` beats: it stores ``heartbeat`` (unix
time) every ``heartbeat_s`` seconds from a daemon thread, and records an exception escaping the block
as the run's outcome ("failed" with ``"Type: message"``, "cancelled" on Ctrl-C / a job cancel).

A process killed with ``kill -9``, by the OOM killer or a reboot records nothing. `reconcile_runs`
(called wherever runs are listed: ``python -m core run list|show``, the dashboard's Home and
Mitigate pages, ``workspace check``) marks such runs failed with the reason:

* owner on this machine and gone (no such pid, a zombie, or a pid now running another process);
* owner alive but its heartbeat older than ``stale_after_s`` (hung) — only for tracked runs, the
  ones with a heartbeat; the process is not killed (it may be a user's shell), and if it comes back
  its own final update still records the real outcome;
* owner on another machine: only a stale heartbeat tells;
* a row written before runs had owners (older workspaces): not updated for ``stale_after_s``.

On a read-only workspace nothing is written (the list shows what the database holds).

Base layer: this module imports only the standard library (``core.workspace`` uses its process helpers, so
the workspace is passed in, typed ``Any``, rather than imported).
"""
from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator


HEARTBEAT_S = 5.0          # a tracked run beats this often
STALE_AFTER_S = 120.0      # a tracked run silent this long (or an ownerless old row) counts as dead

__all__ = ["track_run", "reconcile_runs", "process_identity", "process_alive", "owner_alive",
           "HEARTBEAT_S", "STALE_AFTER_S"]


# --------------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------------
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str:
    """Start time of ``pid`` in clock ticks since boot (/proc/<pid>/stat field 22), "" when unknown."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_bytes()
        return stat.rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError, ValueError):
        return ""


def process_token(pid: int) -> str:
    """``"<boot id>:<start ticks>"`` of a live process ("" where /proc is not available)."""
    ticks = _start_ticks(pid)
    return f"{_boot_id()}:{ticks}" if ticks else ""


def process_identity(pid: int | None = None) -> dict:
    """``{"pid", "host", "token"}`` of this process (or ``pid``): what a run row records as its owner."""
    pid = os.getpid() if pid is None else int(pid)
    return {"pid": pid, "host": socket.gethostname(), "token": process_token(pid)}


def process_alive(pid: int | None) -> bool:
    """True when process ``pid`` exists here and is not a zombie."""
    if not pid or int(pid) <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (FileNotFoundError, IndexError):
        return not Path("/proc").exists()
    except OSError:
        return True


def owner_alive(pid: int | None, token: str | None) -> bool:
    """Is the process that recorded (``pid``, ``token``) on this machine still running? A recorded token
    must match the live process's (a different start time = the pid was reused)."""
    if not process_alive(pid):
        return False
    if token:
        now = process_token(int(pid))  # type: ignore[arg-type]
        return not now or now == token
    return True


def _parse_iso(text: str | None) -> float | None:
    try:
        return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------
# tracking and reconciling
# --------------------------------------------------------------------------------------------------
@contextmanager
def track_run(ws: Any, run_id: int, *, heartbeat_s: float = HEARTBEAT_S) -> Iterator[int]:
    """Own run ``run_id`` for the duration of the block and beat every ``heartbeat_s`` seconds.

    The block sets the run's outcome itself (``ws.update_run(run_id, status="done", ...)``); an
    exception leaving the block is recorded as "failed" (``error = "Type: message"``) or, for
    ``KeyboardInterrupt`` and a job cancel (`core.jobs.JobCancelled`), "cancelled" — then re-raised.
    """
    me = process_identity()
    ws.set_run_owner(run_id, pid=me["pid"], host=me["host"], token=me["token"], heartbeat=time.time())
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(heartbeat_s):
            try:
                ws.beat_run(run_id)
            except Exception:  # a missed beat is harmless; the next one retries
                pass

    beater = threading.Thread(target=beat, name=f"run-{run_id}-heartbeat", daemon=True)
    beater.start()
    try:
        yield run_id
    except BaseException as exc:
        stop.set()
        cancelled = isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "JobCancelled"
        ws.update_run(run_id, status="cancelled" if cancelled else "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        stop.set()
        beater.join(timeout=max(1.0, 2 * heartbeat_s))


def _dead_reason(run, *, now: float, host: str, stale_after_s: float) -> str | None:
    """Why a "running" run cannot be running any more, or None when it may well be."""
    beat_age = None if run.heartbeat is None else now - float(run.heartbeat)
    if run.owner_pid is None:
        updated = _parse_iso(run.updated)
        if updated is not None and now - updated > stale_after_s:
            return (f"recorded before runs had an owner process, and not updated for {now - updated:.0f} s; "
                    "its process is gone")
        return None
    if run.owner_host == host:
        if not owner_alive(run.owner_pid, run.owner_token):
            return (f"its process (pid {run.owner_pid}) is gone (killed, out of memory or a reboot) "
                    "without recording an outcome")
        if beat_age is not None and beat_age > stale_after_s:
            return f"no heartbeat for {beat_age:.0f} s from its process (pid {run.owner_pid}, hung?)"
        return None
    if beat_age is not None and beat_age > stale_after_s:
        return f"no heartbeat for {beat_age:.0f} s from its process (pid {run.owner_pid} on {run.owner_host})"
    return None


def reconcile_runs(ws: Any, *, stale_after_s: float = STALE_AFTER_S) -> list[int]:
    """Mark "running" runs whose owner is gone or silent as failed (see the module docstring); returns
    their ids. A no-op on a read-only workspace."""
    if getattr(ws, "read_only", False):
        return []
    now, host = time.time(), socket.gethostname()
    failed = []
    for run in ws.list_runs(status="running"):
        reason = _dead_reason(run, now=now, host=host, stale_after_s=stale_after_s)
        if reason is None:
            continue
        if ws.update_run(run.id, status="failed", error=f"marked failed when runs were listed: {reason}",
                         only_if_status=("running",)):
            failed.append(run.id)
    return failed
