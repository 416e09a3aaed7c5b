"""New audit page (AppTest): a workspace created from the page, the CSV column pickers from the file's
header, the preview (first rows, class counts, bias groups, bad rows) before anything is written, the
import as a job, and every form's error state (missing path, a label column with empty cells, a
checkpoint for another architecture, 0 epochs, negative ε, a CLIP weights file that does not exist)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from core import jobs
from core.data import build_dataset
from core.models.checkpoints import save_workspace_model
from core.models.registry import build_model
from core.workspace import Workspace
from tests.dashboard.app_helpers import open_app, texts


def _csv_dataset(root, *, n=6, blank_label_row=None):
    root.mkdir(parents=True, exist_ok=True)
    lines = ["file,y,colour,mask"]
    for i in range(n):
        c = "cat" if i % 2 else "dog"
        img = np.zeros((8, 8, 3), np.uint8)
        img[..., i % 2] = 200
        Image.fromarray(img).save(root / f"{i}.png")
        m = np.zeros((8, 8), np.uint8)
        m[2:6, 2:6] = 255
        Image.fromarray(m).save(root / f"m{i}.png")
        label = "" if i == blank_label_row else c
        lines.append(f"{i}.png,{label},{i % 2},m{i}.png")
    lines.append("missing.png,cat,1,m0.png")                 # a bad row: the image does not exist
    (root / "list.csv").write_text("\n".join(lines) + "\n")
    return root / "list.csv"


def _errors(at) -> str:
    return texts(at.error)


def test_page_creates_a_workspace_where_there_is_none(tmp_path):
    folder = tmp_path / "fresh"
    at = open_app(str(folder), "new_audit")
    assert "holds no SpurAudit workspace yet" in texts(at.info)
    at.button(key="na_create_ws").click().run()
    assert (folder / "audit.db").exists()
    assert "Build the demo" in [b.label for b in at.button]       # an empty workspace offers the demo job
    at.checkbox(key="na_demo_quick").check().run()
    at.button(key="na_demo").click().run()
    ws = Workspace(folder, create=False)
    job = ws.list_jobs()[0]
    assert job.kind == "demo" and job.params["quick"] is True
    jobs.cancel(ws, job.id)                           # (the demo itself: tests/test_quickstart.py runs it)
    assert ws.get_job(job.id).status == "cancelled"


def test_csv_preview_then_import_as_a_job(tmp_path):
    ws = Workspace(tmp_path / "ws")
    csv = _csv_dataset(tmp_path / "data")
    at = open_app(str(ws.root), "new_audit")
    at.selectbox(key="na_source").set_value("csv").run()
    at.text_input(key="na_ds_name").input("pets").run()
    at.text_input(key="na_path_csv").input(str(csv)).run()
    assert at.selectbox(key="na_csv_label").options == ["file", "y", "colour", "mask"]   # the file's own header
    assert at.selectbox(key="na_csv_path").value == "file" and at.selectbox(key="na_csv_label").value == "y"
    assert at.selectbox(key="na_csv_mask_col").value == "mask"
    at.selectbox(key="na_csv_bias_col").set_value("colour").run()
    at.button(key="na_preview_btn").click().run()
    assert not at.exception and not _errors(at), _errors(at)
    shown = texts(at.markdown)
    assert "6 usable images, 2 classes" in shown and "nothing written yet" in shown
    frames = [d.value for d in at.dataframe]
    bad = frames[-1]
    assert list(bad["path"]) == ["missing.png"] and "missing image file" in bad["reason"].iat[0]
    counts = next(f for f in frames if "train" in f.columns and list(f.index) == ["cat", "dog"])
    assert int(counts.to_numpy().sum()) == 6
    assert not ws.list_datasets() and not ws.path("datasets/pets").exists()        # the preview wrote nothing
    assert at.checkbox(key="na_skip_bad").value is True
    at.button(key="na_import").click().run()
    job = ws.list_jobs()[0]
    assert job.kind == "dataset-add" and job.params["options"]["mask_col"] == "mask"
    assert jobs.wait(ws, job.id, timeout_s=120).status == "done"
    rec = ws.get_dataset("pets")
    assert rec.params["skipped"] == 1 and rec.class_names == ["cat", "dog"]


def test_dataset_form_errors(tmp_path):
    ws = Workspace(tmp_path / "ws")
    at = open_app(str(ws.root), "new_audit")
    at.text_input(key="na_path_imagefolder").input(str(tmp_path / "nowhere")).run()
    at.button(key="na_preview_btn").click().run()
    assert "does not exist" in _errors(at) and "nowhere" in _errors(at)
    assert not at.exception
    # a CSV whose chosen label column has an empty cell: the row is named as bad, with the reason
    csv = _csv_dataset(tmp_path / "data", blank_label_row=2)
    at.selectbox(key="na_source").set_value("csv").run()
    at.text_input(key="na_path_csv").input(str(csv)).run()
    at.button(key="na_preview_btn").click().run()
    bad = at.dataframe[-1].value
    assert "empty label" in " ".join(bad["reason"])
    # the label column set to one the file does not have (e.g. the file was replaced): a clear message
    at.text_input(key="na_path_csv").input(str(tmp_path / "nope.csv")).run()
    assert "does not exist" in _errors(at)


@pytest.fixture()
def ws_with_data(tmp_path):
    torch.manual_seed(0)
    ws = Workspace(tmp_path / "ws")
    build_dataset(ws, "colored-mnist", "cm", n_train=40, n_val=20, n_test=20)
    save_workspace_model(ws, "cnn", build_model("small_cnn", num_classes=10, widths=(8, 8, 8)), dataset="cm")
    return ws


def test_model_and_audit_form_errors(ws_with_data, tmp_path):
    ws = ws_with_data
    other = build_model("mlp", num_classes=10, input_size=28 * 28 * 3)
    torch.save(other.state_dict(), tmp_path / "mlp.pt")
    at = open_app(str(ws.root), "new_audit")
    at.text_input(key="na_model_name").input("m1").run()
    at.number_input(key="na_epochs").set_value(0).run()
    at.button(key="na_train").click().run()
    assert "epochs" in _errors(at)
    at.number_input(key="na_epochs").set_value(2).run()
    at.number_input(key="na_eps").set_value(-0.5).run()
    at.button(key="na_train").click().run()
    assert "adv_eps must be >= 0" in _errors(at)
    assert not ws.list_jobs()                                   # nothing was started
    at.radio(key="na_model_how").set_value("Register a checkpoint").run()
    at.selectbox(key="na_reg_arch").set_value("small_cnn").run()
    at.text_input(key="na_reg_ckpt").input(str(tmp_path / "mlp.pt")).run()
    at.button(key="na_register").click().run()
    err = _errors(at)
    assert "does not match the model" in err and "missing keys" in err and "unexpected keys" in err
    assert not ws.has_model("m1")
    at.text_input(key="na_reg_ckpt").input(str(tmp_path / "absent.pt")).run()
    at.button(key="na_register").click().run()
    assert "checkpoint: " in _errors(at) and "absent.pt does not exist" in _errors(at)
    at.text_input(key="na_reg_ckpt").input(str(tmp_path / "mlp.pt")).run()
    at.text_input(key="na_reg_head").input(str(tmp_path / "no-mapping.txt")).run()
    at.button(key="na_register").click().run()
    assert "head classes file: " in _errors(at) and "no-mapping.txt does not exist" in _errors(at)
    (tmp_path / "mapping.txt").write_text("n01440764 tench\nn01443537 goldfish\n")
    at.text_input(key="na_reg_head").input(str(tmp_path / "mapping.txt")).run()
    at.button(key="na_register").click().run()
    assert "10 dataset class(es) are not among the checkpoint's 2 head classes" in _errors(at)
    at.text_input(key="na_reg_head").input("").run()
    # the audit form: a CLIP weights file that does not exist
    at.text_input(key="na_clip_weights").input(str(tmp_path / "clip-vit-b-32.pt")).run()
    at.button(key="na_run_audit").click().run()
    assert "CLIP weights: " in _errors(at) and "clip-vit-b-32.pt does not exist" in _errors(at)
    at.text_input(key="na_clip_weights").input("").run()
    at.number_input(key="na_k").set_value(0).run()
    at.button(key="na_run_audit").click().run()
    assert "k (top features per class) must be at least 1" in _errors(at)
    assert not ws.list_jobs() and not at.exception


def test_register_a_matching_checkpoint_and_run_the_audit_job(ws_with_data, tmp_path):
    ws = ws_with_data
    torch.save(build_model("small_cnn", num_classes=10).state_dict(), tmp_path / "ok.pt")
    at = open_app(str(ws.root), "new_audit")
    at.radio(key="na_model_how").set_value("Register a checkpoint").run()
    at.text_input(key="na_model_name").input("reg").run()
    at.selectbox(key="na_reg_arch").set_value("small_cnn").run()
    at.text_input(key="na_reg_ckpt").input(str(tmp_path / "ok.pt")).run()
    at.button(key="na_register").click().run()
    assert not _errors(at) and "Registered reg (small\\_cnn: 256 features" in texts(at.success)
    assert ws.get_model("reg").arch == "small_cnn"
    at.selectbox(key="na_audit_model").set_value("cnn").run()
    at.selectbox(key="na_audit_device").set_value("cpu").run()
    at.number_input(key="na_k").set_value(2).run()
    at.button(key="na_run_audit").click().run()
    job = ws.list_jobs()[0]
    assert job.kind == "audit-chain" and job.params["model"] == "cnn" and job.params["k"] == 2
    assert jobs.wait(ws, job.id, timeout_s=300).status == "done", jobs.log_tail(ws, job.id)
    at.run()
    steps = next(d.value for d in at.dataframe if "step" in d.value.columns)
    assert list(steps["step"]) == ["extract", "discover", "labels", "rank", "gaps", "report"]
    assert set(steps["status"]) == {"done"}
    # colored-mnist has no masks and no weights were given: the page says how to get labels
    assert "no feature is labelled spurious yet" in texts(at.info) and "Features page" in texts(at.info)


def test_a_failed_step_is_shown_with_its_name(ws_with_data):
    from core.concepts.jobs import audit_chain_job
    from core.errors import SpurAuditError

    ws = ws_with_data
    with pytest.raises(SpurAuditError):
        audit_chain_job(ws, {"dataset": "cm", "model": "cnn", "k": 2, "eval_split": "nope", "device": "cpu"},
                        lambda f, m="": None)
    at = open_app(str(ws.root), "new_audit")
    assert "Step 'rank' failed" in _errors(at) and "nope" in _errors(at)
    steps = next(d.value for d in at.dataframe if "step" in d.value.columns)
    assert dict(zip(steps["step"], steps["status"]))["rank"] == "failed"
    assert dict(zip(steps["step"], steps["status"]))["extract"] == "done"


def test_crops_page_offers_the_launch_once_the_audit_ran(tmp_path):
    from tests.audit.audited_workspace import build_audited_workspace

    ws, _ = build_audited_workspace(tmp_path / "ws")
    at = open_app(str(ws.root), "crops")
    assert "crops and sensitivity were never run" in texts(at.info)
    assert "run the audit" not in texts(at.info).lower().replace("the audit of this model has run", "")
    assert at.button(key="run_crops") is not None and at.selectbox(key="crops_split").options == ["train", "val"]


def test_offline_builder_with_its_parameters(tmp_path):
    ws = Workspace(tmp_path / "ws")
    at = open_app(str(ws.root), "new_audit")
    at.selectbox(key="na_source").set_value("builder").run()
    at.selectbox(key="na_builder").set_value("biased-mnist").run()
    assert at.number_input(key="na_b_biased-mnist_rho").value == pytest.approx(0.99)
    at.number_input(key="na_b_biased-mnist_rho").set_value(0.9).run()
    at.number_input(key="na_b_biased-mnist_n_train").set_value(100).run()
    at.number_input(key="na_b_biased-mnist_n_val").set_value(50).run()
    at.number_input(key="na_b_biased-mnist_n_test").set_value(50).run()
    at.button(key="na_build").click().run()
    job = ws.list_jobs()[0]
    assert job.kind == "dataset-build" and job.params["name"] == "biased-mnist"
    assert job.params["params"]["rho"] == pytest.approx(0.9) and job.params["params"]["n_train"] == 100
    assert jobs.wait(ws, job.id, timeout_s=120).status == "done", jobs.log_tail(ws, job.id)
    assert ws.get_dataset("biased-mnist").params["split_sizes"] == {"train": 100, "val": 50, "test": 50}


@pytest.mark.parametrize("family", ["timm:", "clip:"])
def test_register_a_library_family_checkpoint_from_a_file(ws_with_data, tmp_path, family):
    """``timm:<name>`` and ``clip:<name>`` through the register form with a weights file on disk (tiny
    random-init models, as nothing can be downloaded here: this checks the plumbing of the file path)."""
    ws = ws_with_data
    if family == "timm:":
        timm = pytest.importorskip("timm")
        name = "test_resnet"
        torch.save(timm.create_model(name, pretrained=False).state_dict(), tmp_path / "w.pt")
    else:
        open_clip = pytest.importorskip("open_clip")
        name = "spuraudit-form-tiny-clip"
        if name not in open_clip.list_models():
            cfg = tmp_path / f"{name}.json"
            cfg.write_text(json.dumps({"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64,
                                                                        "patch_size": 16},
                                       "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32,
                                                    "heads": 2, "layers": 1}}))
            open_clip.add_model_config(cfg)
        torch.save(open_clip.create_model(name).state_dict(), tmp_path / "w.pt")
    at = open_app(str(ws.root), "new_audit")
    at.radio(key="na_model_how").set_value("Register a checkpoint").run()
    at.text_input(key="na_model_name").input("lib").run()
    at.selectbox(key="na_reg_arch").set_value(f"{family}<name>").run()
    at.text_input(key=f"na_reg_{family}").input(name).run()
    at.text_input(key="na_reg_ckpt").input(str(tmp_path / "w.pt")).run()
    at.button(key="na_register").click().run()
    assert not _errors(at) and not at.exception, _errors(at)
    assert ws.get_model("lib").arch == family + name
    saved = torch.load(tmp_path / "w.pt", weights_only=True)
    image_tower = [t for k, t in saved.items() if family == "timm:" or k.startswith("visual.")]
    big = max(image_tower, key=lambda t: t.numel())             # the file's weights, not a random init
    from core.models.checkpoints import load_model  # noqa: PLC0415

    registered = load_model(ws.get_model("lib").checkpoint).state_dict().values()
    assert any(t.shape == big.shape and torch.equal(t, big) for t in registered)
    # the wrong family for the same file: a message listing the keys, nothing registered
    at.text_input(key="na_model_name").input("lib2").run()
    at.selectbox(key="na_reg_arch").set_value("small_cnn").run()
    at.button(key="na_register").click().run()
    assert "does not match the model" in _errors(at) and not ws.has_model("lib2")
