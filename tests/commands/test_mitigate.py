"""`python -m core mitigate` / `compare` (core/commands/mitigate.py): --json output, errors as JSON, --set
parsing, sweeps, the method names the help lists."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.commands.mitigate import METHODS_HELP, parse_set
from core.errors import SpurAuditError
from core.mitigate.registry import METHOD_CHOICES

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "mitigate"))
from _workspace import small_workspace  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return small_workspace(tmp_path_factory.mktemp("ws"))


def _cli(workspace, command: str, *args: str, one_thread: bool = True) -> subprocess.CompletedProcess:
    """``python -m core COMMAND --workspace W --json --dataset bm --model cnn ARGS`` in a subprocess."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **({"OMP_NUM_THREADS": "1"} if one_thread else {})}
    return subprocess.run([sys.executable, "-m", "core", command, "--workspace", str(workspace.root), "--json",
                           "--dataset", "bm", "--model", "cnn", *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_cli_mitigate_json_parses(workspace):
    out = _cli(workspace, "mitigate", "--method", "head-tuning", "--device", "cpu",
               "--set", "k_per_class=5", "--set", "epochs=1", "--set", "spuriosity_source=bias")
    assert out.returncode == 0, out.stderr[-2000:]
    payload = json.loads(out.stdout)
    assert payload["status"] == "done" and payload["method"] == "head-tuning"
    assert workspace.get_run(payload["run_id"]).status == "done"


def test_cli_errors_are_json(workspace):
    out = _cli(workspace, "compare", "--methods", "head-tuning,ffw", "--sweep", "gamma=1,10", one_thread=False)
    assert out.returncode == 2
    assert "exactly one method" in json.loads(out.stdout)["error"]


def test_parse_set():
    assert parse_set(["gamma=10", "structured=true", "name=x"]) == {"gamma": 10, "structured": True, "name": "x"}
    with pytest.raises(SpurAuditError):
        parse_set(["gamma"])


def test_cli_compare_sweep_json(workspace):
    out = _cli(workspace, "compare", "--methods", "head-tuning", "--sweep", "k_per_class=3,6",
               "--set", "head-tuning.epochs=1", "--set", "spuriosity_source=bias", "--device", "cpu")
    assert out.returncode == 0, out.stderr[-2000:]
    payload = json.loads(out.stdout)
    run = workspace.get_run(payload["run_id"])
    assert run.method == "sweep" and run.status == "done"
    assert [r["value"] for r in payload["metrics"]["summary"]] == [3, 6]
    assert run.artifacts["figure_json"].is_file()


def test_the_help_lists_the_method_table():
    assert METHODS_HELP == ", ".join(METHOD_CHOICES) == "head-tuning, error-tuning, dcwp, ffw, jtt, mrm, erm"
