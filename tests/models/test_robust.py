"""Robustness-library ResNet-50 checkpoints (`core.models.robust`): conversion and the built model."""
from __future__ import annotations

import pytest
import torch

from core.models import build_model, load_model, save_model
from core.models.robust import convert_robustness_state_dict

from tests.models._fabricated import robust_checkpoint

torch.set_num_threads(1)


def test_robust_checkpoint_conversion(tmp_path):
    ckpt, sd, mean, std = robust_checkpoint()
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
