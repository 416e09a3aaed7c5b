"""`audit` with no labels at all (issue 11): says so plainly, lists the ways to get labels, exit 0, no
``nan`` in the text or the JSON; `gaps` on a split with no ranked class names the command that ranks it."""
import json

import pytest

from core.cli import main as cli_main
from tests.audit.audited_workspace import unaudited_workspace


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    return unaudited_workspace(tmp_path_factory.mktemp("ws"))


def test_audit_without_labels_says_so(unlabelled, capsys):
    ws = unlabelled
    base = ["--workspace", str(ws.root), "--dataset", "tex", "--model", "cnn"]
    code = cli_main(["audit", *base, "--label-source", "none", "--k", "2", "--device", "cpu"])
    text = capsys.readouterr().out
    assert code == 0
    assert "nan" not in text.lower()
    assert "no feature is labelled spurious yet" in text and "Features page" in text
    assert "label masks --dataset tex --model cnn" in text          # the dataset has masks
    assert "concepts sam-labels" in text and "label import" in text
    code = cli_main(["audit", *base, "--label-source", "none", "--k", "2", "--device", "cpu", "--json"])
    raw = capsys.readouterr().out
    assert code == 0 and "nan" not in raw.lower()
    out = json.loads(raw)
    assert out["ranked_classes"] == 0 and len(out["next_steps"]) >= 4

    code = cli_main(["gaps", *base, "--split", "val"])
    err = capsys.readouterr().err
    assert code == 2 and "nan" not in err.lower()
    assert "python -m core rank --dataset tex --model cnn --split val" in err
    code = cli_main(["gaps", *base, "--split", "test"])          # never ranked
    assert code == 2 and "python -m core rank --dataset tex --model cnn --split test" in capsys.readouterr().err
    code = cli_main(["rank", *base, "--split", "train"])
    text = capsys.readouterr().out
    assert code == 0 and "ranked 0 classes" in text and "Ways to get labels" in text
