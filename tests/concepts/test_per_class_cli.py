"""CLI `concepts clip-rank --per-class FILE` (CSV: class,kind,text) with a random-init tiny CLIP: the
overrides reach the saved ranking, a bad row is a message naming its line (exit 2, no traceback).
This checks plumbing, not CLIP's semantics."""
import json

import pytest
import torch

from core.cli import main as cli_main
from tests.concepts.tiny_clip import register_tiny_clip


@pytest.fixture(scope="module")
def tex_ws(tmp_path_factory):
    from core.data import build_dataset
    from core.workspace import Workspace

    folder = tmp_path_factory.mktemp("clipcfg")
    register_tiny_clip(folder)
    torch.manual_seed(0)
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    build_dataset(ws, "digits-on-textures", "tex", n_train=20, n_val=30, n_test=10, size=32, digit_size=(16, 24),
                  rho=0.9)
    return ws


def _clip_rank(ws, *extra):
    return cli_main(["concepts", "clip-rank", "--workspace", str(ws.root), "--dataset", "tex", "--split", "val",
                     "--concept", "grass", "--clip-model", "spuraudit-tiny-clip", "--clip-weights", "",
                     "--device", "cpu", "--json", *extra])


def test_per_class_file_reaches_the_ranking(tex_ws, tmp_path, capsys):
    from core.concepts.artifacts import list_concept_rankings

    path = tmp_path / "per_class.csv"
    path.write_text("class,kind,text\n3,spurious,gravel\n3,spurious,a brick wall\n7,core,a digit seven\n")
    code = _clip_rank(tex_ws, "--per-class", str(path), "--name", "own")
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["n"] == 30 and out["core_default"] == "class name"
    assert out["per_class"] == {"3": {"spurious": ["gravel", "a brick wall"]}, "7": {"core": ["a digit seven"]}}
    (ranking,) = [r for r in list_concept_rankings(tex_ws, "tex") if r.name == "own"]
    assert ranking.per_class == out["per_class"] and "a digit seven" in ranking.columns


@pytest.mark.parametrize("content, message", [
    ("class,kind,text\n3,backdrop,gravel\n", "line 2 (class '3'): kind 'backdrop' must be spurious or core"),
    ("class,kind,text\nzebra,spurious,gravel\n", "unknown class 'zebra'"),
    ("label,text\n", "the header must be class,kind,text"),
])
def test_bad_per_class_file_is_a_message(tex_ws, tmp_path, capsys, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    code = _clip_rank(tex_ws, "--per-class", str(path))
    out = json.loads(capsys.readouterr().out)
    assert code == 2 and message in out["error"] and "Traceback" not in out["error"]
