"""Checkpoints: save/load round trip, robustness-library conversion, mismatched-checkpoint errors."""
from __future__ import annotations

import pytest
import torch
import torchvision

from core.errors import SpurAuditError
from core.models import build_model, load_model, save_model
from core.models.robust import convert_robustness_state_dict

torch.set_num_threads(1)


def test_save_load_round_trip_identical_logits(tmp_path):
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=4, widths=[8, 16, 12], in_channels=3)
    # non-trivial BN statistics
    model.train()
    with torch.no_grad():
        model(torch.rand(16, 3, 28, 28))
    model.eval()
    path = save_model(model, tmp_path / "m" / "model.pt", extra={"metrics": {"acc": 0.5}, "config": {"epochs": 3}})
    loaded = load_model(path)
    assert loaded.arch == "small_cnn" and loaded.config["widths"] == [8, 16, 12]
    assert loaded.num_classes == 4 and loaded.feature_dim == 12 and not loaded.training
    assert loaded.checkpoint_extra == {"metrics": {"acc": 0.5}, "config": {"epochs": 3}}
    x = torch.rand(5, 3, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
        assert torch.equal(model.feature_map(x), loaded.feature_map(x))


def test_round_trip_mlp_and_resnet(tmp_path):
    for arch, kwargs, size in [("mlp", {"hidden": [7, 5], "input_size": [3, 8, 8]}, 8), ("resnet18", {}, 32)]:
        torch.manual_seed(1)
        model = build_model(arch, num_classes=3, **kwargs).eval()
        loaded = load_model(save_model(model, tmp_path / f"{arch}.pt"))
        x = torch.rand(2, 3, size, size)
        with torch.no_grad():
            assert torch.equal(model(x), loaded(x))


def _robust_checkpoint(seed: int = 0) -> tuple[dict, dict, torch.Tensor, torch.Tensor]:
    """A fabricated robustness-library checkpoint around a random torchvision ResNet-50."""
    torch.manual_seed(seed)
    net = torchvision.models.resnet50(weights=None)
    sd = net.state_dict()
    mean = torch.tensor([0.4, 0.5, 0.6]).view(3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(3, 1, 1)
    state = {f"module.model.{k}": v for k, v in sd.items()}
    state.update({f"module.attacker.model.{k}": torch.zeros_like(v) for k, v in list(sd.items())[:10]})
    state.update({"module.normalizer.new_mean": mean, "module.normalizer.new_std": std,
                  "module.attacker.normalize.new_mean": torch.zeros(3, 1, 1),
                  "module.attacker.normalize.new_std": torch.ones(3, 1, 1)})
    return {"model": state, "epoch": 90}, sd, mean, std


def test_robust_checkpoint_conversion(tmp_path):
    ckpt, sd, mean, std = _robust_checkpoint()
    converted, cmean, cstd = convert_robustness_state_dict(ckpt["model"])
    assert set(converted) == set(sd) and not any(k.startswith(("attacker", "normalizer")) for k in converted)
    assert cmean == pytest.approx([0.4, 0.5, 0.6]) and cstd == pytest.approx([0.2, 0.25, 0.3])

    path = tmp_path / "imagenet_l2_3_0.pt"
    torch.save(ckpt, path)
    model = build_model("robust-resnet50", num_classes=1000, pretrained=path)
    own = {k[len("encoder."):]: v for k, v in model.state_dict().items() if k.startswith("encoder.")}
    name_map = dict(zip(["0", "1", "2", "3", "4", "5", "6", "7"],
                        ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]))
    for k, v in own.items():
        first, rest = k.split(".", 1)
        assert torch.equal(v, sd[f"{name_map[first]}.{rest}"]), k
    assert torch.equal(model.head.weight, sd["fc.weight"]) and torch.equal(model.head.bias, sd["fc.bias"])
    torch.testing.assert_close(model.normalize.mean, mean.view(1, 3, 1, 1))
    torch.testing.assert_close(model.normalize.std, std.view(1, 3, 1, 1))

    # 'state_dict' variant without the module. prefix on the normaliser, and a new head size
    alt = {"state_dict": {k.replace("module.normalizer", "normalizer"): v for k, v in ckpt["model"].items()}}
    model10 = build_model("robust-resnet50", num_classes=10, pretrained=alt)  # an in-memory dict works too
    assert model10.head.out_features == 10
    torch.testing.assert_close(model10.normalize.std, std.view(1, 3, 1, 1))
    assert torch.equal(model10.encoder[0].weight, sd["conv1.weight"])

    # the converted model survives save_model/load_model with its normalisation
    loaded = load_model(save_model(model10, tmp_path / "robust_saved.pt"))
    torch.testing.assert_close(loaded.normalize.mean, mean.view(1, 3, 1, 1))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model10.eval()(x), loaded(x))


def test_mismatched_checkpoint_lists_keys_and_fix(tmp_path):
    ckpt, _, _, _ = _robust_checkpoint()
    broken = {k.replace("layer4.", "layer9."): v for k, v in ckpt["model"].items()}
    torch.save({"model": broken}, tmp_path / "broken.pt")
    with pytest.raises(SpurAuditError) as err:
        build_model("robust-resnet50", num_classes=10, pretrained=tmp_path / "broken.pt")
    msg = str(err.value)
    assert "missing keys: layer4." in msg and "unexpected keys: layer9." in msg and "Fix:" in msg
    assert "more)" in msg  # only the first few keys are listed

    small = build_model("small_cnn", num_classes=3, widths=[4, 8, 8])
    torch.save(small.state_dict(), tmp_path / "small.pt")
    with pytest.raises(SpurAuditError, match="shape mismatches"):
        build_model("small_cnn", num_classes=3, widths=[4, 8, 16], pretrained=tmp_path / "small.pt")
    # the matching architecture loads the plain state dict
    same = build_model("small_cnn", num_classes=3, widths=[4, 8, 8], pretrained=tmp_path / "small.pt")
    assert torch.equal(same.encoder[0].weight, small.encoder[0].weight)


def test_torchvision_resnet_from_local_state_dict(tmp_path):
    torch.manual_seed(2)
    net = torchvision.models.resnet18(weights=None)
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "r18.pth")
    model = build_model("resnet18", num_classes=1000, pretrained=tmp_path / "r18.pth").eval()
    net.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(model.normalize(x)), atol=1e-5, rtol=1e-5)


def test_load_model_rejects_foreign_and_unsafe_files(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(SpurAuditError, match="not a SpurAudit model checkpoint"):
        load_model(tmp_path / "plain.pt")

    from fractions import Fraction  # a pickled Python object that weights_only=True refuses

    torch.save({"model": Fraction(1, 3)}, tmp_path / "pickled.pt")
    with pytest.raises(SpurAuditError, match="weights_only"):
        load_model(tmp_path / "pickled.pt")
    with pytest.raises(SpurAuditError, match="not found"):
        load_model(tmp_path / "missing.pt")


@pytest.mark.parametrize("content, expected", [
    (b"", "is empty \\(0 bytes\\)"),
    (b"not a torch file at all", "not a readable torch file"),
    (b"PK\x03\x04truncated zip", "not a readable torch file"),
])
def test_damaged_checkpoint_files_give_one_clear_error(tmp_path, content, expected):
    from core.models.checkpoints import torch_load

    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(SpurAuditError, match=expected):
        torch_load(path)
    with pytest.raises(SpurAuditError, match="is a folder"):
        torch_load(tmp_path)
