"""Issue 15, items 3 and 4: a workspace knows itself, and a bad ``audit.db`` gets a clear answer.

* a new workspace carries SpurAudit's SQLite ``application_id``; one made before that (SpurAudit's
  schema, id 0) is adopted; any other SQLite file is refused *untouched* (same bytes, no WAL switch, no
  tables, no -wal/-shm/-journal beside it);
* a 0-byte or missing ``audit.db`` beside artifacts is an error, never a fresh empty workspace;
* a corrupt (bad header, damaged pages) database gives a `SpurAuditError` naming the file and the fix,
  on the CLI exit 2 and no traceback.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core.errors import SpurAuditError
from core.workspace import APPLICATION_ID, DB_NAME, SCHEMA_VERSION, Workspace
from tests.workspace._cli import cli, no_traceback, tree_state
from tests.workspace.test_workspace import V1_SQL


def _header_app_id(db: Path) -> int:
    return int.from_bytes(db.read_bytes()[68:72], "big")


def _foreign(folder: Path, *, wal: bool = False, app_id: int = 0, spuraudit_tables: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / DB_NAME
    con = sqlite3.connect(db)
    if app_id:
        con.execute(f"PRAGMA application_id = {app_id}")
    if wal:
        con.execute("PRAGMA journal_mode = WAL")
    if spuraudit_tables:
        con.executescript(V1_SQL)
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    con.executemany("INSERT INTO notes (text) VALUES (?)", [(f"note {i}",) for i in range(50)])
    con.commit()
    con.close()
    return db


def _with_artifacts(root: Path) -> None:
    (root / "datasets/cm").mkdir(parents=True)
    (root / "datasets/cm/manifest.parquet").write_bytes(b"PAR1 not really")
    (root / "models/cnn").mkdir(parents=True)
    (root / "models/cnn/model.pt").write_bytes(b"weights")


def test_new_workspace_has_application_id(tmp_path):
    ws = Workspace(tmp_path / "w")
    assert _header_app_id(ws.db_path) == APPLICATION_ID
    con = sqlite3.connect(ws.db_path)
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    con.close()


def test_pre_identity_workspace_is_adopted(tmp_path):
    root = tmp_path / "old"
    root.mkdir()
    con = sqlite3.connect(root / DB_NAME)
    con.executescript(V1_SQL)
    con.commit()
    con.close()
    ws = Workspace(root)
    assert ws.schema_version == SCHEMA_VERSION and ws.get_dataset("old").class_names == ["a", "b"]
    con = sqlite3.connect(ws.db_path)
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    con.close()
    assert Workspace(root).list_models()[0].name == "m1"   # and it keeps opening


@pytest.mark.parametrize("kind", ["rollback", "wal", "other-app", "other-app-with-our-tables"])
def test_foreign_database_is_refused_untouched(tmp_path, kind):
    folder = tmp_path / "theirs"
    db = _foreign(folder, wal=kind == "wal", app_id=0x0F055112 if kind.startswith("other-app") else 0,
                  spuraudit_tables=kind == "other-app-with-our-tables")
    before = tree_state(folder)
    with pytest.raises(SpurAuditError, match="not a SpurAudit workspace") as info:
        Workspace(folder)
    assert str(db) in str(info.value) and "untouched" in str(info.value)
    proc = cli("dataset", "list", workspace=folder)
    assert proc.returncode == 2 and no_traceback(proc) and "not a SpurAudit workspace" in proc.stderr
    assert tree_state(folder) == before            # same bytes, no -wal/-shm/-journal left beside it
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == ("wal" if kind == "wal" else "delete")
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert "jobs" not in tables or kind == "other-app-with-our-tables"
    assert "artifact_sizes" not in tables


def test_empty_sqlite_database_of_someone_else_is_refused(tmp_path):
    folder = tmp_path / "empty_sqlite"
    folder.mkdir()
    con = sqlite3.connect(folder / DB_NAME)
    con.execute("PRAGMA user_version = 7")   # a valid SQLite file with a header and no tables
    con.commit()
    con.close()
    before = tree_state(folder)
    with pytest.raises(SpurAuditError, match="not a SpurAudit workspace"):
        Workspace(folder)
    assert tree_state(folder) == before


def test_zero_byte_database_beside_artifacts_is_an_error(tmp_path):
    root = tmp_path / "w"
    Workspace(root)
    _with_artifacts(root)
    (root / DB_NAME).write_bytes(b"")                 # the database was truncated / lost
    before = tree_state(root)
    with pytest.raises(SpurAuditError, match="empty") as info:
        Workspace(root)
    msg = str(info.value)
    assert str(root / DB_NAME) in msg and "datasets/" in msg and "backup" in msg
    proc = cli("dataset", "list", workspace=root)
    assert proc.returncode == 2 and no_traceback(proc) and "0 bytes" in proc.stderr
    assert tree_state(root) == before and (root / DB_NAME).stat().st_size == 0


def test_missing_database_beside_artifacts_is_an_error(tmp_path):
    root = tmp_path / "w"
    _with_artifacts(root)
    with pytest.raises(SpurAuditError, match="no audit.db") as info:
        Workspace(root)
    assert "models/" in str(info.value)
    assert not (root / DB_NAME).exists()


def test_zero_byte_database_alone_starts_a_workspace(tmp_path):
    root = tmp_path / "w"
    root.mkdir()
    (root / DB_NAME).write_bytes(b"")
    ws = Workspace(root)
    assert ws.schema_version == SCHEMA_VERSION and _header_app_id(ws.db_path) == APPLICATION_ID


@pytest.mark.parametrize("damage", ["header", "pages", "truncated"])
def test_corrupt_database_gives_a_clear_error(tmp_path, damage):
    root = tmp_path / "w"
    ws = Workspace(root)
    ws.add_dataset("d", manifest_rel="datasets/d/manifest.parquet", root_rel="datasets/d", source="x",
                   class_names=["a"] * 3)
    con = sqlite3.connect(ws.db_path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(ws.db_path.read_bytes())
    if damage == "header":
        data[:16] = b"this is no db!!!"
    elif damage == "pages":
        page = int.from_bytes(data[16:18], "big") or 65536
        for i in range(page, len(data)):
            data[i] = (i * 7919) % 251
    else:
        data = data[: len(data) // 3 + 100]
    ws.db_path.write_bytes(bytes(data))
    for args in (["dataset", "list"], ["model", "list"], ["job", "list"], ["workspace", "check"]):
        proc = cli(*args, workspace=root)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert no_traceback(proc), proc.stderr
        assert str(ws.db_path) in proc.stderr and "backup" in proc.stderr, proc.stderr
    with pytest.raises(SpurAuditError, match="audit.db"):
        Workspace(root).list_datasets()
