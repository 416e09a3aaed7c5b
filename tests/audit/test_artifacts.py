"""`core.audit.artifacts`: the names of the audit's files and what the readers return when a file is
missing (None for optional results; a message naming the command for what later steps need)."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from core.audit import artifacts
from core.errors import SpurAuditError
from core.workspace import RunRecord, Workspace


def test_file_names():
    files = artifacts.audit_files("tex", "cnn")
    assert files.folder == artifacts.audit_dir("tex", "cnn") == "audits/tex/cnn"
    assert (files.discovery, files.importance, files.verdicts) == \
        ("audits/tex/cnn/discovery.json", "audits/tex/cnn/importance.npy", "audits/tex/cnn/verdicts.csv")
    assert files.ranking_scores("val") == "audits/tex/cnn/rankings/val.scores.npy"
    assert (files.ranking_meta("val"), files.ranking_table("val")) == \
        ("audits/tex/cnn/rankings/val.json", "audits/tex/cnn/rankings/val.csv")
    assert (files.gaps_meta("test"), files.gaps_table("test")) == \
        ("audits/tex/cnn/gaps/test.json", "audits/tex/cnn/gaps/test.csv")
    assert (files.collisions, files.crops, files.sensitivity, files.summary) == \
        ("audits/tex/cnn/collisions.csv", "audits/tex/cnn/crops.json", "audits/tex/cnn/sensitivity.csv",
         "audits/tex/cnn/summary.json")
    assert (files.report, files.exports) == ("reports/tex__cnn.html", "reports/tex__cnn")


def test_missing_files(tmp_path):
    ws = Workspace(tmp_path / "w")
    for load in (artifacts.load_collisions, artifacts.load_crops, artifacts.load_sensitivity,
                 artifacts.load_summary):
        assert load(ws, "tex", "cnn") is None
    for load in (artifacts.load_gaps, artifacts.load_gaps_table, artifacts.load_ranking_table):
        assert load(ws, "tex", "cnn", "val") is None
    assert not artifacts.has_discovery(ws, "tex", "cnn") and not artifacts.has_ranking(ws, "tex", "cnn", "val")
    assert artifacts.audited_models(ws, "tex") == [] and not artifacts.report_path(ws, "tex", "cnn").exists()
    with pytest.raises(SpurAuditError, match="python -m core discover --dataset tex --model cnn"):
        artifacts.load_discovery(ws, "tex", "cnn")
    with pytest.raises(SpurAuditError, match="python -m core rank --dataset tex --model cnn --split val"):
        artifacts.load_rankings(ws, "tex", "cnn", "val")


def test_present_files(tmp_path):
    ws = Workspace(tmp_path / "w")
    files = artifacts.audit_files("tex", "cnn")
    ws.write_json(files.ranking_meta("val"), {})
    ws.write_json(files.summary, {"eval_split": "val"})
    ws.write_json(artifacts.audit_files("tex", "other").discovery, {})
    ws.write_text(files.sensitivity, "class_index,mask_source\n-1,core\n")
    assert artifacts.ranked_splits(ws, "tex", "cnn", ["train", "val", "test"]) == ["val"]
    assert artifacts.audited_models(ws, "tex") == ["cnn"]                      # "other" never finished
    assert artifacts.has_discovery(ws, "tex", "other") and not artifacts.has_discovery(ws, "tex", "cnn")
    assert artifacts.load_summary(ws, "tex", "cnn") == {"eval_split": "val"}
    pd.testing.assert_frame_equal(artifacts.load_sensitivity(ws, "tex", "cnn"),
                                  pd.DataFrame({"class_index": [-1], "mask_source": ["core"]}))


def _run(tmp_path: Path, **artifact_files) -> RunRecord:
    return RunRecord(id=1, method="compare", dataset="tex", model="cnn", params={}, metrics={}, status="done",
                     artifacts={k: tmp_path / v for k, v in artifact_files.items()}, error=None, created="",
                     updated="")


def test_run_artifacts(tmp_path):
    (tmp_path / "comparison.json").write_text(json.dumps({"summary": [{"method": "vanilla"}]}))
    (tmp_path / "gaps.json").write_text(json.dumps({"before": [], "after": []}))
    (tmp_path / "figure.json").write_text(go.Figure(go.Bar(x=[1], y=[np.float64(2)])).to_json())
    run = _run(tmp_path, comparison_json="comparison.json", gaps="gaps.json", figure_json="figure.json")
    assert artifacts.load_comparison(run) == {"summary": [{"method": "vanilla"}]}
    assert artifacts.load_run_gaps(run) == {"before": [], "after": []}
    assert list(artifacts.load_comparison_figure(run).data[0].y) == [2]
    empty = _run(tmp_path, gaps="gone.json")
    assert artifacts.load_comparison(empty) is None and artifacts.load_run_gaps(empty) is None
    assert artifacts.load_comparison_figure(empty) is None
