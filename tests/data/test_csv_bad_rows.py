"""Issue 15, item 1: CSV import never crashes on bad cells (pandas 3 hands out read-only arrays).

* a blank label, a non-integer label (``1.5``) or a negative one is a bad row: listed in the error, or
  with ``--skip-bad`` skipped and written to ``skipped.csv`` with its reason;
* a blank bias value means "unknown" (−1), the manifest convention; a non-integer bias value is a bad row;
* a label column mixing class indices and class names (``0, 1, cat, dog``) is refused with a message
  (it is ambiguous: is ``1`` the second class or a class named "1"?) unless ``class_names`` says how
  to read it;
* an empty path cell is reported as "empty path".
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.data.loaders import load_csv
from core.errors import SpurAuditError
from tests.workspace._cli import cli, no_traceback


def _images(folder: Path, n: int = 12) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((6, 6, 3), 20 * i, np.uint8)).save(folder / f"img{i}.png")


def _write(folder: Path, rows: list[tuple[str, str, str]], name: str = "t.csv") -> Path:
    text = "path,label,bias\n" + "".join(f"{p},{l},{b}\n" for p, l, b in rows)
    (folder / name).write_text(text)
    return folder / name


GOOD = [(f"img{i}.png", str(i % 2), str(i % 2)) for i in range(10)]


@pytest.mark.parametrize("row,reason", [
    (("img10.png", "", "1"), "empty label"),
    (("img10.png", "1.5", "1"), "label '1.5' is not an integer"),
    (("img10.png", "-1", "1"), "unknown label '-1'"),
    (("img10.png", "1", "0.5"), "bias value '0.5' is not an integer"),
    (("", "1", "1"), "empty path"),
])
def test_bad_cells_are_bad_rows(tmp_path, row, reason):
    _images(tmp_path)
    csv = _write(tmp_path, GOOD + [row])
    with pytest.raises(SpurAuditError) as err:
        load_csv(csv, bias_col="bias")
    assert reason in str(err.value) and "outside the dataset root" not in str(err.value)
    m = load_csv(csv, bias_col="bias", skip_bad=True)
    assert len(m) == 10 and len(m.skipped) == 1 and reason in m.skipped[0]["reason"]
    assert m.class_names == ["0", "1"]


def test_blank_bias_is_unknown(tmp_path):
    _images(tmp_path)
    m = load_csv(_write(tmp_path, GOOD + [("img10.png", "1", "")]), bias_col="bias")
    assert len(m) == 11 and m.skipped == []
    row = m.df[m.df["path"] == "img10.png"].iloc[0]
    assert row["bias"] == -1 and pd.isna(row["aligned"])


def test_mixed_numeric_and_text_labels_are_refused(tmp_path):
    _images(tmp_path)
    rows = [(f"img{i}.png", ["0", "1", "cat", "dog"][i % 4], "0") for i in range(8)]
    csv = _write(tmp_path, rows)
    for skip_bad in (False, True):
        with pytest.raises(SpurAuditError, match="mixes class indices") as err:
            load_csv(csv, skip_bad=skip_bad)
        assert "'cat'" in str(err.value) and "'0'" in str(err.value)
    # with class_names the reading is explicit: numbers are indices, text are names
    m = load_csv(csv, class_names=["cat", "dog"])
    assert m.class_names == ["cat", "dog"] and m.labels.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]


def test_cli_skip_bad_writes_skipped_csv(tmp_path):
    _images(tmp_path / "imgs")
    csv = _write(tmp_path / "imgs", GOOD + [("img10.png", "", "1"), ("img11.png", "1.5", ""), ("", "0", "0")])
    ws = tmp_path / "ws"
    proc = cli("dataset", "add", "mine", "--from", "csv", str(csv), "--bias-col", "bias", workspace=ws)
    assert proc.returncode == 2 and no_traceback(proc), proc.stderr
    assert "empty label" in proc.stderr and "empty path" in proc.stderr
    proc = cli("dataset", "add", "mine", "--from", "csv", str(csv), "--bias-col", "bias", "--skip-bad", "--json",
               workspace=ws)
    assert proc.returncode == 0 and no_traceback(proc), proc.stderr
    out = json.loads(proc.stdout)
    assert out["n"] == 10 and out["skipped"] == 3
    skipped = pd.read_csv(out["skipped_csv"], keep_default_na=False)
    reasons = dict(zip(skipped["path"], skipped["reason"]))
    assert "empty label" in reasons["img10.png"] and "not an integer" in reasons["img11.png"]
    assert reasons[""] == "empty path"
