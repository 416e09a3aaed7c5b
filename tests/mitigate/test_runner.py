"""Workspace runs (core/mitigate/runner.py): run_mitigation records a run with artifacts, failures and bad
options, audit rankings and gaps."""
import json

import pytest
import torch

from core.errors import SpurAuditError
from core.mitigate import registry, runner
from core.mitigate.runner import run_comparison, run_mitigation

from _workspace import small_workspace

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return small_workspace(tmp_path_factory.mktemp("ws"))


def test_run_mitigation_records_a_run(workspace):
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
    def broken(data, *, base_model, config=None, seed=0, device="cpu", progress=None):
        raise SpurAuditError("broken on purpose")

    monkeypatch.setitem(registry.METHODS, "head-tuning", broken)
    with pytest.raises(SpurAuditError, match="broken on purpose"):
        run_mitigation(workspace, dataset="bm", model="cnn", method="head-tuning", device="cpu")
    last = workspace.list_runs(method="head-tuning")[-1]
    assert last.status == "failed" and "broken on purpose" in last.error
    with pytest.raises(SpurAuditError, match="mitigation method"):
        run_mitigation(workspace, dataset="bm", model="cnn", method="nope", device="cpu")


def test_bad_options_fail_before_anything_is_recorded(workspace):
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


def test_run_uses_audit_rankings_and_records_gaps(workspace, monkeypatch):
    import numpy as np

    from core.data import load_manifest
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
