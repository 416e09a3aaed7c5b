"""Issue 15, items 6 and 2 end to end through the CLI on a tiny workspace:

* option values are type-checked against the method's config dataclass (the message names the option,
  the expected type and the value; NaN/inf refused) and a refused value records no run — also a value
  of ``--sweep``;
* a CLI ``mitigate`` killed with ``kill -9`` does not stay "running": listing runs marks it failed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from core.cli import main as cli_main
from core.workspace import Workspace
from tests.workspace._cli import REPO, cli, no_traceback

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from core.data import build_dataset, load_manifest
    from core.mitigate.data import MitigationData
    from core.models import build_model, save_workspace_model

    ws = Workspace(tmp_path_factory.mktemp("ws"))
    build_dataset(ws, "biased-mnist", "bm", rho=0.95, n_train=200, n_val=100, n_test=100)
    data = MitigationData.from_manifest(load_manifest(ws, "bm"))
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=10, widths=(8, 16, 32))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(data.x_train), data.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_workspace_model(ws, "cnn", model.eval(), dataset="bm")
    return ws


CASES = [
    (["mitigate", "--method", "head-tuning", "--set", "lr=abc"], "option head-tuning.lr expects a number, got 'abc'"),
    (["mitigate", "--method", "error-tuning", "--set", "lr=abc"], "option error-tuning.lr expects a number, got 'abc'"),
    (["mitigate", "--method", "ffw", "--set", "gamma=abc"], "option ffw.gamma expects a number, got 'abc'"),
    (["mitigate", "--method", "head-tuning", "--set", "lr=NaN"], "option head-tuning.lr expects a number, got nan"),
    (["mitigate", "--method", "head-tuning", "--set", "lr=inf"], "option head-tuning.lr expects a number"),
    (["mitigate", "--method", "dcwp", "--set", "lambda_sparse=abc"],
     "option dcwp.lambda_sparse expects a number, got 'abc'"),
    (["mitigate", "--method", "head-tuning", "--set", "epochs=1.5"], "option head-tuning.epochs expects an integer"),
    (["mitigate", "--method", "ffw", "--set", "structured=maybe"], "option ffw.structured expects true or false"),
    (["compare", "--methods", "erm,ffw", "--set", "ffw.gamma=abc"], "option ffw.gamma expects a number"),
    (["compare", "--methods", "ffw", "--sweep", "gamma=1,abc"], "option ffw.gamma expects a number, got 'abc'"),
    (["compare", "--methods", "ffw", "--sweep", "lr=0.1,NaN"], "option ffw.lr expects a number, got nan"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(c[0][1:]) for c in CASES])
def test_bad_option_values_are_refused_before_a_run_is_recorded(workspace, args, message, capsys):
    before = len(workspace.list_runs())
    code = cli_main([*args, "--dataset", "bm", "--model", "cnn", "--device", "cpu", "--workspace",
                     str(workspace.root)])   # the CLI entry point, in this process (an escaping exception fails)
    err = capsys.readouterr().err
    assert code == 2 and message in err, err[-2000:]
    assert len(workspace.list_runs()) == before


def test_bad_option_value_as_a_subprocess_has_no_traceback(workspace):
    proc = cli("mitigate", "--method", "ffw", "--set", "gamma=abc", "--dataset", "bm", "--model", "cnn",
               workspace=workspace.root)
    assert proc.returncode == 2 and no_traceback(proc) and "option ffw.gamma expects a number" in proc.stderr


def test_killed_cli_mitigate_is_marked_failed_when_runs_are_listed(workspace):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "core", "mitigate", "--workspace", str(workspace.root),
                             "--dataset", "bm", "--model", "cnn", "--method", "erm", "--set", "iterations=100000",
                             "--device", "cpu"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not [r for r in workspace.list_runs(method="erm") if r.status == "running"]:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        (run,) = [r for r in workspace.list_runs(method="erm") if r.status == "running"]
        assert run.owner_pid == proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert workspace.get_run(run.id).status == "running"          # nothing else could record it
    out = json.loads(cli("run", "list", "--json", workspace=workspace.root).stdout)
    assert run.id in out["reconciled"]
    failed = workspace.get_run(run.id)
    assert failed.status == "failed" and f"pid {proc.pid}" in failed.error
