"""CLI of the concept steps (`core/commands/concepts.py`): CLIP concept spuriosity as JSON with a
random-init tiny CLIP (the plumbing, not CLIP's quality), the actions' help, missing options,
`clip-rank --per-class FILE`."""
import json

import pytest
import torch

from core.cli import main as cli_main
from tests.concepts.tiny_clip import register_tiny_clip


@pytest.fixture(scope="module")
def tex_workspace(tmp_path_factory):
    from core.data import build_dataset
    from core.workspace import Workspace

    folder = tmp_path_factory.mktemp("clipcfg")
    register_tiny_clip(folder)
    torch.manual_seed(0)
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    build_dataset(ws, "digits-on-textures", "tex", n_train=20, n_val=30, n_test=10, size=32, digit_size=(16, 24),
                  rho=0.9)
    return ws


def test_clip_rank_json(tex_workspace, capsys):
    ws = tex_workspace
    code = cli_main(["concepts", "clip-rank", "--workspace", str(ws.root), "--dataset", "tex", "--split", "val",
                     "--concept", "brick wall", "--core-concept", "a digit", "--clip-model", "spuraudit-tiny-clip",
                     "--clip-weights", "", "--device", "cpu", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["n"] == 30 and out["concepts"] == ["brick wall"] and out["core_concepts"] == ["a digit"]
    assert out["clip"] == {"model": "spuraudit-tiny-clip", "pretrained": None}
    assert ws.open_npy(out["spuriosity"], mmap=False).shape == (30,)
    assert 0.0 <= out["auroc_aligned_vs_conflicting"] <= 1.0


def test_clip_labels_needs_a_discovery(tex_workspace, capsys):
    code = cli_main(["concepts", "clip-labels", "--workspace", str(tex_workspace.root), "--dataset", "tex",
                     "--model", "cnn", "--concept", "grass", "--clip-model", "spuraudit-tiny-clip", "--clip-weights",
                     "", "--device", "cpu", "--json"])
    assert code == 2 and "python -m core discover" in json.loads(capsys.readouterr().out)["error"]


@pytest.mark.parametrize("action, options", [
    ("clip-rank", ["--dataset", "--split", "--core-concept", "--clip-model", "--clip-weights", "--concept", "--device"]),
    ("clip-labels", ["--dataset", "--model", "--top-n", "--clip-model", "--concept"]),
    ("sam-labels", ["--dataset", "--model", "--sam-type", "--sam-checkpoint", "--split", "--device"]),
])
def test_help_lists_the_options(action, options, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["concepts", action, "--help"])
    text = capsys.readouterr().out
    assert exit_.value.code == 0 and all(o in text for o in options), text


def test_concepts_without_an_action_prints_its_help(capsys):
    assert cli_main(["concepts"]) == 0
    out = capsys.readouterr().out
    assert all(a in out for a in ("clip-rank", "clip-labels", "sam-labels"))


def test_a_missing_concept_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["concepts", "clip-rank", "--dataset", "tex"])
    assert exit_.value.code == 2 and "--concept" in capsys.readouterr().err


# --per-class FILE (CSV: class,kind,text): the overrides reach the saved ranking; a bad row is a message
# naming its line (exit 2, no traceback)
def _clip_rank(ws, *extra):
    return cli_main(["concepts", "clip-rank", "--workspace", str(ws.root), "--dataset", "tex", "--split", "val",
                     "--concept", "grass", "--clip-model", "spuraudit-tiny-clip", "--clip-weights", "",
                     "--device", "cpu", "--json", *extra])


def test_per_class_file_reaches_the_ranking(tex_workspace, tmp_path, capsys):
    from core.concepts.artifacts import list_concept_rankings

    path = tmp_path / "per_class.csv"
    path.write_text("class,kind,text\n3,spurious,gravel\n3,spurious,a brick wall\n7,core,a digit seven\n")
    code = _clip_rank(tex_workspace, "--per-class", str(path), "--name", "own")
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["n"] == 30 and out["core_default"] == "class name"
    assert out["per_class"] == {"3": {"spurious": ["gravel", "a brick wall"]}, "7": {"core": ["a digit seven"]}}
    (ranking,) = [r for r in list_concept_rankings(tex_workspace, "tex") if r.name == "own"]
    assert ranking.per_class == out["per_class"] and "a digit seven" in ranking.columns


@pytest.mark.parametrize("content, message", [
    ("class,kind,text\n3,backdrop,gravel\n", "line 2 (class '3'): kind 'backdrop' must be spurious or core"),
    ("class,kind,text\nzebra,spurious,gravel\n", "unknown class 'zebra'"),
    ("label,text\n", "the header must be class,kind,text"),
])
def test_bad_per_class_file_is_a_message(tex_workspace, tmp_path, capsys, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    code = _clip_rank(tex_workspace, "--per-class", str(path))
    out = json.loads(capsys.readouterr().out)
    assert code == 2 and message in out["error"] and "Traceback" not in out["error"]
