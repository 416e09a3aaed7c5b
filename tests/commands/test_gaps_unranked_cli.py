"""CLI ``gaps``: unranked classes are counted by their true reason (issue 12) in the text output and
listed in the JSON (the reasons themselves: tests/audit/test_coverage.py)."""
import json

import pytest

from core.cli import main as cli_main
from tests.audit.audited_workspace import build_audited_workspace


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    return build_audited_workspace(tmp_path_factory.mktemp("ws"))


def test_unranked_summary_and_list(audited, capsys):
    ws, _ = audited
    base = ["gaps", "--workspace", str(ws.root), "--dataset", "tex", "--model", "cnn", "--split", "val",
            "--n-boot", "50"]
    assert cli_main(base + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ranked = sum(r["ranked"] for r in out["per_class"])
    assert sum(out["unranked_counts"].values()) == len(out["unranked"]) == 10 - ranked
    assert all(r["why"] and r["reason"] for r in out["unranked"])
    assert all(r["reason"] == "" for r in out["per_class"] if r["ranked"])
    assert cli_main(base) == 0
    text = capsys.readouterr().out
    assert ("All 10 classes are ranked." if ranked == 10 else "of 10 classes are not ranked:") in text
