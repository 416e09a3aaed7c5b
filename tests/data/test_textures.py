"""digits-on-textures: determinism, exact bias fractions, masks where the digit was drawn."""
from __future__ import annotations

import numpy as np
import pytest

from core.data.synthetic.textures import (TextureComposer, TextureConfig, assign_biases,
                                          build_digits_on_textures, generate_digits_on_textures)
from core.errors import SpurAuditError


@pytest.fixture(scope="module")
def composer() -> TextureComposer:
    return TextureComposer()


def test_assign_biases_exact_counts_per_class():
    labels = np.repeat(np.arange(10), 40)          # 40 per class
    for rho in (0.95, 0.5, 0.1):
        b = assign_biases(labels, rho, np.random.default_rng(0))
        for c in range(10):
            bc = b[labels == c]
            assert (bc == c).sum() == round(rho * 40)
            other = np.bincount(bc[bc != c], minlength=10)
            other = np.delete(other, c)
            assert other.max() - other.min() <= 1          # conflicting spread evenly over the 9 others
    with pytest.raises(SpurAuditError):
        assign_biases(labels, 1.5, np.random.default_rng(0))


def test_mask_is_where_the_digit_was_drawn(composer):
    rng = np.random.default_rng(3)
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255                         # a bar of full ink
    x, m = composer.compose(np.stack([digit] * 4), np.array([0, 3, 5, 9]), rng=rng, region="train")
    cfg = composer.config
    assert x.shape == (4, 3, 64, 64) and x.dtype == np.float32 and m.shape == (4, 64, 64)
    for i in range(4):
        assert m[i].sum() > 20
        # full ink -> pure white; the texture never reaches bg_high < 1, so white pixels lie in the mask
        white = (x[i] > 0.99).all(axis=0)
        assert white[m[i]].mean() > 0.5
        # alpha >= 0.5 in the mask: every mask pixel is at least half-way to white
        assert x[i][:, m[i]].min() >= 0.5 + 0.5 * cfg.bg_low - 1e-5
        assert not white[~m[i]].any()
        assert x[i][:, ~m[i]].max() <= 1.0 and x[i].min() >= cfg.bg_low - 1e-6


def test_train_and_eval_regions_are_disjoint(composer):
    bank = composer.bank
    for b in range(10):
        _, _, tx0, tx1 = bank.regions(b, "train")
        _, _, ex0, _ = bank.regions(b, "eval")
        assert tx1 + bank.config.size <= ex0        # last train crop ends before first eval crop starts


def test_builder_deterministic_with_exact_fractions(tmp_path):
    kw = dict(seed=1, rho=0.9, rho_eval=0.5, n_train=40, n_val=20, n_test=20)
    m1 = build_digits_on_textures(tmp_path / "a", **kw)
    m2 = build_digits_on_textures(tmp_path / "b", **kw)
    df = m1.df
    assert list(df.columns[:4]) == ["sample_id", "path", "label", "class_name"]
    assert df.equals(m2.df)
    for col in ("bias", "aligned", "group", "mask_path"):
        assert col in df.columns
    assert (df["aligned"] == (df["bias"] == df["label"])).all()
    assert (df["group"] == df["label"] * 10 + df["bias"]).all()
    for split, rho in (("train", 0.9), ("val", 0.5), ("test", 0.5)):
        s = df[df.split == split]
        for c, g in s.groupby("label"):
            assert g["aligned"].sum() == round(rho * len(g))
    # same pixels and masks from the same seed
    a = m1.split("train")
    b = m2.split("train")
    for i in (0, 7, 39):
        assert np.array_equal(np.asarray(a.load_image(i)), np.asarray(b.load_image(i)))
        assert np.array_equal(a.load_mask(i), b.load_mask(i))
        img = np.asarray(a.load_image(i), dtype=np.float32) / 255
        mask = a.load_mask(i)
        assert mask.shape == (64, 64) and 20 < mask.sum() < 64 * 64 // 2
        assert img[mask].mean() > img[~mask].mean() + 0.3   # the digit is drawn bright
    # the in-memory generator gives the very pixels and masks of the files
    gen = generate_digits_on_textures(**kw)
    for i in (0, 7, 39):
        assert np.array_equal(np.asarray(a.load_image(i)), np.rint(gen["train"].images[i].transpose(1, 2, 0) * 255))
        assert np.array_equal(a.load_mask(i), gen["train"].masks[i])
    assert np.array_equal(gen["val"].biases, m1.split("val").bias)
    other = build_digits_on_textures(tmp_path / "c", **{**kw, "seed": 2})
    assert not np.array_equal(np.asarray(other.split("train").load_image(0)), np.asarray(a.load_image(0)))
    stats = (tmp_path / "a" / "stats.json").read_text()
    assert '"conflicting_fraction"' in stats
    assert m1.attrs["kind"] == "digits-on-textures"
    assert m1.attrs["conflict_fraction"]["train"] == pytest.approx(
        float((~df[df.split == "train"].aligned.astype(bool)).mean()))
    assert m1.attrs["conflict_fraction"]["val"] == pytest.approx(0.5)


def test_builder_rejects_bad_options(tmp_path):
    with pytest.raises(SpurAuditError):
        build_digits_on_textures(tmp_path, rho=1.2, n_train=10, n_val=10, n_test=10)
    with pytest.raises(SpurAuditError):
        build_digits_on_textures(tmp_path, digit_size=(40, 80), n_train=10, n_val=10, n_test=10)
    with pytest.raises(SpurAuditError):
        TextureConfig(bg_low=0.7, bg_high=0.6).validate()
