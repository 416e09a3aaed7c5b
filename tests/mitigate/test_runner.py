"""Workspace runs: run_mitigation records a run with artifacts; job kinds; the CLI's --json output."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.errors import SpurAuditError
from core.workspace import Workspace

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from core.data import build_dataset
    from core.mitigate.common import MitigationData
    from core.data import load_manifest
    from core.models.checkpoints import save_workspace_model
    from core.models.registry import build_model

    ws = Workspace(tmp_path_factory.mktemp("ws"))
    build_dataset(ws, "biased-mnist", "bm", rho=0.95, n_train=200, n_val=100, n_test=100)
    data = MitigationData.from_manifest(load_manifest(ws, "bm"))
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=10, widths=(8, 16, 32))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(model(data.x_train), data.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_workspace_model(ws, "cnn", model.eval(), dataset="bm")
    return ws


def test_run_mitigation_records_a_run(workspace):
    from core.mitigate.runner import run_mitigation

    seen = []
    run_id = run_mitigation(workspace, dataset="bm", model="cnn", method="head-tuning",
                            config={"k_per_class": 5, "epochs": 2, "spuriosity_source": "bias"}, seed=0,
                            device="cpu", progress=lambda f, m: seen.append(f))
    run = workspace.get_run(run_id)
    assert run.status == "done" and run.method == "head-tuning" and run.dataset == "bm"
    assert {"model", "metrics", "history", "config"} <= set(run.artifacts)
    assert all(p.is_file() for p in run.artifacts.values())
    assert str(run.artifacts["model"]).startswith(str(workspace.path(f"runs/{run_id}")))
    assert "test" in run.metrics and "unbiased_accuracy" in run.metrics["test"]
    assert seen and seen[-1] == 1.0
    from core.models.checkpoints import load_masked_model

    model = load_masked_model(workspace.load_torch(workspace.rel(run.artifacts["model"])))
    assert model.num_classes == 10


def test_failed_run_is_marked_failed(workspace, monkeypatch):
    from core.mitigate import common
    from core.mitigate.runner import run_mitigation

    common._import_method_modules()

    def broken(data, *, base_model, config=None, seed=0, device="cpu", progress=None):
        raise SpurAuditError("broken on purpose")

    monkeypatch.setitem(common.METHODS, "head-tuning", broken)
    with pytest.raises(SpurAuditError, match="broken on purpose"):
        run_mitigation(workspace, dataset="bm", model="cnn", method="head-tuning", device="cpu")
    last = workspace.list_runs(method="head-tuning")[-1]
    assert last.status == "failed" and "broken on purpose" in last.error
    with pytest.raises(SpurAuditError, match="mitigation method"):
        run_mitigation(workspace, dataset="bm", model="cnn", method="nope", device="cpu")


def test_bad_options_fail_before_anything_is_recorded(workspace):
    from core.mitigate.runner import run_comparison, run_mitigation

    before = len(workspace.list_runs())
    with pytest.raises(SpurAuditError, match="bogus"):
        run_mitigation(workspace, dataset="bm", model="cnn", method="head-tuning", config={"bogus": 1}, device="cpu")
    with pytest.raises(SpurAuditError, match="structured=true"):
        run_mitigation(workspace, dataset="bm", model="cnn", method="ffw",
                       config={"structured_rule": "bias-rank"}, device="cpu")
    with pytest.raises(SpurAuditError, match="gamma"):
        run_comparison(workspace, dataset="bm", model="cnn", methods=["erm", "ffw"], configs={"ffw": {"gamma": -1}},
                       device="cpu")
    assert len(workspace.list_runs()) == before


def test_job_kinds_are_registered():
    from core.jobs import load_job_kinds

    kinds = load_job_kinds()
    assert "mitigate" in kinds and "compare" in kinds


def test_cli_mitigate_json_parses(workspace):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "core", "mitigate", "--workspace", str(workspace.root), "--json",
                          "--dataset", "bm", "--model", "cnn", "--method", "head-tuning", "--device", "cpu",
                          "--set", "k_per_class=5", "--set", "epochs=1", "--set", "spuriosity_source=bias"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    payload = json.loads(out.stdout)
    assert payload["status"] == "done" and payload["method"] == "head-tuning"
    assert workspace.get_run(payload["run_id"]).status == "done"


def test_cli_errors_are_json(workspace):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "core", "compare", "--workspace", str(workspace.root), "--json",
                          "--dataset", "bm", "--model", "cnn", "--methods", "head-tuning,ffw", "--sweep", "gamma=1,10"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 2
    assert "exactly one method" in json.loads(out.stdout)["error"]


def test_parse_set():
    from core.commands.mitigate import parse_set

    assert parse_set(["gamma=10", "structured=true", "name=x"]) == {"gamma": 10, "structured": True, "name": "x"}
    with pytest.raises(SpurAuditError):
        parse_set(["gamma"])


def test_run_uses_audit_rankings_and_records_gaps(workspace, monkeypatch):
    import numpy as np

    from core.data import load_manifest
    from core.mitigate import runner
    from core.mitigate.head_tuning import ranking_from_scores

    manifest = load_manifest(workspace, "bm")

    def fake_rankings(ws, dataset, model, split):   # a saved audit ranking: bias-aligned images rank high
        sub = manifest.split(split)
        return ranking_from_scores(sub.aligned.astype(np.float32), sub.labels, 10)

    monkeypatch.setattr(runner, "load_ranking", fake_rankings)
    run_id = runner.run_mitigation(workspace, dataset="bm", model="cnn", method="head-tuning",
                                   config={"k_per_class": 5, "epochs": 1}, device="cpu")
    run = workspace.get_run(run_id)
    assert run.metrics["spuriosity_source"] == "given"
    assert run.metrics["notes"]["spuriosity"].startswith("audit rankings")
    assert run.metrics["gaps"]["split"] == "test" and run.metrics["gaps"]["before"] is not None
    gaps = json.loads(run.artifacts["gaps"].read_text())
    assert len(gaps["before"]) == 10 and len(gaps["after"]) == 10


def test_cli_compare_sweep_json(workspace):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "core", "compare", "--workspace", str(workspace.root), "--json",
                          "--dataset", "bm", "--model", "cnn", "--methods", "head-tuning", "--sweep", "k_per_class=3,6",
                          "--set", "head-tuning.epochs=1", "--set", "spuriosity_source=bias", "--device", "cpu"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    payload = json.loads(out.stdout)
    run = workspace.get_run(payload["run_id"])
    assert run.method == "sweep" and run.status == "done"
    assert [r["value"] for r in payload["metrics"]["summary"]] == [3, 6]
    assert run.artifacts["figure_json"].is_file()
