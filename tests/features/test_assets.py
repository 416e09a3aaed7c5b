"""`core.features.assets`: batched overlays and feature attacks give the files (and pixels) that the
one-at-a-time `core.features.maps.cached_overlay` / `cached_attack` give, skip existing files, and the
labelling-assets job fills the cache for a model over the page's live-rendering limit."""
import numpy as np
import torch
from PIL import Image

from core.data import build_dataset, load_manifest
from core.features.assets import plan_pairs, render_attacks, render_overlays, top_activating_rows
from core.features.maps import cached_attack, cached_overlay
from core.models.registry import build_model
from core.workspace import Workspace

torch.set_num_threads(1)


def _setup(tmp_path):
    ws = Workspace(tmp_path / "ws")
    build_dataset(ws, "colored-mnist", "cm", seed=0, n_train=40, n_val=10, n_test=10)
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=10, widths=(4, 8, 8)).eval()
    return ws, load_manifest(ws, "cm").split("train"), model


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_batched_overlays_and_attacks_match_single(tmp_path):
    ws, man, model = _setup(tmp_path)
    other = Workspace(tmp_path / "single")
    pairs = [(0, 1), (0, 3), (5, 2), (7, 7)]
    got = render_overlays(ws, "cm", "m", model, man, pairs, size=32, device="cpu", batch_size=3)
    assert set(got) == set(pairs)
    for r, j in pairs:
        single = cached_overlay(other, "cm", "m", model, man, r, j, size=32, device="cpu")
        assert ws.rel(got[(r, j)]) == other.rel(single)                       # the page's cache file
        assert np.abs(_pixels(got[(r, j)]) - _pixels(single)).max() <= 1
    att = render_attacks(ws, "cm", "m", model, man, pairs[:2], size=32, steps=5, device="cpu", batch_size=2)
    for r, j in pairs[:2]:
        single = cached_attack(other, "cm", "m", model, man, r, j, size=32, steps=5, device="cpu")
        assert ws.rel(att[(r, j)]) == other.rel(single)
        assert np.abs(_pixels(att[(r, j)]) - _pixels(single)).max() <= 2
    # resumable: existing files are kept, nothing is rendered again
    before = {p: got[p].stat().st_mtime_ns for p in pairs}
    calls = []
    again = render_overlays(ws, "cm", "m", model, man, pairs, size=32, device="cpu",
                            progress=lambda f, m: calls.append(m))
    assert {p: again[p].stat().st_mtime_ns for p in pairs} == before
    assert calls == ["4 overlays cached"]


def test_plan_follows_top_activating_rows(tmp_path):
    from core.features.extract import extract_to_workspace
    from core.features.store import load_features
    from core.models.checkpoints import save_workspace_model

    ws, man, model = _setup(tmp_path)
    save_workspace_model(ws, "m", model, dataset="cm")
    extract_to_workspace(ws, "cm", "m", "train", device="cpu")
    fs = load_features(ws, "cm", "m", "train")
    plan = plan_pairs(fs, [(0, 1), (3, 2)], n_images=3, n_attack=1)
    rows0 = top_activating_rows(fs, 0, 1, 3)
    assert plan.overlays[:len(rows0)] == [(int(r), 1) for r in rows0]
    assert plan.attacks[0] == (int(rows0[0]), 1) and len(plan.attacks) == 2
    acts = np.asarray(fs.features[rows0, 1], dtype=np.float32)
    assert (np.diff(acts) <= 0).all() and set(fs.labels[rows0]) == {0}
