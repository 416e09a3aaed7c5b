"""CLI of the audit (`core/commands/audit.py`): gaps as JSON, the label round trip, the report with
feature attacks, and the --help of every command (their options as before the refactor)."""
import json

import pytest

from core.cli import main as cli_main
from tests.audit.audited_workspace import build_audited_workspace


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    return build_audited_workspace(tmp_path_factory.mktemp("ws"))


def test_cli_gaps_json_and_label_roundtrip(audited, capsys, tmp_path):
    ws, _ = audited
    code = cli_main(["gaps", "--workspace", str(ws.root), "--dataset", "tex", "--model", "cnn", "--split", "val",
                     "--n-boot", "100", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and "cnn" in out["pooled"] and len(out["per_class"]) == 10
    code = cli_main(["label", "add", "--workspace", str(ws.root), "--dataset", "tex", "--model", "cnn",
                     "--class", "2", "--feature", "1", "--answer", "spurious_background", "--annotator", "bo",
                     "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out) == {"written": 1}
    code = cli_main(["label", "export", "--workspace", str(ws.root), "--dataset", "tex", "--model", "cnn",
                     "--out", str(tmp_path / "l.csv"), "--json"])
    capsys.readouterr()
    assert code == 0 and "spurious_background,bo" in (tmp_path / "l.csv").read_text()
    code = cli_main(["label", "add", "--workspace", str(ws.root), "--dataset", "nope", "--model", "cnn",
                     "--class", "2", "--feature", "1", "--answer", "core", "--annotator", "bo", "--json"])
    assert code == 2 and "error" in json.loads(capsys.readouterr().out)


def test_cli_report_with_attacks(audited, capsys):
    ws, _ = audited
    code = cli_main(["report", "--workspace", str(ws.root), "--dataset", "tex", "--model", "cnn", "--split", "val",
                     "--max-classes", "1", "--attack-steps", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["path"].endswith("reports/tex__cnn.html")
    attacks = list(ws.path("cache/attacks").rglob("*_3_0_96.png"))          # steps 3, seed 0, size 96
    assert len(attacks) == 3                                     # one per top feature of the one class shown
    html = ws.path("reports/tex__cnn.html").read_text()
    assert html.count('alt="activation map"') == 3 * (3 + 1)     # 3 overlays + 1 attack per feature


@pytest.mark.parametrize("command, options", [
    (["audit"], ["--dataset", "--model", "--k", "--label-source", "--eval-split", "--quorum", "--device"]),
    (["discover"], ["--dataset", "--model", "--split", "--k", "--group-by", "--device"]),
    (["label", "add"], ["--class", "--feature", "--answer", "--annotator", "--note"]),
    (["label", "import"], ["file", "--format", "--annotator"]),
    (["label", "masks"], ["--split", "--top-n", "--device"]),
    (["gaps"], ["--split", "--models", "--k", "--n-boot", "--seed"]),
    (["sensitivity"], ["--mask-from", "--max-images", "--seed", "--device"]),
    (["report"], ["--split", "--max-classes", "--attack-steps", "--device"]),
])
def test_help_lists_the_options(command, options, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main([*command, "--help"])
    text = capsys.readouterr().out
    assert exit_.value.code == 0 and all(o in text for o in options), text


def test_label_without_an_action_prints_its_help(capsys):
    assert cli_main(["label"]) == 2
    out = capsys.readouterr().out
    assert all(a in out for a in ("add", "import", "export", "show", "agreement", "masks"))
