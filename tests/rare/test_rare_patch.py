"""The user patch (a PNG with alpha, a position, a scale) and the patterns' norms, against hand-made arrays."""
import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import SpurAuditError
from core.rare.artifacts import list_patches, patch_preview, save_patch
from core.rare.inject import PatchPattern, PatchSpec, apply_pattern, inject, load_patch_png, pattern_l2_norm
from core.workspace import Workspace

# a 2×2 RGBA patch: red opaque, green half-transparent / blue transparent, white opaque
RGBA = np.array([[[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.5]],
                 [[0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]]], dtype=np.float32)


def test_patch_is_alpha_composited_at_its_position():
    x = torch.full((1, 3, 4, 4), 0.2)
    out = PatchPattern(PatchSpec(path="-", position=(1, 2)), rgba=RGBA).apply(x)
    expected = np.full((3, 4, 4), 0.2, dtype=np.float32)
    expected[:, 1, 2] = [1.0, 0.0, 0.0]                     # opaque red
    expected[:, 1, 3] = [0.1, 0.6, 0.1]                     # 0.5·0.2 + 0.5·(0, 1, 0)
    expected[:, 2, 2] = [0.2, 0.2, 0.2]                     # transparent: unchanged
    expected[:, 2, 3] = [1.0, 1.0, 1.0]
    assert np.allclose(out[0].numpy(), expected, atol=1e-6)
    assert torch.equal(x, torch.full((1, 3, 4, 4), 0.2))    # input untouched


def test_patch_opacity_greyscale_and_border_clipping():
    x = torch.zeros(2, 1, 4, 4)
    # at (3, 3) only the patch's top-left pixel is inside the 4×4 image: the rest is cut off
    out = PatchPattern(PatchSpec(path="-", position=(3, 3), opacity=0.5), rgba=RGBA).apply(x)
    expected = np.zeros((4, 4), np.float32)
    expected[3, 3] = 0.5 * 0.299                            # luminance of red, half opacity
    assert np.allclose(out[:, 0].numpy(), expected[None], atol=1e-6)
    # negative positions clip the other way: only the bottom-right (white) pixel lands at (0, 0)
    out = PatchPattern(PatchSpec(path="-", position=(-1, -1)), rgba=RGBA).apply(torch.zeros(1, 1, 4, 4))
    assert out[0, 0, 0, 0] == pytest.approx(1.0) and out.sum() == pytest.approx(1.0)
    # values stay in [0, 1]
    bright = PatchPattern(PatchSpec(path="-", position=(0, 0)), rgba=RGBA).apply(torch.ones(1, 3, 4, 4))
    assert bright.max() <= 1.0 and bright.min() >= 0.0


def test_corners_margin_scale_and_size_errors():
    p = PatchPattern(PatchSpec(path="-", position="bottom-right", margin=1), rgba=RGBA)
    assert p.origin(8, 8) == (5, 5)
    assert PatchPattern(PatchSpec(path="-", position="top-left", margin=0), rgba=RGBA).origin(8, 8) == (0, 0)
    assert PatchPattern(PatchSpec(path="-", position="center"), rgba=RGBA).origin(8, 6) == (3, 2)
    opaque = np.ones((2, 2, 4), np.float32)
    big = PatchPattern(PatchSpec(path="-", scale=2.0), rgba=opaque)
    assert big.size == (4, 4) and np.allclose(big.rgba, 1.0)
    with pytest.raises(SpurAuditError, match="larger|is 4×4"):
        big.origin(3, 3)
    with pytest.raises(SpurAuditError, match="outside"):
        PatchPattern(PatchSpec(path="-", position=(9, 0)), rgba=RGBA).origin(4, 4)
    with pytest.raises(SpurAuditError, match="scale"):
        PatchSpec(path="x.png", scale=0).validate()
    with pytest.raises(SpurAuditError, match="patch position"):
        PatchSpec(path="x.png", position="middle").validate()


def test_png_with_alpha_round_trips_through_the_workspace(tmp_path):
    arr = (RGBA * 255).round().astype(np.uint8)
    buf = tmp_path / "logo.png"
    Image.fromarray(arr, mode="RGBA").save(buf)
    assert np.allclose(load_patch_png(buf), arr / 255.0)
    ws = Workspace(tmp_path / "ws")
    rel = save_patch(ws, "my logo!.png", buf.read_bytes())
    assert rel == "rare/patches/my_logo.png" and list_patches(ws) == [rel]
    assert patch_preview(ws, rel).shape == (2, 2, 4)
    pattern = PatchPattern(PatchSpec(path=rel, position=(0, 0)), root=ws.root)   # relative to the workspace
    assert np.allclose(pattern.rgba, arr / 255.0)
    with pytest.raises(SpurAuditError, match="not an image"):
        save_patch(ws, "bad.png", b"not a png")
    with pytest.raises(SpurAuditError, match="not found"):
        load_patch_png(tmp_path / "missing.png")


def test_inject_with_a_patch_and_the_norms():
    y = torch.tensor([0, 1, 0, 1, 0])
    x = torch.zeros(5, 1, 4, 4)
    new, idx = inject(x, y, pattern=PatchPattern(PatchSpec(path="-", position=(0, 0)), rgba=np.ones((2, 2, 4))),
                      n=2, target=0, seed=0)
    assert len(idx) == 2 and set(y[idx].tolist()) == {0}
    assert new[idx].flatten(1).sum(1).tolist() == [4.0, 4.0] and new.sum() == 8.0
    z = torch.zeros(3, 1, 28, 28)
    assert pattern_l2_norm(z, "s3") == pytest.approx(5.0)                       # 25 pixels 0 → 1
    assert pattern_l2_norm(torch.zeros(2, 3, 28, 28), "s1") == pytest.approx(3 ** 0.5)
    assert pattern_l2_norm(z, "core") == pytest.approx((22 * 3) ** 0.5)
    ones = torch.ones(2, 1, 28, 28)
    assert pattern_l2_norm(ones, "r3") == 0.0                                   # clipping: nothing changes
    u = apply_pattern(z, "r2", noise_seed=1) - z
    assert pattern_l2_norm(z, "r2", noise_seed=1) == pytest.approx(float(u[0].norm()))
