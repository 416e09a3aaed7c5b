"""Background jobs: a row in the workspace's ``jobs`` table plus a subprocess.

A job is started by `submit` as ``python -m core job run ID --workspace W`` in its own process
group (``start_new_session=True``), its stdout/stderr going to ``jobs/<id>.log``. The runner
(`run_job`) marks it running, calls the registered function of its kind with a throttled
``progress`` callback (≤ 4 database writes per second) and a heartbeat thread (every
``HEARTBEAT_S`` seconds), then stores the result or the error. `cancel` terminates the process group
(SIGTERM, then SIGKILL after a grace period); `reconcile` marks jobs whose process died (killed,
OOM, reboot) or stopped beating as failed with the log tail, so no job stays "running" forever.

Job kinds live in ``JOB_KINDS`` (name -> ``fn(ws, params, progress) -> dict`` of JSON-able
results), collected here, in one place, from the ``JOB_KINDS`` dict of each package's job adapter
module (``core.<package>.jobs``: params -> the package's config -> one call). Tests and extensions can
add kinds with ``@register_job_kind("name")``.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import torch

from core.audit import jobs as audit_jobs
from core.concepts import jobs as concepts_jobs
from core.data import jobs as data_jobs
from core.device import list_gpus, resolve_device
from core.errors import SpurAuditError, check_choice
from core.features import jobs as features_jobs
from core.mitigate import jobs as mitigate_jobs
from core.models import jobs as models_jobs
from core.progress import ProgressFn
from core.rare import jobs as rare_jobs
from core.serialize import json_default
from core.study import jobs as study_jobs   # issue 14: the many-model study
from core.workspace import JobRecord, Workspace

JobFn = Callable[[Workspace, dict, ProgressFn], dict]
JOB_KINDS: dict[str, JobFn] = {}

SETTINGS_REL = "settings.json"   # workspace settings (job slots per device)
DEFAULT_GPU_SLOTS = 1
HEARTBEAT_S = 2.0          # the runner beats this often
STALE_AFTER_S = 60.0       # reconcile: a live pid without a beat for this long counts as hung
PROGRESS_INTERVAL_S = 0.25  # at most 4 progress writes per second
CANCEL_GRACE_S = 5.0
ACTIVE = ("queued", "running")
_REPO_ROOT = Path(__file__).resolve().parents[1]
_CHILDREN: dict[int, "object"] = {}  # pid -> Popen, reaped by _reap()


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
    """Every registered job kind (name -> function)."""
    return JOB_KINDS


def _check_kind(kind: str) -> JobFn:
    check_choice("job kind", kind, sorted(JOB_KINDS))
    return JOB_KINDS[kind]


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


@register_job_kind("device-probe")
def device_probe_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Job kind "device-probe" (issue 14; used by benchmarks/gpu_check.py and the tests): what the job
    process sees — ``CUDA_VISIBLE_DEVICES``, the device its params name, the GPUs torch sees — and the time
    of a small matmul there (proves the job ran on that device)."""
    dev = resolve_device(params.get("device", "auto"))
    a = torch.randn(512, 512, device=dev)
    t0 = time.perf_counter()
    for _ in range(10):
        a = a @ a / 512 ** 0.5
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    progress(1.0, f"probed {dev}")
    return {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "device": str(dev),
            "gpus": [{"index": g.index, "name": g.name, "free_bytes": g.free_bytes, "total_bytes": g.total_bytes}
                     for g in list_gpus()],
            "matmul_ms": round((time.perf_counter() - t0) * 1000, 3), "pid": os.getpid()}


JOB_KINDS.update({**features_jobs.JOB_KINDS, **models_jobs.JOB_KINDS, **audit_jobs.JOB_KINDS,
                  **mitigate_jobs.JOB_KINDS, **rare_jobs.JOB_KINDS})
JOB_KINDS.update(study_jobs.JOB_KINDS)   # issue 14
JOB_KINDS.update({**data_jobs.JOB_KINDS, **concepts_jobs.JOB_KINDS})   # issue 11: New audit / Automation


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


# --------------------------------------------------------------------------------------------------
# the queue: at most K jobs per device run at once, the rest wait in submission order
# --------------------------------------------------------------------------------------------------
def device_slot(device: str | int | None) -> str:
    """The device a job occupies, as a slot name: "cpu", "cuda:N" or "mps" ("auto" and "cuda" name
    the first GPU when torch sees one, else the CPU)."""
    dev = "auto" if device is None else str(device).strip().lower()
    if dev.isdigit():
        return f"cuda:{dev}"
    if dev.startswith("cuda:") and dev[5:].isdigit():
        return dev
    if dev in ("auto", "cuda"):
        if torch.cuda.is_available():
            return "cuda:0"
        if dev == "auto" and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    return dev if dev in ("cpu", "mps") else "cpu"


def job_slots(ws: Workspace) -> dict[str, int]:
    """The workspace's slot limits as set with `set_job_slots` (``{"cuda": 1, "cpu": 4, "cuda:1": 2}``;
    a family name — "cuda", "cpu", "mps" — covers every device of it without its own entry)."""
    settings = ws.read_json(SETTINGS_REL, {}) or {}
    return {str(k): int(v) for k, v in (settings.get("job_slots") or {}).items()}


def slot_limit(slots: dict[str, int], slot: str) -> float:
    """How many jobs may run at once on ``slot``: its own entry, else its family's, else 1 for a GPU
    or MPS device (two jobs would contend for its memory) and no limit for the CPU (CPU jobs share the
    cores; set one with `set_job_slots(ws, "cpu", K)`)."""
    family = slot.split(":", 1)[0]
    if slot in slots:
        return slots[slot]
    if family in slots:
        return slots[family]
    return math.inf if family == "cpu" else DEFAULT_GPU_SLOTS


def set_job_slots(ws: Workspace, slot: str, limit: int) -> dict[str, int]:
    """Set the number of jobs that may run at once on ``slot`` ("cpu", "cuda", "cuda:N", "mps");
    returns all limits. Waiting jobs that now fit are started."""
    slot = str(slot).strip().lower()
    if not (slot in ("cpu", "cuda", "mps") or (slot.startswith("cuda:") and slot[5:].isdigit())):
        raise SpurAuditError(f"unknown device {slot!r} for job slots; use cpu, cuda, cuda:N or mps")
    if isinstance(limit, bool) or int(limit) != limit or int(limit) < 1:
        raise SpurAuditError(f"job slots must be a whole number >= 1, got {limit!r}")
    settings = ws.read_json(SETTINGS_REL, {}) or {}
    settings["job_slots"] = {**(settings.get("job_slots") or {}), slot: int(limit)}
    ws.write_json(SETTINGS_REL, settings)
    dispatch(ws)
    return job_slots(ws)


def _waiting(job: JobRecord) -> bool:
    """Queued and not yet handed to a process (a queued job with a pid is starting)."""
    return job.status == "queued" and job.pid is None


def _choose(active: list[JobRecord], slots: dict[str, int]) -> list[int]:
    """Ids of the waiting jobs that fit in free slots, oldest first per device (no job overtakes an
    older one waiting for the same device)."""
    used: dict[str, int] = {}
    for job in active:
        if not _waiting(job):
            key = device_slot(job.device)
            used[key] = used.get(key, 0) + 1
    chosen, full = [], set()
    for job in sorted(active, key=lambda j: j.id):
        if not _waiting(job):
            continue
        key = device_slot(job.device)
        if key not in full and used.get(key, 0) < slot_limit(slots, key):
            used[key] = used.get(key, 0) + 1
            chosen.append(job.id)
        else:
            full.add(key)
    return chosen


def queue_positions(ws: Workspace) -> dict[int, int]:
    """{job id: 1-based place in its device's queue} for every waiting job."""
    out, per_slot = {}, {}
    for job in sorted(ws.list_jobs(status="queued"), key=lambda j: j.id):
        if _waiting(job):
            key = device_slot(job.device)
            per_slot[key] = per_slot.get(key, 0) + 1
            out[job.id] = per_slot[key]
    return out


def dispatch(ws: Workspace) -> list[int]:
    """Start every waiting job that has a free slot (called on submit, when a job ends, by
    `reconcile`, and so after any restart); returns the ids started."""
    slots = job_slots(ws)
    started = ws.claim_jobs(lambda active: _choose(active, slots))
    for job_id in started:
        _spawn(ws, ws.get_job(job_id))
    return started


def _spawn(ws: Workspace, job: JobRecord) -> None:
    """The job's subprocess (its own process group, output to its log); a failure to start marks it failed."""
    env_over, _ = _device_env(job.device)
    env = {**os.environ, **env_over, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(_REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    log = ws.open_append(f"jobs/{job.id}.log")
    try:
        proc = subprocess.Popen(job_command(ws, job.id), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=str(_REPO_ROOT), start_new_session=True)
    except OSError as exc:
        ws.update_job(job.id, status="failed", error=f"could not start the job process: {exc}", finished=_now_iso(),
                      only_if_status=ACTIVE)
        return
    finally:
        log.close()
    _CHILDREN[proc.pid] = proc
    ws.update_job(job.id, pid=proc.pid, heartbeat=time.time(), only_if_status=ACTIVE)


def submit(ws: Workspace, kind: str, params: dict | None = None, *, device: str | int = "auto") -> int:
    """Record a job and queue it on its device; it starts at once when the device has a free slot
    (`slot_limit`), else when one frees. Returns the job id.

    ``device``: "auto", "cpu" (sets ``CUDA_VISIBLE_DEVICES=""``), "cuda", "cuda:N" or N (sets
    ``CUDA_VISIBLE_DEVICES=N`` and runs the job on "cuda"), "mps". ``params["device"]`` is filled
    from it unless given. ``params`` must be JSON-serialisable.
    """
    _check_kind(kind)
    params = dict(params or {})
    _, job_device = _device_env(device)
    params.setdefault("device", job_device)
    try:
        json.dumps(params, default=json_default)
    except TypeError as exc:
        raise SpurAuditError(f"job params must be JSON-serialisable: {exc}") from None
    job_id = ws.add_job(kind, params, device=str(device))
    ws.append_text(f"jobs/{job_id}.log", f"[{_now_iso()}] job {job_id} {kind} submitted (device {device})\n")
    dispatch(ws)
    if ws.get_job(job_id).status == "failed":
        raise SpurAuditError(f"could not start job {job_id}: {ws.get_job(job_id).error}")
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
        if _waiting(job):
            continue  # waiting for a free slot on its device
        ours = _is_job_process(job.pid, job.id)
        if job.pid == -1:
            if not stale:
                continue  # its process is being started right now
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
    dispatch(ws)
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
        try:
            dispatch(ws)   # this job's slot is free: start the next one waiting for it
        except Exception as exc:  # noqa: BLE001 - the next job is started by any later reconcile too
            ws.append_text(log_rel, f"[{_now_iso()}] could not start the next queued job: {exc}\n")


def active_jobs(ws: Workspace) -> list[JobRecord]:
    """Queued or running jobs (after reconciling dead ones)."""
    reconcile(ws)
    return ws.list_jobs(status=ACTIVE)


def job_summary(job: JobRecord, *, queue_position: int | None = None) -> dict:
    """A JSON-able dict of a job for the CLI and the dashboard (``queue_position``: its place in its
    device's queue while it waits, from `queue_positions`)."""
    return {"id": job.id, "kind": job.kind, "status": job.status, "progress": round(job.progress, 4),
            "queue_position": queue_position,
            "message": job.message, "pid": job.pid, "device": job.device, "params": job.params, "result": job.result,
            "error": job.error, "created": job.created, "started": job.started, "finished": job.finished,
            "heartbeat": job.heartbeat, "log": str(job.log_path) if job.log_path else None}


__all__: Iterable[str] = ["JOB_KINDS", "register_job_kind", "load_job_kinds", "submit", "cancel", "reconcile", "wait",
                          "dispatch", "device_slot", "job_slots", "set_job_slots", "slot_limit", "queue_positions",
                          "run_job", "log_tail", "pid_alive", "active_jobs", "job_summary", "JobCancelled"]
