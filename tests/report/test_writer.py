"""`core.report` on a real audited workspace: the context's sections, the exports, where the report goes."""
import pandas as pd
import pytest

from core.audit.artifacts import audit_files, report_path
from core.report import build_report_context, export_tables, write_report
from core.report.context import verdict_rule
from tests.audit.audited_workspace import build_audited_workspace


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    return build_audited_workspace(tmp_path_factory.mktemp("ws"))


def test_context_has_every_section(audited):
    ws, out = audited
    seen = []
    ctx = build_report_context(ws, "tex", "cnn", split="val", max_classes=2, n_images=2,
                               progress=lambda f, m="": seen.append(f))
    assert ctx["title"] == "SpurAudit report — tex / cnn" and ctx["split"] == "val" and ctx["k"] == 3
    assert [c["index"] for c in ctx["classes"]] == [0, 1] and len(ctx["rankings"]) == 2
    assert all(len(f["images"]) == 2 for c in ctx["classes"] for f in c["features"])     # min(n_images, 3)
    assert len(ctx["gaps"]) == 10 and ctx["pooled"] == out["pooled_gap"]
    assert len(ctx["figures"]) == 2                      # gap bars + high-vs-low scatter (one model, no sensitivity)
    assert ctx["crops"] is None and ctx["sensitivity"] == [] and ctx["runs"] == []
    assert ctx["dataset"]["summary"]["images"] == 200 and ctx["model"]["summary"]["arch"] == "small_cnn"
    assert seen == sorted(seen) and seen[-1] == 0.95


def test_verdict_rule_names_the_quorum():
    assert "a strict majority" in verdict_rule(None) and "at least 3" in verdict_rule(3)


def test_exports_and_report_path(audited):
    ws, _ = audited
    paths = export_tables(ws, "tex", "cnn", split="val")
    assert set(paths) == {"labels_csv", "labels_json", "verdicts_csv", "rankings_csv", "rankings_json",
                          "gaps_csv", "gaps_json"}
    assert all(ws.rel(p).startswith(audit_files("tex", "cnn").exports + "/") for p in paths.values())
    ranks = pd.read_csv(paths["rankings_csv"])
    assert len(ranks) == 60
    assert export_tables(ws, "tex", "cnn", split="test").keys() == {"labels_csv", "labels_json", "verdicts_csv"}
    path = write_report(ws, "tex", "cnn", split="val", max_classes=1)
    assert path == report_path(ws, "tex", "cnn") and path.read_text().startswith("<!DOCTYPE html>")
