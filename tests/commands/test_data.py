"""`python -m core dataset build|add|show|list` (in-process)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from core.cli import main

torch.set_num_threads(1)


def _cli(capsys, *argv) -> tuple[int, dict]:
    code = main(list(argv) + ["--json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out  # exactly one JSON object on stdout
    return code, json.loads(out[0])


def test_cli_build_show_list(tmp_path, capsys):
    ws = str(tmp_path / "ws")
    code, out = _cli(capsys, "dataset", "build", "colored-mnist", "--name", "c1", "--conflict", "0.02",
                     "--n-train", "150", "--n-val", "20", "--n-test", "20", "--seed", "1", "--workspace", ws)
    assert code == 0 and out["name"] == "c1" and out["splits"] == {"train": 150, "val": 20, "test": 20}
    assert out["conflict_fraction"]["train"] == pytest.approx(3 / 150)
    code, out = _cli(capsys, "dataset", "build", "biased-mnist", "--name", "b1", "--conflict", "0.1",
                     "--n-train", "100", "--n-val", "20", "--n-test", "20", "--workspace", ws)
    assert code == 0 and out["params"]["rho"] == pytest.approx(0.9)
    code, out = _cli(capsys, "dataset", "build", "biased-mnist", "--name", "b2", "--rho", "0.9", "--train-copies", "2",
                     "--n-train", "100", "--n-val", "20", "--n-test", "20", "--workspace", ws)
    assert code == 0 and out["splits"]["train"] == 200 and out["params"]["train_copies"] == 2
    code, out = _cli(capsys, "dataset", "build", "multi-color-mnist", "--name", "m1", "--rho-left", "0.9",
                     "--n-train", "100", "--n-val", "20", "--n-test", "20", "--workspace", ws)
    assert code == 0 and out["bias_columns"] == ["bias_left", "bias_right"]
    assert out["conflict_fraction_by_bias"]["bias_left"]["train"] == pytest.approx(0.1)
    assert out["conflict_fraction_by_bias"]["bias_right"]["train"] == pytest.approx(0.05)
    code, out = _cli(capsys, "dataset", "show", "m1", "--workspace", ws)
    assert out["summary"]["splits"]["train"]["conflict_fraction_by_bias"] == {
        "bias_left": pytest.approx(0.1), "bias_right": pytest.approx(0.05)}
    code, out = _cli(capsys, "dataset", "show", "c1", "--workspace", ws)
    assert code == 0 and out["summary"]["splits"]["train"]["conflicting"] == 3
    code, out = _cli(capsys, "dataset", "list", "--workspace", ws)
    assert [d["name"] for d in out["datasets"]] == ["b1", "b2", "c1", "m1"]
    # user errors: exit 2 with a JSON error object
    code, out = _cli(capsys, "dataset", "build", "multi-color-mnist", "--name", "m2", "--conflict", "0.1",
                     "--workspace", ws)
    assert code == 2 and "--rho-left" in out["error"]
    code, out = _cli(capsys, "dataset", "build", "colored-mnist", "--name", "c2", "--sigma", "0.01",
                     "--rho-left", "0.5", "--workspace", ws)
    assert code == 2 and "--rho-left does not apply" in out["error"]
    code, out = _cli(capsys, "dataset", "show", "nope", "--workspace", ws)
    assert code == 2 and "c1" in out["error"]


def test_cli_add_csv_and_errors(tmp_path, capsys):
    ws = str(tmp_path / "ws")
    data = tmp_path / "csvdata"
    rows = []
    for i in range(10):
        (data / "im").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(data / "im" / f"{i}.png")
        rows.append({"file": f"im/{i}.png", "cls": i % 2, "attr": (i // 2) % 2, "part": i % 3})
    rows.append({"file": "im/lost.png", "cls": 0, "attr": 0, "part": 0})
    pd.DataFrame(rows).to_csv(data / "meta.csv", index=False)
    args = ["dataset", "add", "mine", "--from", "csv", str(data / "meta.csv"), "--path-col", "file",
            "--label-col", "cls", "--bias-col", "attr", "--split-col", "part", "--workspace", ws]
    code, out = _cli(capsys, *args)
    assert code == 2 and "im/lost.png (missing image file)" in out["error"] and "--skip-bad" in out["error"]
    code, out = _cli(capsys, *args, "--skip-bad")
    assert code == 0 and out["n"] == 10 and out["skipped"] == 1 and out["skipped_csv"].endswith("skipped.csv")
    assert out["bias_columns"] == ["bias"] and out["splits"] == {"train": 4, "val": 3, "test": 3}
    code, out = _cli(capsys, "dataset", "add", "x", "--from", "csv", str(data / "meta.csv"), "--workspace", ws)
    assert code == 2 and "no column(s)" in out["error"] and "'file'" in out["error"]
    code, out = _cli(capsys, "dataset", "add", "y", "--from", "waterbirds", str(data), "--label-col", "cls",
                     "--workspace", ws)
    assert code == 2 and "--label-col does not apply" in out["error"]


def test_cli_text_output(tmp_path, capsys):
    ws = str(tmp_path / "ws")
    assert main(["dataset", "list", "--workspace", ws]) == 0
    assert "no datasets yet" in capsys.readouterr().out
