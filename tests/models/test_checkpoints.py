"""Checkpoints (`core.models.checkpoints`): save/load round trip, mismatched-checkpoint errors, damaged and
unsafe files (robustness-library conversion: test_robust.py)."""
from __future__ import annotations

import pytest
import torch

from core.errors import SpurAuditError
from core.models import build_model, load_model, save_model

from tests.models._fabricated import robust_checkpoint

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


def test_mismatched_checkpoint_lists_keys_and_fix(tmp_path):
    ckpt, _, _, _ = robust_checkpoint()
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
