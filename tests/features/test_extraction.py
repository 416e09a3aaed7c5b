"""Feature extraction (`core.features.extract`): values, resume after a kill, the workspace round trip and
loading (torchrun sharding: test_sharding.py; the CLI: tests/commands/test_extract.py, hence this
file's name: test basenames are unique across tests/)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import SpurAuditError
from core.features import FeatureSet, load_features
from core.features.extract import extract_features, extract_to_workspace
from core.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _standin import TripleDataset, array_bytes, make_data, make_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
torch.set_num_threads(1)


@pytest.fixture()
def ws(tmp_path: Path) -> Workspace:
    w = Workspace(tmp_path / "ws")
    w.add_dataset("toy", manifest_rel="datasets/toy/manifest.parquet", root_rel="datasets/toy", source="test",
                  class_names=["a", "b", "c"])
    w.add_model("tiny", dataset="toy", arch="tiny", checkpoint_rel="models/tiny/model.pt")
    return w


def test_values_dtypes_and_alignment(tmp_path: Path) -> None:
    model, data = make_model(), make_data()
    feats, logits = extract_features(model, TripleDataset(data), out_dir=tmp_path / "a", batch_size=10,
                                     chunk_size=25, device="cpu")
    assert isinstance(feats, np.memmap) and feats.dtype == np.float16 and feats.shape == (103, 6)
    assert logits.dtype == np.float32 and logits.shape == (103, 3)
    assert not feats.flags.writeable
    x, y = data.tensors
    with torch.no_grad():
        ref_f = model.features(x)
        ref_l = model.forward_head(ref_f)
    np.testing.assert_allclose(feats.astype(np.float32), ref_f.numpy(), rtol=2e-3, atol=1e-3)
    np.testing.assert_allclose(logits, ref_l.numpy(), rtol=1e-5, atol=1e-5)
    assert np.array_equal(np.load(tmp_path / "a/labels.npy"), y.numpy())
    # the TensorDataset fast path gives the same bytes as the DataLoader path
    extract_features(model, data, out_dir=tmp_path / "b", batch_size=10, chunk_size=25, device="cpu")
    assert array_bytes(tmp_path / "a") == array_bytes(tmp_path / "b")
    # DataLoader worker processes give the same bytes
    extract_features(model, TripleDataset(data), out_dir=tmp_path / "w", batch_size=10, chunk_size=25, device="cpu",
                     num_workers=2)
    assert array_bytes(tmp_path / "w") == array_bytes(tmp_path / "a")
    # a sub-range is row-aligned with the dataset
    f2, _ = extract_features(model, data, out_dir=tmp_path / "c", batch_size=10, index_range=(37, 61), device="cpu")
    assert np.array_equal(f2, feats[37:61])
    with pytest.raises(SpurAuditError, match="outside the dataset"):
        extract_features(model, data, out_dir=tmp_path / "d", index_range=(0, 500))
    with pytest.raises(SpurAuditError, match="batch_size"):
        extract_features(model, data, out_dir=tmp_path / "d", batch_size=0)
    with pytest.raises(SpurAuditError, match="forward_head"):
        extract_features(torch.nn.Linear(2, 2), data, out_dir=tmp_path / "d")


class Killed(RuntimeError):
    pass


def test_resume_after_kill_is_byte_identical(tmp_path: Path) -> None:
    data = make_data()
    full = tmp_path / "full"
    extract_features(make_model(), data, out_dir=full, batch_size=8, chunk_size=16, device="cpu")

    part = tmp_path / "part"
    seen: list[float] = []

    def die_midway(fraction: float, message: str) -> None:
        seen.append(fraction)
        if fraction > 0.55:  # dies in the middle of a chunk, after several commits
            raise Killed(message)

    with pytest.raises(Killed):
        extract_features(make_model(), data, out_dir=part, batch_size=8, chunk_size=16, device="cpu",
                         progress=die_midway)
    state = json.loads((part / "progress.json").read_text())
    assert state["status"] == "running" and 0 < state["done"] < 103 and state["done"] % 16 == 0
    assert not (part / "features.npy").exists()

    model = make_model()
    fractions: list[float] = []
    extract_features(model, data, out_dir=part, batch_size=8, chunk_size=16, device="cpu",
                     progress=lambda f, m: fractions.append(f))
    # only the uncommitted rows were recomputed
    assert model.calls == int(np.ceil((103 - state["done"]) / 8))
    assert fractions[0] > state["done"] / 103 - 1e-9
    assert array_bytes(part) == array_bytes(full)
    assert not list(part.glob("*.partial.npy"))

    # a completed run is returned without recomputation; a different model starts over
    again = make_model()
    extract_features(again, data, out_dir=part, batch_size=8, chunk_size=16, device="cpu")
    assert again.calls == 0
    other = make_model(seed=5)
    f_other, _ = extract_features(other, data, out_dir=part, batch_size=8, chunk_size=16, device="cpu")
    assert other.calls == 13 and not np.array_equal(f_other, np.load(full / "features.npy"))


_KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, sys.argv[2])
import torch
torch.set_num_threads(1)
from _standin import make_data, make_model
from core.features.extract import extract_features
def progress(f, m):
    if f > 0.4:
        os.kill(os.getpid(), signal.SIGKILL)   # a real kill mid-run (like OOM or Ctrl-\\\\)
extract_features(make_model(), make_data(), out_dir=sys.argv[1], batch_size=8, chunk_size=16, device="cpu",
                 progress=progress)
"""


def test_resume_after_real_sigkill(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(out), str(Path(__file__).parent)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    done = json.loads((out / "progress.json").read_text())["done"]
    assert 0 < done < 103
    extract_features(make_model(), make_data(), out_dir=out, batch_size=8, chunk_size=16, device="cpu")
    extract_features(make_model(), make_data(), out_dir=tmp_path / "ref", batch_size=8, chunk_size=16, device="cpu")
    assert array_bytes(out) == array_bytes(tmp_path / "ref")


def test_workspace_roundtrip_and_load(ws: Workspace) -> None:
    rec = extract_to_workspace(ws, "toy", "tiny", "train", batch_size=8, chunk_size=16, device="cpu",
                               module=make_model(), data=make_data())
    assert (rec.n, rec.dim, rec.num_classes) == (103, 6, 3)
    assert rec.features_rel == "features/toy/tiny/train/features.npy"
    fs = load_features(ws, "toy", "tiny", "train")
    assert isinstance(fs, FeatureSet) and fs.features.dtype == np.float16 and fs.logits.dtype == np.float32
    assert isinstance(fs.features, np.memmap)
    y = make_data().tensors[1].numpy()
    assert np.array_equal(fs.labels, y)
    assert np.array_equal(fs.preds(chunk=10), np.asarray(fs.logits).argmax(1))
    assert fs.accuracy() == pytest.approx(float((fs.preds() == y).mean()))
    assert np.array_equal(fs.class_rows(1), np.flatnonzero(y == 1))
    with pytest.raises(SpurAuditError, match="python -m core extract --dataset toy --model tiny --split val"):
        load_features(ws, "toy", "tiny", "val")
