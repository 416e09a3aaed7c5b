"""compare / sweep: tables (JSON, Markdown), figures, per-class gaps; nothing selected on test."""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _tiny import tiny_data, tiny_model, train_vanilla  # noqa: E402

from core.errors import SpurAuditError
from core.mitigate.compare import compare, parse_sweep, sweep
from core.mitigate.head_tuning import ranking_from_scores
from core.workspace import Workspace

torch.set_num_threads(1)
HT = {"spuriosity_source": "bias", "k_per_class": 30, "epochs": 2, "lr": 0.05}


@pytest.fixture(scope="module")
def trained():
    data = tiny_data(k=2, rho=0.97, n_train=300, n_val=160, n_test=120)
    return data, train_vanilla(tiny_model(), data, steps=6, lr=3e-3)


def test_compare_writes_json_markdown_and_figure(trained, tmp_path):
    data, model = trained
    ranking = ranking_from_scores(data.aligned_test.float().numpy(), data.y_test.numpy(), 2)
    res = compare(data, model, ["head-tuning", "error-tuning"], seeds=[0, 1],
                  configs={"head-tuning": HT, "error-tuning": {"spuriosity_source": "bias", "epochs": 1}},
                  ranking=ranking, device="cpu")
    assert list(res.summary["method"]) == ["vanilla", "head-tuning", "error-tuning"]
    assert (res.runs["method"] == "head-tuning").sum() == 2
    assert set(res.gaps["method"]) == {"vanilla", "head-tuning", "error-tuning"}
    assert np.isfinite(res.pooled_gaps["vanilla"])
    ws = Workspace(tmp_path / "ws")
    paths = res.save(ws, "runs/cmp")
    payload = json.loads(ws.path(paths["comparison_json"]).read_text())
    assert {r["method"] for r in payload["summary"]} == {"vanilla", "head-tuning", "error-tuning"}
    md = ws.path(paths["comparison_md"]).read_text()
    assert md.count("\n| ") >= 4 and "head-tuning" in md
    fig = json.loads(ws.path(paths["figure_json"]).read_text())
    names = {t.get("name") for t in fig["data"]}
    assert "unbiased" in names and "gap: head-tuning" in names


def test_compare_does_not_read_test_labels_for_selection(trained):
    data, model = trained
    a = compare(data, model, ["head-tuning"], configs={"head-tuning": HT}, device="cpu")
    b = compare(data.without_test_labels(), model, ["head-tuning"], configs={"head-tuning": HT}, device="cpu")
    ra, rb = a.results["head-tuning"][0], b.results["head-tuning"][0]
    assert torch.equal(ra.model.head.weight, rb.model.head.weight)


def test_compare_validates_names(trained):
    data, model = trained
    with pytest.raises(SpurAuditError, match="mitigation method"):
        compare(data, model, ["head-tuning", "nope"], device="cpu")
    with pytest.raises(SpurAuditError, match="configs given"):
        compare(data, model, ["head-tuning"], configs={"ffw": {}}, device="cpu")


def test_sweep_gives_curves(trained, tmp_path):
    data, model = trained
    res = sweep(data, model, "head-tuning", "k_per_class", [10, 40], config=HT, device="cpu")
    assert list(res.summary["value"]) == [10, 40] and len(res.runs) == 2
    fig = res.figure()
    assert len(fig.data) == 2 and fig.layout.title.text.startswith("head-tuning")
    ws = Workspace(tmp_path / "ws")
    out = res.save(ws, "runs/sw")
    assert "k_per_class" in ws.path(out["sweep_md"]).read_text()


def test_parse_sweep():
    assert parse_sweep("gamma=1,10,100") == ("gamma", [1, 10, 100])
    assert parse_sweep("structured=true,false") == ("structured", [True, False])
    with pytest.raises(SpurAuditError):
        parse_sweep("gamma")
