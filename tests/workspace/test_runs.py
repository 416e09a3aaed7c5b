"""Issue 15, item 2: a run records the process that owns it and a heartbeat; a run whose process is
gone (``kill -9``, OOM, reboot) or silent too long is marked failed with the reason when runs are
listed (`core.runs.reconcile_runs`, the CLI's ``run list`` and the dashboard call it)."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import runs
from core.errors import SpurAuditError
from core.mitigate.jobs import relaunch_params
from core.workspace import SCHEMA_VERSION, Workspace
from tests.workspace._cli import REPO, cli, no_traceback
from tests.workspace.test_workspace import V1_SQL

_TRACKED = """
import sys, time
from core.runs import track_run
from core.workspace import Workspace
ws = Workspace(sys.argv[1])
run_id = ws.add_run(method="erm", dataset=None, model=None)
with track_run(ws, run_id, heartbeat_s=0.1):
    print(run_id, flush=True)
    time.sleep(float(sys.argv[2]))
    ws.update_run(run_id, status="done")
"""


def _start(root: Path, seconds: float) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", _TRACKED, str(root), str(seconds)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return proc, int(proc.stdout.readline())


def test_a_run_records_its_owner_and_beats(tmp_path):
    ws = Workspace(tmp_path / "w")
    rid = ws.add_run(method="erm", dataset=None, model=None)
    run = ws.get_run(rid)
    assert run.owner_pid == os.getpid() and run.owner_host and run.heartbeat is None
    with runs.track_run(ws, rid, heartbeat_s=0.05):
        first = ws.get_run(rid).heartbeat
        time.sleep(0.3)
        assert ws.get_run(rid).heartbeat > first
        assert runs.reconcile_runs(ws) == []            # alive and beating: left alone
    assert ws.get_run(rid).status == "running"          # the body sets the outcome, not the tracker


def test_failures_inside_track_run_are_recorded(tmp_path):
    ws = Workspace(tmp_path / "w")
    rid = ws.add_run(method="erm", dataset=None, model=None)
    with pytest.raises(RuntimeError):
        with runs.track_run(ws, rid):
            raise RuntimeError("diverged")
    run = ws.get_run(rid)
    assert run.status == "failed" and run.error == "RuntimeError: diverged"
    rid = ws.add_run(method="erm", dataset=None, model=None)
    with pytest.raises(KeyboardInterrupt):
        with runs.track_run(ws, rid):
            raise KeyboardInterrupt
    assert ws.get_run(rid).status == "cancelled"


def test_killed_owner_is_reconciled(tmp_path):
    root = tmp_path / "w"
    ws = Workspace(root)
    proc, rid = _start(root, 60)
    try:
        time.sleep(0.3)
        assert runs.reconcile_runs(ws) == [] and ws.get_run(rid).status == "running"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    assert runs.reconcile_runs(ws) == [rid]
    run = ws.get_run(rid)
    assert run.status == "failed" and f"pid {proc.pid}" in run.error and "gone" in run.error
    assert runs.reconcile_runs(ws) == []                # once


def test_cli_run_list_reconciles(tmp_path):
    root = tmp_path / "w"
    Workspace(root)
    proc, rid = _start(root, 60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    out = cli("run", "list", "--json", workspace=root)
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert listed["reconciled"] == [rid] and listed["runs"][0]["status"] == "failed"
    shown = cli("run", "show", str(rid), workspace=root)
    assert shown.returncode == 0 and "gone" in shown.stdout and no_traceback(shown)
    assert cli("run", "show", "999", workspace=root).returncode == 2


def test_reused_pid_and_silent_owner(tmp_path):
    ws = Workspace(tmp_path / "w")
    me = runs.process_identity()
    # a row naming this very pid but another process start (the pid was reused): the owner is gone
    rid = ws.add_run(method="erm", dataset=None, model=None)
    ws.set_run_owner(rid, pid=me["pid"], host=me["host"], token="boot:1")
    # a live owner whose heartbeat stopped long ago: hung
    hung = ws.add_run(method="erm", dataset=None, model=None)
    ws.set_run_owner(hung, **me, heartbeat=time.time() - 3600)
    # another machine's run: only its heartbeat can tell
    remote = ws.add_run(method="erm", dataset=None, model=None)
    ws.set_run_owner(remote, pid=1, host="elsewhere", token="", heartbeat=time.time())
    assert sorted(runs.reconcile_runs(ws, stale_after_s=60)) == sorted([rid, hung])
    assert "gone" in ws.get_run(rid).error and "no heartbeat" in ws.get_run(hung).error
    assert ws.get_run(remote).status == "running"
    ws.set_run_owner(remote, pid=1, host="elsewhere", token="", heartbeat=time.time() - 3600)
    assert runs.reconcile_runs(ws, stale_after_s=60) == [remote]


def test_runs_of_an_older_workspace_are_migrated_and_reconciled(tmp_path):
    root = tmp_path / "old"
    root.mkdir()
    con = sqlite3.connect(root / "audit.db")
    con.executescript(V1_SQL)
    con.execute("INSERT INTO runs (method, status, created, updated) VALUES ('ffw', 'running', "
                "'2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z')")
    con.execute("INSERT INTO runs (method, status, created, updated) VALUES ('erm', 'done', "
                "'2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z')")
    con.commit()
    con.close()
    ws = Workspace(root)
    assert ws.schema_version == SCHEMA_VERSION
    old = ws.list_runs()
    assert [r.status for r in old] == ["running", "done"] and old[0].owner_pid is None
    assert runs.reconcile_runs(ws) == [old[0].id]
    assert "before" in ws.get_run(old[0].id).error and ws.get_run(old[1].id).status == "done"


def test_cli_relaunches_and_clears_only_runs_that_ended_badly(tmp_path):
    """`run relaunch ID` starts a job with the run's own settings; `run clear ID` removes the run and its
    files; both refuse a finished run (exit 2, nothing changed)."""
    root = tmp_path / "w"
    ws = Workspace(root)
    failed = ws.add_run(method="compare", dataset="d", model="m",
                        params={"methods": ["head-tuning", "ffw"], "seeds": [0, 2], "device": "cpu",
                                "configs": {"ffw": {"max_epochs": 2}}, "sweep": None})
    ws.update_run(failed, status="failed", error="RuntimeError: planted")
    single = ws.add_run(method="head-tuning", dataset="d", model="m", params={"config": {"epochs": 3}, "seed": 1})
    ws.update_run(single, status="cancelled", error="cancelled")
    done = ws.add_run(method="erm", dataset="d", model="m")
    ws.update_run(done, status="done")
    ws.write_json(f"{ws.run_dir(failed)}/partial.json", {"epoch": 1})

    out = cli("run", "relaunch", str(failed), "--json", workspace=root)
    assert out.returncode == 0, out.stderr
    job = ws.get_job(json.loads(out.stdout)["job"])
    assert job.kind == "compare" and job.device == "cpu"
    assert job.params["methods"] == ["head-tuning", "ffw"] and job.params["seeds"] == [0, 2]
    assert job.params["configs"] == {"ffw": {"max_epochs": 2}}
    kind, params = relaunch_params(ws.get_run(single))     # (in process: one CLI start less)
    assert kind == "mitigate" and params["method"] == "head-tuning"
    assert params["config"] == {"epochs": 3} and params["seed"] == 1
    with pytest.raises(SpurAuditError, match="not made by a mitigation job"):
        relaunch_params(ws.get_run(ws.add_run(method="audit-gaps", dataset="d", model="m")))

    refused = cli("run", "clear", str(done), workspace=root)
    assert refused.returncode == 2 and "only failed or cancelled" in refused.stderr and no_traceback(refused)
    out = cli("run", "clear", str(failed), workspace=root)
    assert out.returncode == 0, out.stderr
    assert [r.id for r in ws.list_runs()][:2] == [single, done]
    assert not (root / ws.run_dir(failed)).exists()
