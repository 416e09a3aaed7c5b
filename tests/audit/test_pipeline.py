"""End to end over a real workspace: tiny digits-on-textures (with object masks), an untrained
small CNN (seeded), `run_audit`, the CLI, human answers overriding machine ones."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from core.audit.gaps import GapConfig
from core.audit.pipeline import (current_verdicts, load_rankings, run_audit, run_gaps, run_rankings,
                                 run_sensitivity)
from core.cli import main as cli_main


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    from core.data import build_dataset
    from core.models.checkpoints import save_workspace_model
    from core.models.registry import build_model
    from core.workspace import Workspace

    torch.manual_seed(0)
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    build_dataset(ws, "digits-on-textures", "tex", n_train=100, n_val=60, n_test=40, size=32,
                  digit_size=(16, 24), rho=0.95)
    model = build_model("small_cnn", num_classes=10, widths=(8, 16, 16))
    save_workspace_model(ws, "cnn", model, dataset="tex")
    out = run_audit(ws, "tex", "cnn", k=3, device="cpu")
    return ws, out


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


def test_cli_gaps_json_and_label_roundtrip(audited, capsys, tmp_path):
    ws, _ = audited
    code = cli_main(["gaps", "--workspace", str(ws.root), "--dataset", "tex", "--model", "cnn", "--split", "val",
                     "--n-boot", "100", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and "cnn" in out["pooled"] and len(out["per_class"]) == 10
    code = cli_main(["label", "add", "--workspace", str(ws.root), "--dataset", "tex", "--model", "cnn",
                     "--class", "2", "--feature", "1", "--answer", "spurious_background", "--annotator", "bo",
                     "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out) == {"written": 1}
    code = cli_main(["label", "export", "--workspace", str(ws.root), "--dataset", "tex", "--model", "cnn",
                     "--out", str(tmp_path / "l.csv"), "--json"])
    capsys.readouterr()
    assert code == 0 and "spurious_background,bo" in (tmp_path / "l.csv").read_text()
    code = cli_main(["label", "add", "--workspace", str(ws.root), "--dataset", "nope", "--model", "cnn",
                     "--class", "2", "--feature", "1", "--answer", "core", "--annotator", "bo", "--json"])
    assert code == 2 and "error" in json.loads(capsys.readouterr().out)


def test_sensitivity_with_object_masks(audited):
    ws, _ = audited
    t = run_sensitivity(ws, "tex", "cnn", split="test", mask_from="object", max_images=20, device="cpu")
    s = t[t.class_index == -1]
    assert set(s.corruption) == {"gray", "blur", "rotate", "noise"} and (s.n == 20).all()
    assert (s.mask_area > 0).all() and (s.mask_area < 1).all()


def test_image_cache_computes_once(audited):
    from core.audit.pipeline import load_audit_model
    from core.data import load_manifest
    from core.features.maps import cached_attack, cached_overlay, cached_thumbnail

    ws, _ = audited
    man = load_manifest(ws, "tex").split("val")
    model = load_audit_model(ws, "cnn")
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
    from core.audit.pipeline import run_core_crops

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
    from core.audit.pipeline import run_mask_labels

    ws, _ = audited
    n = len(ws.labels("tex", "cnn", source="masks"))
    assert run_mask_labels(ws, "tex", "cnn", device="cpu") == 0
    assert len(ws.labels("tex", "cnn", source="masks")) == n


def test_cli_report_with_attacks(audited, capsys):
    ws, _ = audited
    code = cli_main(["report", "--workspace", str(ws.root), "--dataset", "tex", "--model", "cnn", "--split", "val",
                     "--max-classes", "1", "--attack-steps", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["path"].endswith("reports/tex__cnn.html")
    attacks = list(ws.path("cache/attacks").rglob("*_3_0_96.png"))          # steps 3, seed 0, size 96
    assert len(attacks) == 3                                     # one per top feature of the one class shown
    html = ws.path("reports/tex__cnn.html").read_text()
    assert html.count('alt="activation map"') == 3 * (3 + 1)     # 3 overlays + 1 attack per feature


def test_job_kinds(audited):
    from core.jobs import load_job_kinds

    ws, _ = audited
    kinds = load_job_kinds()
    seen = []
    out = kinds["report"](ws, {"dataset": "tex", "model": "cnn", "split": "val", "max_classes": 1},
                          lambda f, m: seen.append(f))
    assert out["report_rel"] == "reports/tex__cnn.html" and seen and max(seen) == 1.0
    res = kinds["audit-step"](ws, {"step": "gaps", "dataset": "tex", "model": "cnn", "split": "val"},
                              lambda f, m: None)
    assert "cnn" in res["pooled"] and res["run_id"] >= 1
