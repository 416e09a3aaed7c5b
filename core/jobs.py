"""Background jobs: a row in the workspace's ``jobs`` table plus a subprocess.

A job is started by `submit` as ``python -m core job run ID --workspace W`` in its own process
group (``start_new_session=True``), its stdout/stderr going to ``jobs/<id>.log``. The runner
(`run_job`) marks it running, calls the registered function of its kind with a throttled
``progress`` callback (≤ 4 database writes per second) and a heartbeat thread (every
``HEARTBEAT_S`` seconds), then stores the result or the error. `cancel` terminates the process group
(SIGTERM, then SIGKILL after a grace period); `reconcile` marks jobs whose process died (killed,
OOM, reboot) or stopped beating as failed with the log tail, so no job stays "running" forever.

Job kinds live in ``JOB_KINDS`` (name -> ``fn(ws, params, progress) -> dict`` of JSON-able
results); modules add theirs with ``@register_job_kind("name")``. `load_job_kinds` imports the
modules in ``KIND_MODULES`` lazily, tolerating the ones not present.
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from core.errors import SpurAuditError, check_choice
from core.progress import ProgressFn
from core.serialize import json_default
from core.workspace import JobRecord, Workspace

JobFn = Callable[[Workspace, dict, ProgressFn], dict]
JOB_KINDS: dict[str, JobFn] = {}
KIND_MODULES: tuple[str, ...] = (
    "core.features.extract",  # extract
    "core.models.train",      # train
    "core.mitigate",          # mitigate
    "core.audit",             # audit
    "core.concepts",          # concepts
    "core.rare",              # rare
    "core.report",            # report
)
KIND_IMPORT_ERRORS: dict[str, str] = {}

HEARTBEAT_S = 2.0          # the runner beats this often
STALE_AFTER_S = 60.0       # reconcile: a live pid without a beat for this long counts as hung
PROGRESS_INTERVAL_S = 0.25  # at most 4 progress writes per second
CANCEL_GRACE_S = 5.0
ACTIVE = ("queued", "running")
_REPO_ROOT = Path(__file__).resolve().parents[1]
_CHILDREN: dict[int, "object"] = {}  # pid -> Popen, reaped by _reap()
_loaded = False


class JobCancelled(BaseException):
    """Raised inside a running job when it receives SIGTERM/SIGINT (a BaseException so that job code
    catching ``Exception`` does not swallow it)."""


def register_job_kind(name: str, *, replace: bool = True) -> Callable[[JobFn], JobFn]:
    """Decorator registering ``fn(ws, params, progress) -> dict`` as job kind ``name``."""
    if not name or not isinstance(name, str):
        raise SpurAuditError("job kind name must be a non-empty string")

    def deco(fn: JobFn) -> JobFn:
        if name in JOB_KINDS and not replace and JOB_KINDS[name] is not fn:
            raise SpurAuditError(f"job kind {name!r} is already registered")
        JOB_KINDS[name] = fn
        return fn

    return deco


def load_job_kinds() -> dict[str, JobFn]:
    """Import the modules that register job kinds (once); missing modules are skipped, modules that
    fail to import are remembered in ``KIND_IMPORT_ERRORS`` (shown when a kind is unknown)."""
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in KIND_MODULES:
            try:
                importlib.import_module(mod)
            except ModuleNotFoundError as exc:
                if exc.name and (mod == exc.name or mod.startswith(exc.name + ".")):
                    continue  # that part of the engine is not there (yet)
                KIND_IMPORT_ERRORS[mod] = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # a broken module must not break job listing
                KIND_IMPORT_ERRORS[mod] = f"{type(exc).__name__}: {exc}"
    return JOB_KINDS


def _check_kind(kind: str) -> JobFn:
    kinds = load_job_kinds()
    if kind not in kinds:
        extra = ""
        if KIND_IMPORT_ERRORS:
            extra = "; modules that failed to import: " + "; ".join(f"{m} ({e})" for m, e in KIND_IMPORT_ERRORS.items())
        check_choice("job kind", kind, sorted(kinds) or ["(none registered)"])  # raises
        raise SpurAuditError(f"unknown job kind {kind!r}{extra}")  # pragma: no cover
    return kinds[kind]


# --------------------------------------------------------------------------------------------------
# built-in test kind
# --------------------------------------------------------------------------------------------------
@register_job_kind("sleep")
def sleep_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Job kind "sleep" (harmless; used by tests and to check the job machinery): sleeps
    ``seconds`` (default 1) in ``steps`` (default 10) reporting progress; ``fail=true`` raises at the end."""
    seconds = float(params.get("seconds", 1.0))
    steps = max(int(params.get("steps", 10)), 1)
    if seconds < 0:
        raise SpurAuditError(f"sleep seconds must be >= 0, got {seconds}")
    for i in range(steps):
        time.sleep(seconds / steps)
        progress((i + 1) / steps, f"step {i + 1}/{steps}")
    if params.get("fail"):
        raise RuntimeError("sleep job asked to fail")
    return {"slept": seconds, "steps": steps}


# --------------------------------------------------------------------------------------------------
# process helpers
# --------------------------------------------------------------------------------------------------
def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


def _reap() -> None:
    """Collect exit statuses of children we started, so they do not linger as zombies."""
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:  # type: ignore[attr-defined]
            _CHILDREN.pop(pid, None)


def pid_alive(pid: int | None) -> bool:
    """True when process ``pid`` exists and is not a zombie."""
    if not pid or pid <= 0:
        return False
    _reap()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (FileNotFoundError, IndexError):
        return not Path("/proc").exists()
    except OSError:
        return True


def _is_job_process(pid: int | None, job_id: int) -> bool:
    """Is ``pid`` alive and running job ``job_id`` (checked via /proc cmdline where available)?"""
    if not pid_alive(pid):
        return False
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid
    return b"job" in cmd and b"run" in cmd and str(job_id).encode() in cmd


def _kill_group(pid: int, *, grace_s: float) -> None:
    """SIGTERM the process group led by ``pid``; SIGKILL it if it is still alive after ``grace_s``."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    target_group = pgid == pid  # started with start_new_session: the job leads its group
    sender = (lambda s: os.killpg(pgid, s)) if target_group else (lambda s: os.kill(pid, s))
    try:
        sender(signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            break
        time.sleep(0.05)
    try:
        sender(signal.SIGKILL)  # also reaches grandchildren (DataLoader workers) left in the group
    except (ProcessLookupError, PermissionError):
        pass
    _reap()


def log_tail(ws: Workspace, job_id: int, *, lines: int = 30) -> str:
    """The last ``lines`` lines of a job's log."""
    return ws.tail(f"jobs/{int(job_id)}.log", lines=lines)


# --------------------------------------------------------------------------------------------------
# submit / cancel / reconcile / wait
# --------------------------------------------------------------------------------------------------
def _device_env(device: str | int | None) -> tuple[dict[str, str], str]:
    """(environment overrides, device string for the job's params) for a device choice."""
    dev = "auto" if device is None else str(device).strip().lower()
    if dev.isdigit():
        dev = f"cuda:{dev}"
    if dev == "cpu":
        return {"CUDA_VISIBLE_DEVICES": ""}, "cpu"
    if dev.startswith("cuda:") and dev[5:].isdigit():
        return {"CUDA_VISIBLE_DEVICES": dev[5:]}, "cuda"
    if dev in ("auto", "cuda", "mps"):
        return {}, dev
    raise SpurAuditError(f"unknown job device {device!r}; use auto, cpu, cuda, cuda:N (a GPU index) or mps")


def job_command(ws: Workspace, job_id: int) -> list[str]:
    """The command line a job runs in its subprocess."""
    return [sys.executable, "-m", "core", "job", "run", str(int(job_id)), "--workspace", str(ws.root)]


def submit(ws: Workspace, kind: str, params: dict | None = None, *, device: str | int = "auto") -> int:
    """Record a job and start its subprocess; returns the job id.

    ``device``: "auto", "cpu" (sets ``CUDA_VISIBLE_DEVICES=""``), "cuda", "cuda:N" or N (sets
    ``CUDA_VISIBLE_DEVICES=N`` and runs the job on "cuda"), "mps". ``params["device"]`` is filled
    from it unless given. ``params`` must be JSON-serialisable.
    """
    import subprocess

    _check_kind(kind)
    params = dict(params or {})
    env_over, job_device = _device_env(device)
    params.setdefault("device", job_device)
    try:
        json.dumps(params, default=json_default)
    except TypeError as exc:
        raise SpurAuditError(f"job params must be JSON-serialisable: {exc}") from None
    job_id = ws.add_job(kind, params, device=str(device))
    log_rel = f"jobs/{job_id}.log"
    ws.append_text(log_rel, f"[{_now_iso()}] job {job_id} {kind} submitted (device {device})\n")
    env = {**os.environ, **env_over, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(_REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    log = ws.open_append(log_rel)
    try:
        proc = subprocess.Popen(job_command(ws, job_id), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=str(_REPO_ROOT), start_new_session=True)
    except OSError as exc:
        ws.update_job(job_id, status="failed", error=f"could not start the job process: {exc}", finished=_now_iso())
        raise SpurAuditError(f"could not start job {job_id}: {exc}") from exc
    finally:
        log.close()
    _CHILDREN[proc.pid] = proc
    ws.update_job(job_id, pid=proc.pid, heartbeat=time.time(), only_if_status=ACTIVE)
    return job_id


def cancel(ws: Workspace, job_id: int, *, grace_s: float = CANCEL_GRACE_S) -> JobRecord:
    """Cancel a queued/running job: mark it cancelled, SIGTERM its process group, SIGKILL after
    ``grace_s``. A finished job is returned unchanged."""
    job = ws.get_job(job_id)
    if not job.active:
        return job
    ws.update_job(job_id, status="cancelled", finished=_now_iso(), message="cancelled", only_if_status=ACTIVE)
    ws.append_text(f"jobs/{int(job_id)}.log", f"[{_now_iso()}] cancel requested\n")
    if job.pid and _is_job_process(job.pid, job_id):
        _kill_group(job.pid, grace_s=grace_s)
    return ws.get_job(job_id)


def reconcile(ws: Workspace, *, stale_after_s: float = STALE_AFTER_S) -> list[int]:
    """Mark active jobs whose process is gone, or alive but silent for ``stale_after_s`` seconds
    (hung or a reused pid), as failed with their log tail. Returns the ids marked failed (none on a
    read-only workspace)."""
    failed: list[int] = []
    if getattr(ws, "read_only", False):   # nothing can be recorded; the list shows what the database holds
        return failed
    now = time.time()
    for job in ws.list_jobs(status=ACTIVE):
        beat = job.heartbeat if job.heartbeat is not None else _parse_iso(job.started or job.created)
        # a queued job's process may still be importing torch on a busy machine: allow it longer
        limit = stale_after_s if job.status == "running" else max(stale_after_s, 300.0)
        stale = beat is not None and now - beat > limit
        ours = _is_job_process(job.pid, job.id)
        if job.pid is None:
            if not stale:
                continue  # being submitted right now
            reason = "the job process was never started"
        elif not ours:
            reason = f"the job process (pid {job.pid}) died without reporting (killed, out of memory or reboot)"
        elif stale:
            reason = f"no heartbeat for {now - beat:.0f} s (process {job.pid} hung); it was killed"
            _kill_group(job.pid, grace_s=1.0)
        else:
            continue
        tail = log_tail(ws, job.id)
        error = reason + (f"\n--- log tail ---\n{tail}" if tail else "")
        if ws.update_job(job.id, status="failed", error=error, finished=_now_iso(), message="failed",
                         only_if_status=ACTIVE):
            ws.append_text(f"jobs/{job.id}.log", f"[{_now_iso()}] marked failed by reconcile: {reason}\n")
            failed.append(job.id)
    return failed


def wait(ws: Workspace, job_id: int, *, timeout_s: float = 600.0, poll_s: float = 0.2,
         stale_after_s: float = STALE_AFTER_S) -> JobRecord:
    """Block until a job is no longer queued/running (reconciling dead processes); raise
    `SpurAuditError` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = ws.get_job(job_id)
        if not job.active:
            return job
        if time.monotonic() > deadline:
            raise SpurAuditError(f"job {job_id} still {job.status} after {timeout_s:.0f} s; "
                                 f"see `python -m core job show {job_id}`")
        reconcile(ws, stale_after_s=stale_after_s)
        time.sleep(poll_s)


# --------------------------------------------------------------------------------------------------
# the runner (inside the job subprocess)
# --------------------------------------------------------------------------------------------------
class _Reporter:
    """Throttled progress writer: at most one DB write per ``interval_s`` (the final 1.0 always)."""

    def __init__(self, ws: Workspace, job_id: int, *, interval_s: float = PROGRESS_INTERVAL_S) -> None:
        self.ws, self.job_id, self.interval_s = ws, job_id, interval_s
        self.last_write = 0.0
        self.last_log = 0.0
        self.last_message = ""

    def __call__(self, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        fraction = min(max(float(fraction), 0.0), 1.0)
        if now - self.last_write < self.interval_s and fraction < 1.0:
            return
        self.last_write = now
        self.ws.update_job(self.job_id, progress=fraction, message=str(message)[:500], heartbeat=time.time(),
                           only_if_status=["running"])
        if message and message != self.last_message and (now - self.last_log >= 5.0 or fraction >= 1.0):
            self.last_log = now
            self.last_message = message
            self.ws.append_text(f"jobs/{self.job_id}.log", f"[{_now_iso()}] {fraction:6.1%} {message}\n")


def run_job(ws: Workspace, job_id: int) -> int:
    """Run job ``job_id`` in this process (what ``python -m core job run ID`` does); returns an
    exit code (0 done, 1 failed, 130 cancelled)."""
    job = ws.get_job(job_id)
    log_rel = f"jobs/{int(job_id)}.log"
    if job.status == "cancelled":
        return 130
    if job.status != "queued":
        raise SpurAuditError(f"job {job_id} is {job.status}; only queued jobs can run (submit a new one)")
    if not ws.update_job(job_id, status="running", pid=os.getpid(), started=_now_iso(), heartbeat=time.time(),
                         message="starting", only_if_status=["queued"]):
        return 130  # cancelled between the check and now

    def on_signal(signum: int, frame: object) -> None:
        raise JobCancelled(f"signal {signum}")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                ws.update_job(job_id, heartbeat=time.time(), only_if_status=["running"])
            except Exception:  # a missed beat is harmless; the next one retries
                pass

    beater = threading.Thread(target=beat, name=f"job-{job_id}-heartbeat", daemon=True)
    beater.start()
    ws.append_text(log_rel, f"[{_now_iso()}] running {job.kind} (pid {os.getpid()})\n")
    try:
        fn = _check_kind(job.kind)
        result = fn(ws, dict(job.params), _Reporter(ws, job_id))
        if result is None:
            result = {}
        if not isinstance(result, dict):
            result = {"result": result}
        stop.set()
        ws.update_job(job_id, status="done", progress=1.0, message="done", result=result, finished=_now_iso(),
                      heartbeat=time.time(), only_if_status=["running"])
        ws.append_text(log_rel, f"[{_now_iso()}] done\n")
        return 0
    except (JobCancelled, KeyboardInterrupt):
        stop.set()
        ws.update_job(job_id, status="cancelled", message="cancelled", finished=_now_iso(), only_if_status=["running"])
        ws.append_text(log_rel, f"[{_now_iso()}] cancelled\n")
        return 130
    except BaseException as exc:
        stop.set()
        ws.append_text(log_rel, traceback.format_exc())
        error = f"{type(exc).__name__}: {exc}\n--- log tail ---\n{log_tail(ws, job_id)}"
        ws.update_job(job_id, status="failed", message="failed", error=error, finished=_now_iso(),
                      only_if_status=["running"])
        return 1
    finally:
        stop.set()
        for s, handler in previous.items():
            signal.signal(s, handler)


def active_jobs(ws: Workspace) -> list[JobRecord]:
    """Queued or running jobs (after reconciling dead ones)."""
    reconcile(ws)
    return ws.list_jobs(status=ACTIVE)


def job_summary(job: JobRecord) -> dict:
    """A JSON-able dict of a job for the CLI and the dashboard."""
    return {"id": job.id, "kind": job.kind, "status": job.status, "progress": round(job.progress, 4),
            "message": job.message, "pid": job.pid, "device": job.device, "params": job.params, "result": job.result,
            "error": job.error, "created": job.created, "started": job.started, "finished": job.finished,
            "heartbeat": job.heartbeat, "log": str(job.log_path) if job.log_path else None}


__all__: Iterable[str] = ["JOB_KINDS", "register_job_kind", "load_job_kinds", "submit", "cancel", "reconcile", "wait",
                          "run_job", "log_tail", "pid_alive", "active_jobs", "job_summary", "JobCancelled"]
