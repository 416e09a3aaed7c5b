"""`python -m core rare ...` (in process): sweep, show, runs, score, unlearn, canary errors, --json."""
import json

import pytest
import torch

from core.cli import main
from core.workspace import Workspace
from tests.rare.fixtures import draw_logo, tiny_cmnist


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def run_json(capsys, *argv) -> tuple[int, dict]:
    code = main(list(argv) + ["--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


TINY = ["--data", "digits", "--n-train", "200", "--epochs", "2", "--seeds", "0,1", "--no-membership",
        "--set", "model_kwargs={\"hidden\": [16]}", "--device", "cpu"]


def test_sweep_show_runs_and_errors(tmp_path, capsys):
    ws = str(tmp_path / "ws")
    code, out = run_json(capsys, "rare", "sweep", "--workspace", ws, "--patterns", "s3,core", "--counts", "4",
                         "--regularisers", "none,noise=0.2", *TINY)
    assert code == 0 and out["cells_total"] == 2 * 2 * (1 + 2) and out["cells_run"] == out["cells_total"]
    cells = out["summary"]["cells"]
    assert {(c["pattern"], c["n"], c["regulariser"]) for c in cells} >= {("s3", 4, "noise=0.2"), ("core", 0, "none")}
    assert all(c["l2_norm"] > 0 for c in cells)
    code, again = run_json(capsys, "rare", "sweep", "--workspace", ws, "--patterns", "s3,core", "--counts", "4",
                           "--regularisers", "none,noise=0.2", *TINY)
    assert code == 0 and again["run_id"] == out["run_id"] and again["cells_run"] == 0   # read back, nothing trained
    code, fresh = run_json(capsys, "rare", "sweep", "--workspace", ws, "--patterns", "s3", "--counts", "4", "--fresh",
                           *TINY)
    assert code == 0 and fresh["run_id"] != out["run_id"] and fresh["cells_run"] == 2 * 2
    code, shown = run_json(capsys, "rare", "show", str(out["run_id"]), "--workspace", ws)
    assert code == 0 and shown["status"] == "done" and shown["progress"] == [12, 12]
    code, listed = run_json(capsys, "rare", "runs", "--workspace", ws)
    assert [r["id"] for r in listed["runs"]] == [fresh["run_id"], out["run_id"]]
    for argv, msg in [(["--patterns", "s7"], "unknown pattern 's7'"),
                      (["--counts", "0,5000"], "larger than class 0"),
                      (["--regularisers", "dropout=0.5"], "bad regulariser"),
                      (["--set", "epochz=3"], "unknown rare sweep option")]:
        code, err = run_json(capsys, "rare", "sweep", "--workspace", ws, *TINY, *argv)
        assert code == 2 and msg in err["error"], err


def test_score_unlearn_and_canary_commands(tmp_path, capsys):
    from core.models.workspace_models import train_workspace_model

    ws = Workspace(tmp_path / "ws")
    tiny_cmnist(ws)
    train_workspace_model(ws, "cnn", dataset="cmnist", arch="small_cnn", model_kwargs={"widths": [4, 8]},
                          config={"epochs": 1}, device="cpu")
    code, out = run_json(capsys, "rare", "score", "--workspace", str(ws.root), "--model", "cnn", "--dataset", "cmnist",
                         "--pattern", "r3")
    assert code == 0 and out["models"][0]["model"] == "cnn" and 0.0 <= out["models"][0]["score"] <= 1.0
    big = draw_logo(tmp_path / "big.png", size=40)
    code, err = run_json(capsys, "rare", "score", "--workspace", str(ws.root), "--model", "cnn", "--dataset", "cmnist",
                         "--patch", str(big))
    assert code == 2 and "40×40 pixels" in err["error"] and "28×28" in err["error"]
    code, out = run_json(capsys, "rare", "unlearn", "--workspace", str(ws.root), "--data", "digits", "--pattern", "s3",
                         "--n", "5", "--seeds", "0,1", "--epochs", "2", "--deletion-epochs", "1", "--lissa-iterations",
                         "2", "--n-train", "200", "--set", "model_kwargs={\"hidden\": [16]}", "--device", "cpu")
    assert code == 0 and out["deletion"][0]["score_after_retraining"] is not None
    logo = draw_logo(tmp_path / "logo.png")
    code, out = run_json(capsys, "rare", "canary", "--workspace", str(ws.root), "--dataset", "cmnist", "--model", "cnn",
                         "--patch", str(logo), "--counts", "0,6", "--seeds", "0,1", "--epochs", "1", "--device", "cpu")
    assert code == 0 and out["recipe"]["arch"] == "small_cnn" and out["recipe"]["model_kwargs"]["widths"] == [4, 8]
    assert [r["n"] for r in out["verdict"]["per_n"]] == [0, 6] and "learned_n" in out
    code, err = run_json(capsys, "rare", "canary", "--workspace", str(ws.root), "--dataset", "cmnist",
                         "--pattern", "s3", "--counts", "0,500", "--seeds", "0,1")
    assert code == 2 and "larger than class 0" in err["error"]
