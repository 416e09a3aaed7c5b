"""Jobs: lifecycle in real subprocesses, progress seen from another process, cancel, reconcile, CLI."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import jobs
from core.errors import SpurAuditError
from core.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "features"))
from _standin import make_toy_workspace  # noqa: E402


def _wait_for(pred, timeout: float = 90.0, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError("condition not reached in time")


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Submit all jobs at once (each subprocess pays Python+torch start-up; overlapping them keeps this fast)."""
    ws = make_toy_workspace(tmp_path_factory.mktemp("jobs") / "ws")
    ids = {
        "extract": jobs.submit(ws, "extract", {"dataset": "toy", "model": "cnn", "split": "train", "batch_size": 8},
                               device="cpu"),
        "ok": jobs.submit(ws, "sleep", {"seconds": 3.0, "steps": 30}, device="cpu"),
        "cancel": jobs.submit(ws, "sleep", {"seconds": 120, "steps": 1200}),
        "kill": jobs.submit(ws, "sleep", {"seconds": 120, "steps": 1200}),
        "fail": jobs.submit(ws, "sleep", {"seconds": 0.1, "steps": 1, "fail": True}),
    }
    yield {"ws": ws, "ids": ids}
    for job_id in ids.values():  # never leave processes behind
        jobs.cancel(ws, job_id, grace_s=1.0)


def test_submit_validates(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "w")
    with pytest.raises(SpurAuditError, match="valid choices: .*sleep"):
        jobs.submit(ws, "no-such-kind", {})
    with pytest.raises(SpurAuditError, match="device"):
        jobs.submit(ws, "sleep", {}, device="tpu")
    with pytest.raises(SpurAuditError, match="JSON"):
        jobs.submit(ws, "sleep", {"x": object()})
    assert ws.list_jobs() == []
    assert "extract" in jobs.load_job_kinds() and "sleep" in jobs.JOB_KINDS


def test_device_environment() -> None:
    assert jobs._device_env("cpu") == ({"CUDA_VISIBLE_DEVICES": ""}, "cpu")
    assert jobs._device_env("cuda:1") == ({"CUDA_VISIBLE_DEVICES": "1"}, "cuda")
    assert jobs._device_env(0) == ({"CUDA_VISIBLE_DEVICES": "0"}, "cuda")
    assert jobs._device_env("auto") == ({}, "auto")


def test_progress_visible_then_done(started: dict) -> None:
    ws, job_id = started["ws"], started["ids"]["ok"]
    # another process (this one) sees the subprocess's progress while it runs
    job = _wait_for(lambda: (j := ws.get_job(job_id)).status == "running" and 0 < j.progress < 1 and j)
    assert job.pid and job.pid != os.getpid() and job.heartbeat is not None and job.message.startswith("step")
    assert job.params["device"] == "cpu"
    job = jobs.wait(ws, job_id, timeout_s=90)
    assert job.status == "done" and job.progress == 1.0 and job.result == {"slept": 3.0, "steps": 30}
    assert job.finished and job.error is None
    log = job.log_path.read_text()
    assert "running sleep" in log and "done" in log


def test_failure_records_error_and_log(started: dict) -> None:
    ws, job_id = started["ws"], started["ids"]["fail"]
    job = jobs.wait(ws, job_id, timeout_s=90)
    assert job.status == "failed" and "asked to fail" in job.error and "Traceback" in job.error


def test_cancel_terminates_process_group(started: dict) -> None:
    ws, job_id = started["ws"], started["ids"]["cancel"]
    job = _wait_for(lambda: (j := ws.get_job(job_id)).status == "running" and j.progress > 0 and j)
    job = jobs.cancel(ws, job_id, grace_s=30.0)
    assert job.status == "cancelled"
    assert not jobs.pid_alive(job.pid)
    tail = jobs.log_tail(ws, job_id)
    assert "cancel requested" in tail and "] cancelled" in tail  # the runner handled SIGTERM and logged it
    assert jobs.cancel(ws, job_id).status == "cancelled"  # idempotent


def test_reconcile_marks_dead_process_failed(started: dict) -> None:
    ws, job_id = started["ws"], started["ids"]["kill"]
    job = _wait_for(lambda: (j := ws.get_job(job_id)).status == "running" and j)
    os.killpg(job.pid, signal.SIGKILL)  # like the OOM killer: no chance to report
    _wait_for(lambda: not jobs.pid_alive(job.pid), timeout=10)
    assert ws.get_job(job_id).status == "running"  # the row alone cannot know...
    assert jobs.reconcile(ws) == [job_id]          # ...reconcile can
    job = ws.get_job(job_id)
    assert job.status == "failed" and "died" in job.error and "log tail" in job.error and "running sleep" in job.error


def test_reconcile_hung_process_and_never_started(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "w")
    hung = ws.add_job("sleep", {})
    # a live process that looks like the job's runner but never beats
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "job", "run", str(hung)],
                            start_new_session=True)
    try:
        ws.update_job(hung, status="running", pid=proc.pid, heartbeat=time.time() - 500)
        never = ws.add_job("sleep", {})
        fresh = ws.add_job("sleep", {})
        # both handed to a process (pid -1: dispatched, its process not seen yet): one long ago, one now
        ws.update_job(never, pid=-1, heartbeat=time.time() - 500)
        ws.update_job(fresh, pid=-1, heartbeat=time.time())
        assert sorted(jobs.reconcile(ws, stale_after_s=30)) == [hung, never]
        assert proc.wait(timeout=10) != 0  # the hung process was killed
        assert "no heartbeat" in ws.get_job(hung).error
        assert "never started" in ws.get_job(never).error
        assert ws.get_job(fresh).status == "queued"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """`python -m core ARGS` in this process (the job subprocesses above exercise `python -m core job run`)."""
    from core.cli import main

    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().out


def test_cli_json(started: dict, capsys: pytest.CaptureFixture) -> None:
    ws = started["ws"]
    jobs.wait(ws, started["ids"]["ok"], timeout_s=90)
    code, out = _cli(capsys, "job", "list", "--workspace", str(ws.root), "--json")
    assert code == 0
    listed = json.loads(out)
    assert {j["id"] for j in listed["jobs"]} >= set(started["ids"].values())
    code, out = _cli(capsys, "job", "show", str(started["ids"]["ok"]), "--workspace", str(ws.root), "--json")
    shown = json.loads(out)
    assert code == 0 and shown["status"] == "done" and "running sleep" in shown["log_tail"]
    code, out = _cli(capsys, "job", "show", "9999", "--workspace", str(ws.root), "--json")
    assert code == 2 and "unknown job id 9999" in json.loads(out)["error"]


def test_extract_job_kind(started: dict) -> None:
    from core.features import load_features

    ws = started["ws"]
    job = jobs.wait(ws, started["ids"]["extract"], timeout_s=150)
    assert job.status == "done", job.error
    assert job.params["device"] == "cpu"
    assert job.result == {"feature_sets": [{"dataset": "toy", "model": "cnn", "split": "train", "n": 20, "dim": 8,
                                            "num_classes": 3}]}
    fs = load_features(ws, "toy", "cnn", "train")
    assert fs.n == 20 and fs.features.dtype.name == "float16"


# --------------------------------------------------------------------------------------------------
# the queue: K jobs per device at once, the rest wait in order
# --------------------------------------------------------------------------------------------------
def _started_order(ws: Workspace, ids: list[int]) -> list[int]:
    return [j for j, _ in sorted(((i, ws.get_job(i).started) for i in ids), key=lambda t: t[1])]


def test_three_jobs_on_one_device_run_one_at_a_time_in_order(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "w")
    jobs.set_job_slots(ws, "cpu", 1)
    ids = [jobs.submit(ws, "sleep", {"seconds": 0.5, "steps": 2}, device="cpu") for _ in range(3)]
    assert jobs.queue_positions(ws) == {ids[1]: 1, ids[2]: 2}       # the first one holds the slot
    for i in ids:
        assert jobs.wait(ws, i, timeout_s=120).status == "done"
    runs = [ws.get_job(i) for i in ids]
    assert _started_order(ws, ids) == ids
    for before, after in zip(runs, runs[1:]):                        # never two at once
        assert before.finished <= after.started


def test_a_restart_keeps_the_queue_order(tmp_path: Path) -> None:
    """Jobs waiting when every process that knew them is gone (a dashboard restart) start later, from
    a fresh Workspace object, in submission order."""
    ws = Workspace(tmp_path / "w")
    jobs.set_job_slots(ws, "cpu", 1)
    hold = jobs.submit(ws, "sleep", {"seconds": 1.0, "steps": 2}, device="cpu")
    waiting = [ws.add_job("sleep", {"seconds": 0.2, "steps": 1, "device": "cpu"}, device="cpu") for _ in range(2)]
    jobs.wait(ws, hold, timeout_s=120)
    fresh = Workspace(tmp_path / "w")                               # "after the restart"
    for i in waiting:
        assert jobs.wait(fresh, i, timeout_s=120).status == "done"  # wait() reconciles, which dispatches
    assert _started_order(fresh, waiting) == waiting


def test_cancelling_a_queued_job_never_starts_it(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "w")
    jobs.set_job_slots(ws, "cpu", 1)
    first = jobs.submit(ws, "sleep", {"seconds": 1.0, "steps": 2}, device="cpu")
    second = jobs.submit(ws, "sleep", {"seconds": 0.1, "steps": 1}, device="cpu")
    third = jobs.submit(ws, "sleep", {"seconds": 0.1, "steps": 1}, device="cpu")
    assert jobs.cancel(ws, second).status == "cancelled"
    assert jobs.wait(ws, first, timeout_s=120).status == "done"
    assert jobs.wait(ws, third, timeout_s=120).status == "done"
    job = ws.get_job(second)
    assert job.status == "cancelled" and job.pid is None and job.started is None
    assert "running" not in ws.tail(f"jobs/{second}.log")


def test_slot_rules() -> None:
    assert jobs.device_slot("cpu") == "cpu" and jobs.device_slot("1") == "cuda:1"
    assert jobs.device_slot("cuda:2") == "cuda:2"
    assert jobs.slot_limit({}, "cuda:0") == 1 and jobs.slot_limit({}, "cpu") == float("inf")
    assert jobs.slot_limit({"cuda": 2}, "cuda:1") == 2 and jobs.slot_limit({"cuda": 2, "cuda:1": 3}, "cuda:1") == 3


def test_set_job_slots_refuses_absurd_values(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "w")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(SpurAuditError, match="whole number"):
            jobs.set_job_slots(ws, "cuda", bad)
    with pytest.raises(SpurAuditError, match="unknown device"):
        jobs.set_job_slots(ws, "tpu", 1)
    assert jobs.set_job_slots(ws, "cuda:1", 2) == {"cuda:1": 2}


def test_job_slots_cli_shows_and_sets(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = str(tmp_path / "w")
    code, out = _cli(capsys, "job", "slots", "--workspace", root, "--json")
    assert code == 0 and json.loads(out) == {"job_slots": {}}
    code, out = _cli(capsys, "job", "slots", "--workspace", root, "--device", "cuda", "--limit", "2", "--json")
    assert code == 0 and json.loads(out) == {"job_slots": {"cuda": 2}}
    code, out = _cli(capsys, "job", "slots", "--workspace", root, "--device", "cuda", "--json")
    assert code == 2 and "both --device and --limit" in json.loads(out)["error"]
