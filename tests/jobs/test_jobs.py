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
        ws.update_job(never, heartbeat=time.time() - 500)
        ws.update_job(fresh, heartbeat=time.time())
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
