"""Issue 15, items 2-4 on the dashboard: a corrupt, empty-beside-artifacts or foreign ``audit.db`` is a
message in the sidebar and on the page (the sidebar runs inside the page guard), never a traceback
with server paths; Home shows the last backup; listing runs reconciles a run whose process is gone."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.workspace import Workspace

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def _run(workspace: Path) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["sa_workspace"] = str(workspace)
    at.run()
    return at


def _all_text(at: AppTest) -> str:
    parts = [str(e.value) for kind in (at.error, at.info, at.markdown, at.caption, at.code, at.text) for e in kind]
    parts += [str(e.value) for e in at.sidebar.error]
    return "\n".join(parts)


def _corrupt(root: Path) -> Path:
    ws = Workspace(root)
    if not ws.has_dataset("d"):
        ws.add_dataset("d", manifest_rel="m", root_rel="r", source="x", class_names=["a"])
    con = sqlite3.connect(ws.db_path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(ws.db_path.read_bytes())
    data[:16] = b"garbage garbage!"
    ws.db_path.write_bytes(bytes(data))
    return ws.db_path


def _foreign(root: Path) -> Path:
    root.mkdir(parents=True)
    con = sqlite3.connect(root / "audit.db")
    con.execute("CREATE TABLE notes (x TEXT)")
    con.commit()
    con.close()
    return root / "audit.db"


@pytest.mark.parametrize("make", [_corrupt, _foreign], ids=["corrupt", "foreign"])
def test_bad_database_is_a_message_not_a_traceback(tmp_path, make):
    db = make(tmp_path / "ws")
    before = db.read_bytes()
    at = _run(tmp_path / "ws")
    assert not at.exception, [e.value for e in at.exception]
    assert at.sidebar.error, "the sidebar says what is wrong"
    text = _all_text(at)
    assert str(db) in text and "Traceback" not in text and "site-packages" not in text
    assert db.read_bytes() == before


def test_database_damaged_after_the_workspace_was_opened(tmp_path):
    root = tmp_path / "ws"
    Workspace(root).add_dataset("d", manifest_rel="m", root_rel="r", source="x", class_names=["a"])
    at = _run(root)
    assert not at.exception
    _corrupt(root)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "audit.db" in _all_text(at) and "Traceback" not in _all_text(at)


def test_home_shows_the_last_backup(tmp_path):
    ws = Workspace(tmp_path / "ws")
    at = _run(ws.root)
    assert "No backup yet" in _all_text(at) and "workspace backup" in _all_text(at)
    ws.backup(tmp_path / "bk")
    at = _run(ws.root)
    text = _all_text(at)
    assert "Last backup" in text and str((tmp_path / "bk").resolve()) in text


def test_home_marks_a_run_whose_process_died_as_failed(tmp_path):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ws = Workspace(tmp_path / "ws")
    ws.add_dataset("d", manifest_rel="m", root_rel="r", source="x", class_names=["a"])
    rid = ws.add_run(method="ffw", dataset=None, model=None)
    ws.set_run_owner(rid, pid=dead.pid, host=__import__("socket").gethostname(), token="")
    at = _run(ws.root)
    assert not at.exception
    assert ws.get_run(rid).status == "failed"
    table = at.dataframe[-1].value
    assert table.loc[table["id"] == rid, "status"].item() == "failed"
