"""The study over a real (tiny) workspace: digits-on-textures, the ranking of the val split written as the
audit writes it (score = "the background is the class's own texture", so the bias-aligned images rank
high), and models of every family: workspace models (one with stored logits, one predicted through the
photo pipeline), ``small_cnn@<checkpoint>`` and ``clip-zeroshot:<tiny>`` (random init: no CLIP weights are
downloadable here, so its numbers mean nothing; the test checks the path). Resume, files, figures, the
CLI and the job kind."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core import jobs
from core.audit.artifacts import audit_files
from core.cli import main
from core.data import build_dataset, load_manifest
from core.errors import SpurAuditError
from core.features.extract import extract_splits
from core.models.checkpoints import save_model
from core.models.workspace_models import train_workspace_model
from core.models.registry import build_model
from core.study import list_studies, load_study, run_study
from core.study.specs import parse_model_specs
from core.workspace import Workspace
from tests.concepts.tiny_clip import register_tiny_clip


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    folder = tmp_path_factory.mktemp("clipcfg")
    register_tiny_clip(folder)
    torch.manual_seed(0)
    w = Workspace(tmp_path_factory.mktemp("ws"))
    build_dataset(w, "digits-on-textures", "tex", n_train=300, n_val=200, n_test=20, size=32, digit_size=(16, 24),
                  rho=0.9)
    for seed, name in enumerate(("cnn", "other")):    # a few epochs: enough to pick up the texture cue
        train_workspace_model(w, name, dataset="tex", model_kwargs={"widths": (8, 16, 16)}, device="cpu",
                              config={"epochs": 4, "batch_size": 32, "lr": 3e-3, "seed": seed})
    extract_splits(w, "tex", "cnn", ["val"], device="cpu")
    val = load_manifest(w, "tex").split("val")
    aligned = val.aligned.astype(np.float32)
    scores = aligned + np.random.default_rng(0).random(len(val)).astype(np.float32) * 0.5
    files = audit_files("tex", "cnn")
    w.save_npy(files.ranking_scores("val"), scores)
    w.write_json(files.ranking_meta("val"), {"spurious": {str(c): [0] for c in range(10)},
                                             "classes_without_spurious": []})
    return w


def test_specs_accept_every_family_and_refuse_bad_ones(ws: Workspace, tmp_path: Path) -> None:
    ckpt = tmp_path / "net.pt"
    ckpt.write_bytes(b"x")
    specs = parse_model_specs(["cnn", f"mine=small_cnn@{ckpt}", "clip-zeroshot:ViT-B-32", "cnn"],
                              workspace_models=["cnn"])
    assert [s.label for s in specs] == ["cnn", "mine", "clip-zeroshot:ViT-B-32", "cnn#2"]
    assert [s.source for s in specs] == ["workspace", "arch", "arch", "workspace"]
    with pytest.raises(SpurAuditError, match="neither a workspace model"):
        parse_model_specs(["nosuch"], workspace_models=["cnn"])
    with pytest.raises(SpurAuditError, match="has no weights"):
        parse_model_specs(["timm:resnet18"])
    with pytest.raises(SpurAuditError, match="does not exist"):
        parse_model_specs(["resnet50@/no/such/file.pth"])


def test_study_of_four_families_resumes_and_saves_everything(ws: Workspace, tmp_path: Path) -> None:
    torch.manual_seed(1)
    ckpt = tmp_path / "foreign.pt"                       # a plain state dict of the default small_cnn
    torch.save(build_model("small_cnn", num_classes=10).state_dict(), ckpt)
    ours = tmp_path / "ours.pt"                          # a SpurAudit checkpoint (its options inside)
    save_model(build_model("small_cnn", num_classes=10, widths=(8, 16, 16)), ours)
    models = ["other", f"foreign=small_cnn@{ckpt}", f"ours=small_cnn@{ours}", "zs=clip-zeroshot:spuraudit-tiny-clip"]
    cfg = dict(dataset="tex", ranking_model="cnn", models=models, split="val", n_boot=100, device="cpu",
               num_workers=0, batch_size=32)
    out = run_study(ws, cfg)
    assert out["name"] == "tex__cnn__val" and out["n_models"] == 5
    rows = {m["model"]: m for m in out["models"]}
    assert [m["model"] for m in out["models"]] == ["cnn", "other", "foreign", "ours", "zs"]
    assert rows["cnn"]["source"] == "feature store logits"
    assert rows["other"]["source"] == rows["foreign"]["source"] == rows["ours"]["source"] == rows["zs"]["source"] == "predicted (logits only)"
    for m in rows.values():
        assert m["gap"] == pytest.approx(m["acc_high"] - m["acc_low"])
        assert 0 <= m["accuracy"] <= 1
    # the stored-logits path and the pipeline path agree for the same model
    fs_preds = np.asarray(ws.open_npy("studies/tex__cnn__val/preds/0.npy"))
    again = run_study(ws, {**cfg, "models": ["cnn"], "include_ranking_model": False, "name": "check"})
    assert again["models"][0]["source"] == "feature store logits"
    # a rerun resumes every model (nothing recomputed) and gives the same numbers
    resumed = run_study(ws, cfg)
    assert {m["source"] for m in resumed["models"]} == {"resumed"}
    assert [m["gap"] for m in resumed["models"]] == [m["gap"] for m in out["models"]]
    s = load_study(ws, "tex__cnn__val")
    assert list(s.correlation.columns) == ["cnn", "other", "foreign", "ours", "zs"]
    trained = s.correlation.loc[["cnn", "other"], ["cnn", "other"]].values
    assert np.allclose(np.diag(trained), 1.0) and np.isfinite(trained).all()
    m = s.models.set_index("model")
    assert m.loc["cnn", "gap"] > 0.1 and m.loc["other", "gap"] > 0.1   # trained on rho=0.9: the cue shows
    assert len(s.per_class) == 5 * 10 and set(s.per_class.model) == {"cnn", "other", "foreign", "ours", "zs"}
    assert s.scatter is not None and {t.name for t in s.scatter.data} >= {"models", "y = x"}
    assert s.heatmap is not None and s.heatmap.data[0].type == "heatmap"
    assert "tex__cnn__val" in list_studies(ws, dataset="tex") and list_studies(ws, dataset="nope") == []
    assert len(fs_preds) == 200


def test_a_predicted_workspace_model_matches_its_extracted_logits(ws: Workspace) -> None:
    """'other' was predicted through the photo pipeline; extracting its features afterwards gives the same argmax."""
    study = load_study(ws, "tex__cnn__val")
    idx = list(study.models.model).index("other")
    preds = np.asarray(ws.open_npy(f"studies/tex__cnn__val/preds/{idx}.npy"))
    extract_splits(ws, "tex", "other", ["val"], device="cpu")
    from core.features.store import load_features  # noqa: PLC0415 - after the extraction above

    np.testing.assert_array_equal(preds, load_features(ws, "tex", "other", "val").preds())


def test_cli_and_job(ws: Workspace, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    models_file = tmp_path / "models.txt"
    models_file.write_text("# one per line\nother\n\n")
    code = main(["study", "--workspace", str(ws.root), "--dataset", "tex", "--ranking-model", "cnn",
                 "--models-file", str(models_file), "--name", "cli", "--n-boot", "0", "--device", "cpu",
                 "--num-workers", "0", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["name"] == "cli" and [m["model"] for m in out["models"]] == ["cnn", "other"]
    assert main(["study", "--workspace", str(ws.root), "--show", "cli", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_models"] == 2
    assert main(["study", "--workspace", str(ws.root), "--dataset", "tex", "--ranking-model", "cnn",
                 "--models", "nosuch", "--json"]) == 2
    assert "neither a workspace model" in json.loads(capsys.readouterr().out)["error"]
    job_id = jobs.submit(ws, "study", {"dataset": "tex", "ranking_model": "cnn", "models": ["other"], "name": "job",
                                       "n_boot": 0, "num_workers": 0}, device="cpu")
    job = jobs.wait(ws, job_id, timeout_s=240)
    assert job.status == "done", job.error
    assert job.result["name"] == "job" and job.result["n_models"] == 2


def test_report_block_lists_the_studies_of_its_ranking(ws: Workspace) -> None:
    from core.report.context import _study_section   # noqa: PLC0415 - the report's own block, tested alone
    from core.report.render import render_report     # noqa: PLC0415

    run_study(ws, {"dataset": "tex", "ranking_model": "cnn", "models": ["other"], "name": "rep", "n_boot": 50,
                   "device": "cpu", "num_workers": 0})
    section = _study_section(ws, "tex", "cnn")
    assert section["studies"][0]["name"] == "rep" and section["studies"][0]["n_models"] == 2   # newest first
    assert len(section["study_figures"]) == 2 * len(section["studies"])
    html = render_report({"title": "t", **section})
    assert "<h2>Many-model study</h2>" in html and "rep" in html and "effective robustness" in html
    assert html.count("plotly-graph-div") >= 2
    assert _study_section(ws, "tex", "other")["studies"] == []            # ranked by another model: not shown
    assert "<h2>Many-model study</h2>" not in render_report({"title": "t"})


def test_zero_shot_prompts_take_a_class_names_file(ws: Workspace, tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"digit {i}" for i in range(10)) + "\n")
    out = run_study(ws, {"dataset": "tex", "ranking_model": "cnn", "models": ["zs=clip-zeroshot:spuraudit-tiny-clip"],
                         "name": "zs-names", "class_names_file": str(names), "include_ranking_model": False,
                         "n_boot": 0, "device": "cpu", "num_workers": 0})
    assert [m["model"] for m in out["models"]] == ["zs"]
    names.write_text("one\ntwo\n")
    with pytest.raises(SpurAuditError, match="has 2 names; the dataset has 10 classes"):
        run_study(ws, {"dataset": "tex", "ranking_model": "cnn", "models": ["z2=clip-zeroshot:spuraudit-tiny-clip"],
                       "name": "zs-bad", "class_names_file": str(names), "include_ranking_model": False,
                       "n_boot": 0, "device": "cpu", "num_workers": 0})
