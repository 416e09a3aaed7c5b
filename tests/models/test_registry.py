"""Registry: forward shapes and feature-map channel alignment for every arch (tiny / random-init, CPU).

For every architecture: features == feature_map.mean((2, 3)) (channel j <-> feature j) and
logits == head(features). Pretrained weights are not available offline, so the torchvision/timm/
robust/CLIP paths are exercised with random init (and, for CLIP, a tiny registered open_clip config).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from core.errors import SpurAuditError
from core.models import MODEL_REGISTRY, AuditModel, build_model, set_head

torch.set_num_threads(1)

TINY_CLIP = {"embed_dim": 24, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16,
                                              "head_width": 16},
             "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def tiny_clip_name(tmp_path_factory: pytest.TempPathFactory) -> str:
    open_clip = pytest.importorskip("open_clip")
    name = "spuraudit-test-tiny"
    if name not in open_clip.list_models():
        path = tmp_path_factory.mktemp("clipcfg") / f"{name}.json"
        path.write_text(json.dumps(TINY_CLIP))
        open_clip.add_model_config(path)
    return name


SPATIAL = [
    ("small_cnn", {}, 28, 256, (3, 3)),
    ("small_cnn", {"widths": [8, 16, 24], "in_channels": 1}, 28, 24, (3, 3)),
    ("resnet18", {}, 64, 512, (2, 2)),
    ("resnet50", {}, 64, 2048, (2, 2)),
    ("robust-resnet50", {}, 64, 2048, (2, 2)),
    ("timm:test_resnet", {}, 64, None, None),
]


def _check_alignment(model: AuditModel, x: torch.Tensor, k: int) -> None:
    model.eval()
    with torch.no_grad():
        fmap = model.feature_map(x)
        feats = model.features(x)
        logits = model(x)
    assert fmap.dim() == 4 and fmap.shape[:2] == (x.shape[0], model.feature_dim)
    assert feats.shape == (x.shape[0], model.feature_dim)
    assert logits.shape == (x.shape[0], k)
    torch.testing.assert_close(fmap.mean(dim=(2, 3)), feats, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.forward_head(feats), logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.head(feats), logits, atol=1e-5, rtol=1e-5)
    assert isinstance(model.head, nn.Linear) and model.head.in_features == model.feature_dim


@pytest.mark.parametrize("arch,kwargs,size,dim,hw", SPATIAL, ids=[f"{a}-{i}" for i, (a, *_) in enumerate(SPATIAL)])
def test_spatial_archs_shapes_and_alignment(arch, kwargs, size, dim, hw):
    if arch.startswith("timm:"):
        pytest.importorskip("timm")
    torch.manual_seed(0)
    model = build_model(arch, num_classes=5, **kwargs)
    assert model.arch == arch and model.num_classes == 5 and model.has_spatial_map
    channels = kwargs.get("in_channels", 3)
    x = torch.rand(2, channels, size, size)
    _check_alignment(model, x, 5)
    if dim is not None:
        assert model.feature_dim == dim
        assert tuple(model.feature_map(x).shape[2:]) == hw


def test_small_cnn_matches_dcwp_layout():
    model = build_model("small_cnn", num_classes=10)
    convs = [m for m in model.encoder if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.encoder) == 3
    assert model.config["widths"] == [64, 128, 256]


def test_mlp_has_no_spatial_map():
    model = build_model("mlp", num_classes=4, hidden=[32, 16], input_size=[3, 10, 10]).eval()
    x = torch.rand(5, 3, 10, 10)
    assert not model.has_spatial_map and model.feature_dim == 16
    with pytest.raises(SpurAuditError, match="no spatial feature map"):
        model.feature_map(x)
    with torch.no_grad():
        feats = model.features(x)
        assert feats.shape == (5, 16) and bool((feats >= 0).all())  # post-ReLU hidden layer
        torch.testing.assert_close(model(x), model.head(feats))


def test_timm_non_spatial_model_uses_pre_logits():
    pytest.importorskip("timm")
    model = build_model("timm:test_vit", num_classes=3).eval()
    assert not model.has_spatial_map and model.normalize.resize is not None
    x = torch.rand(2, 3, 40, 40)  # resized inside the model to the ViT's input size
    with torch.no_grad():
        feats = model.features(x)
        assert feats.shape == (2, model.feature_dim)
        torch.testing.assert_close(model(x), model.head(feats))
    with pytest.raises(SpurAuditError):
        model.feature_map(x)


def test_clip_tower_encoder(tiny_clip_name):
    model = build_model(f"clip:{tiny_clip_name}", num_classes=4).eval()
    assert model.arch == f"clip:{tiny_clip_name}" and model.feature_dim == 24 and not model.has_spatial_map
    # CLIP normalisation is part of the model
    torch.testing.assert_close(model.normalize.mean.flatten(), torch.tensor([0.48145466, 0.4578275, 0.40821073]))
    x = torch.rand(3, 3, 28, 28)
    with torch.no_grad():
        feats = model.features(x)
        assert feats.shape == (3, 24)
        torch.testing.assert_close(model(x), model.head(feats))


def test_reset_and_set_head():
    model = build_model("small_cnn", num_classes=10, widths=[8, 8, 8])
    model.reset_head()
    assert model.head.out_features == 10
    model.reset_head(num_classes=3)
    assert model.num_classes == 3 and model(torch.rand(1, 3, 28, 28)).shape == (1, 3)
    lin = nn.Linear(8, 7)
    set_head(model, lin)
    assert model.num_classes == 7
    torch.testing.assert_close(model.head.weight, lin.weight)
    with pytest.raises(SpurAuditError, match="features"):
        set_head(model, nn.Linear(9, 2))


def test_bad_names_and_options_are_user_errors():
    with pytest.raises(SpurAuditError, match="valid choices: .*small_cnn"):
        build_model("no-such-net", num_classes=2)
    with pytest.raises(SpurAuditError, match=r"unknown arch 'resnet18' option\(s\) \['widths'\]"):
        build_model("resnet18", num_classes=2, widths=[1])
    with pytest.raises(SpurAuditError, match="num_classes"):
        build_model("small_cnn", num_classes=0)
    with pytest.raises(SpurAuditError, match="not found"):
        build_model("resnet18", num_classes=2, pretrained="/nonexistent/weights.pth")
    with pytest.raises(SpurAuditError, match="expects a batch"):
        build_model("small_cnn", num_classes=2)(torch.rand(3, 28, 28))
    with pytest.raises(SpurAuditError, match="expects 1-channel"):
        build_model("small_cnn", num_classes=2, in_channels=1)(torch.rand(2, 3, 28, 28))
    assert {"small_cnn", "mlp", "resnet18", "resnet50", "robust-resnet50", "timm:", "clip:"} <= set(MODEL_REGISTRY)


def test_import_core_models_is_light():
    code = ("import sys, core.models; bad = [m for m in ('open_clip', 'timm', 'streamlit') if m in sys.modules]; "
            "print(','.join(bad))")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_register_model_decorator_and_call_forms():
    from core.models.registry import register_model

    @register_model("test-decorated")
    def build_decorated(*, num_classes, pretrained=None, widths=(4, 4, 4)):
        return build_model("small_cnn", num_classes=num_classes, widths=widths)

    try:
        assert MODEL_REGISTRY["test-decorated"] is build_decorated       # the decorator returns the function
        assert build_model("test-decorated", num_classes=2, widths=[2, 2, 2]).feature_dim == 2
        with pytest.raises(SpurAuditError, match="already registered"):
            register_model("test-decorated", build_decorated)
        register_model("test-decorated", build_decorated, replace=True)  # the call form
        with pytest.raises(SpurAuditError, match=r"unknown arch 'test-decorated' option\(s\) \['depth'\]"):
            build_model("test-decorated", num_classes=2, depth=3)
    finally:
        MODEL_REGISTRY.pop("test-decorated", None)


def test_registry_is_a_leaf():
    """core.models.registry imports no builder module: builders register themselves on import."""
    import ast

    path = Path(__file__).resolve().parents[2] / "core" / "models" / "registry.py"
    imported = {node.module for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom)}
    assert {m for m in imported if m.startswith("core.")} <= {"core.errors", "core.models.audit_model"}
