"""End to end over a real workspace: tiny digits-on-textures (with object masks), an untrained
small CNN (seeded), the whole audit (`core.report.run_audit`: `core.audit.pipeline.run_audit` and its
report), human answers overriding machine ones, the files named by `core.audit.artifacts`."""
import numpy as np
import pandas as pd
import pytest

from core.audit.artifacts import audit_files, current_verdicts, load_rankings, load_summary
from core.audit.gaps import GapConfig
from core.audit.pipeline import (run_audit, run_core_crops, run_gaps, run_mask_labels, run_rankings,
                                 run_sensitivity)
from tests.audit.audited_workspace import build_audited_workspace


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    return build_audited_workspace(tmp_path_factory.mktemp("ws"))


def test_run_audit_persists_everything(audited):
    ws, out = audited
    assert out["eval_split"] == "val" and out["n_machine_labels"] == 30          # 10 classes x top 3
    labels = ws.labels("tex", "cnn")
    assert set(labels.source) == {"masks"} and labels.score.between(0, 1).all()
    base = ws.path("audits/tex/cnn")
    for rel in ("discovery.json", "importance.npy", "rankings/train.csv", "rankings/val.csv", "gaps/val.json",
                "gaps/val.csv", "collisions.csv", "summary.json"):
        assert (base / rel).exists(), rel
    ranks = pd.read_csv(base / "rankings/val.csv")
    assert len(ranks) == 60 and set(ranks.columns) >= {"sample_id", "class_index", "spuriosity", "rank_in_class"}
    runs = ws.list_runs(dataset="tex", method="audit-gaps")
    assert len(runs) == 1 and runs[0].status == "done"
    assert runs[0].metrics["pooled_gap"] == pytest.approx(out["pooled_gap"]["gap"], nan_ok=True)
    html = ws.path("reports/tex__cnn.html").read_text()
    assert "Spurious gaps" in html and "data:image/png;base64," in html
    assert (ws.path("reports/tex__cnn") / "labels.csv").exists()


def test_the_audit_writes_the_files_artifacts_names(audited):
    """Every file under audits/tex/cnn/ after the whole audit is one that `AuditFiles` names (no
    other module names them), and `load_summary` reads back what `run_audit` returned."""
    ws, out = audited
    files = audit_files("tex", "cnn")
    named = {files.discovery, files.discovery_table, files.importance, files.verdicts, files.collisions,
             files.collisions_summary, files.summary}
    for split in ("train", "val"):
        named |= {files.ranking_scores(split), files.ranking_meta(split), files.ranking_table(split)}
    named |= {files.gaps_meta("val"), files.gaps_table("val")}
    written = {ws.rel(p) for p in ws.path(files.folder).rglob("*") if p.is_file()}
    assert written == named
    assert ws.rel(out["report"]) == files.report and ws.path(files.exports).is_dir()
    summary = load_summary(ws, "tex", "cnn")
    assert summary["report"] == out["report"] and summary["gaps_run_id"] == out["gaps_run_id"]
    assert set(summary) == set(out)


def test_human_answer_overrides_machine_and_unranks(audited):
    ws, _ = audited
    vt = current_verdicts(ws, "tex", "cnn")
    spur0 = vt[(vt.class_index == 0) & (vt.verdict == "spurious")].feature.tolist()
    if not spur0:                                          # make class 0 have a spurious feature first
        f = int(vt[vt.class_index == 0].feature.iloc[0])
        ws.add_labels([dict(dataset="tex", model="cnn", class_index=0, feature=f, answer="spurious_object",
                            annotator="masks", source="masks", score=0.0)])
        spur0 = [f]
    before = run_rankings(ws, "tex", "cnn", split="val")
    assert 0 not in before.classes_without_spurious
    ws.add_labels([dict(dataset="tex", model="cnn", class_index=0, feature=f, answer="core", annotator="ana",
                        source="human") for f in spur0])
    after = run_rankings(ws, "tex", "cnn", split="val")
    assert 0 in after.classes_without_spurious and np.isnan(after.scores[after.labels == 0]).all()
    loaded = load_rankings(ws, "tex", "cnn", "val")
    np.testing.assert_array_equal(loaded.order, after.order)
    g = run_gaps(ws, "tex", "cnn", split="val", config=GapConfig(n_boot=50))
    row = g["gaps"]["cnn"].per_class.set_index("class_index").loc[0]
    assert not row.ranked and np.isnan(row.gap)


def test_sensitivity_with_object_masks(audited):
    ws, _ = audited
    t = run_sensitivity(ws, "tex", "cnn", split="test", mask_from="object", max_images=20, device="cpu")
    s = t[t.class_index == -1]
    assert set(s.corruption) == {"gray", "blur", "rotate", "noise"} and (s.n == 20).all()
    assert (s.mask_area > 0).all() and (s.mask_area < 1).all()


def test_image_cache_computes_once(audited):
    from core.data import load_manifest
    from core.features.maps import cached_attack, cached_overlay, cached_thumbnail
    from core.models.checkpoints import load_workspace_model

    ws, _ = audited
    man = load_manifest(ws, "tex").split("val")
    model = load_workspace_model(ws, "cnn")
    p1 = cached_overlay(ws, "tex", "cnn", model, man, 3, 2, size=64, device="cpu")
    t1 = p1.stat().st_mtime_ns
    p2 = cached_overlay(ws, "tex", "cnn", model, man, 3, 2, size=64, device="cpu")
    assert p1 == p2 and p2.stat().st_mtime_ns == t1 and ws.rel(p1).startswith("cache/overlays/")
    a = cached_attack(ws, "tex", "cnn", model, man, 3, 2, size=32, steps=5, device="cpu")
    from PIL import Image

    with Image.open(a) as im:
        assert im.size == (32, 32) and im.mode == "RGB"
    with Image.open(cached_thumbnail(ws, "tex", man, 0, size=48)) as im:
        assert im.size == (48, 48)


def test_core_crops_on_workspace(audited):
    ws, _ = audited
    answered = set(map(tuple, ws.labels("tex", "cnn")[["class_index", "feature"]].to_numpy().tolist()))
    fresh = {c: [f for f in range(16) if (c, f) not in answered][:2] for c in range(10)}   # unanswered pairs
    ws.add_labels([dict(dataset="tex", model="cnn", class_index=c, feature=f[0], answer="core", annotator="ana",
                        source="human") for c, f in fresh.items()])
    ws.add_labels([dict(dataset="tex", model="cnn", class_index=c, feature=f[1], answer="spurious_background",
                        annotator="ana", source="human") for c, f in fresh.items()])
    r = run_rankings(ws, "tex", "cnn", split="val")
    assert r.classes_without_spurious == []
    out = run_core_crops(ws, "tex", "cnn", split="val", fraction=0.5, device="cpu")
    assert out["skipped_classes"] == [], out
    assert out["n"] == 30 and 0 <= out["acc_before"] <= 1 and 0 <= out["acc_after"] <= 1
    assert ws.read_json("audits/tex/cnn/crops.json")["n"] == 30


def test_mask_labels_not_duplicated(audited):
    ws, _ = audited
    n = len(ws.labels("tex", "cnn", source="masks"))
    assert run_mask_labels(ws, "tex", "cnn", device="cpu") == 0
    assert len(ws.labels("tex", "cnn", source="masks")) == n


def test_run_audit_without_the_report_step(audited):
    """`core.audit.pipeline.run_audit` writes no report unless the layer above passes the report step
    (`core.report.run_audit` does); ``report=True`` is refused with a pointer to it."""
    ws, _ = audited
    with pytest.raises(TypeError, match="core.report.run_audit"):
        run_audit(ws, "tex", "cnn", report=True)
    report = ws.path(audit_files("tex", "cnn").report)
    report.unlink()
    out = run_audit(ws, "tex", "cnn", k=3, label_source="existing", device="cpu")
    assert "report" not in out and not report.exists()
    assert "report" not in load_summary(ws, "tex", "cnn")
