"""Issue 15, item 3: ``python -m core workspace check`` and ``workspace backup DEST``.

check: SQLite ``integrity_check`` plus every artifact a record points to exists and has the size
recorded when it was written (sizes not recorded yet, e.g. in a workspace made before, are recorded
by the check). backup: SQLite's online backup API (a consistent snapshot while another process
writes) plus a copy (or, with ``--artifacts list``, a list) of the artifact files; the source records
it and the dashboard's Home shows the last one.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from core.errors import SpurAuditError
from core.workspace import Workspace
from tests.workspace._cli import REPO, cli, no_traceback


@pytest.fixture()
def ws(tmp_path) -> Workspace:
    w = Workspace(tmp_path / "ws")
    w.write_text("datasets/d/manifest.parquet", "manifest")
    w.add_dataset("d", manifest_rel="datasets/d/manifest.parquet", root_rel="datasets/d", source="x",
                  class_names=["a", "b"])
    w.save_torch("models/m/model.pt", {"w": np.arange(3)})
    w.add_model("m", dataset="d", arch="small_cnn", checkpoint_rel="models/m/model.pt")
    w.save_npy("features/d/m/val/features.npy", np.zeros((4, 2), np.float16))
    w.save_npy("features/d/m/val/logits.npy", np.zeros((4, 2), np.float32))
    w.add_feature_set(dataset="d", model="m", split="val", features_rel="features/d/m/val/features.npy",
                      logits_rel="features/d/m/val/logits.npy", n=4, dim=2, num_classes=2)
    rid = w.add_run(method="erm", dataset="d", model="m", status="done")
    w.write_json(f"runs/{rid}/metrics.json", {"a": 1})
    w.update_run(rid, artifacts={"metrics": f"runs/{rid}/metrics.json"})
    return w


def _check(root) -> tuple[int, dict]:
    proc = cli("workspace", "check", "--json", workspace=root)
    assert no_traceback(proc), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_check_clean_workspace(ws):
    code, out = _check(ws.root)
    assert code == 0 and out["ok"] is True and out["integrity"] == ["ok"]
    assert out["artifacts_checked"] == 6 and out["missing"] == [] and out["size_mismatch"] == []
    assert out["application_id_ok"] is True


def test_check_finds_missing_and_changed_artifacts(ws):
    (ws.root / "models/m/model.pt").write_bytes(b"truncated")
    (ws.root / "features/d/m/val/logits.npy").unlink()
    code, out = _check(ws.root)
    assert code == 1 and out["ok"] is False
    assert [(m["record"], m["path"]) for m in out["missing"]] == [("feature set d/m/val logits",
                                                                  "features/d/m/val/logits.npy")]
    (bad,) = out["size_mismatch"]
    assert bad["record"] == "model m checkpoint" and bad["actual"] == 9 and bad["recorded"] > 9
    text = cli("workspace", "check", workspace=ws.root)
    assert text.returncode == 1 and "models/m/model.pt" in text.stdout and "missing" in text.stdout


def test_check_records_sizes_not_recorded_yet(ws):
    con = sqlite3.connect(ws.db_path)
    con.execute("DELETE FROM artifact_sizes")          # as in a workspace made before sizes were kept
    con.commit()
    con.close()
    code, out = _check(ws.root)
    assert code == 0 and out["recorded_now"] == 5
    code, out = _check(ws.root)
    assert out["recorded_now"] == 0
    (ws.root / "models/m/model.pt").write_bytes(b"x")
    assert _check(ws.root)[0] == 1


def test_check_reports_damaged_pages(tmp_path):
    w = Workspace(tmp_path / "w")
    w.add_dataset("d", manifest_rel="m", root_rel="r", source="x")
    con = sqlite3.connect(w.db_path)
    con.executemany("INSERT INTO jobs (kind, params, status, created) VALUES ('sleep', ?, 'done', 'x')",
                    [(json.dumps({"pad": "x" * 500}),) for _ in range(200)])
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(w.db_path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    start = len(data) - 3 * page                     # damage a few pages of the jobs table
    data[start:start + page] = bytes((i * 31) % 256 for i in range(page))
    w.db_path.write_bytes(bytes(data))
    proc = cli("workspace", "check", workspace=w.root)
    assert proc.returncode in (1, 2) and no_traceback(proc), proc.stderr
    assert "integrity" in proc.stdout + proc.stderr or "damaged" in proc.stderr


_WRITER = """
import sys
from core.workspace import Workspace
ws = Workspace(sys.argv[1])
for i in range(int(sys.argv[2])):
    ws.add_labels([dict(dataset="d", model="m", class_index=0, feature=i, answer="core", annotator="w")])
"""


def test_backup_is_consistent_while_another_process_writes(ws, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(ws.root), "400"], env=env,
                              stderr=subprocess.PIPE, text=True)
    try:
        while len(ws.labels("d", "m")) < 50:
            pass
        dest = tmp_path / "bk"
        proc = cli("workspace", "backup", str(dest), "--json", workspace=ws.root)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
    finally:
        assert writer.wait(timeout=300) == 0, writer.stderr.read()
    copy = Workspace(dest)
    n = len(copy.labels("d", "m"))
    assert 50 <= n <= 400
    assert sorted(copy.labels("d", "m").feature) == list(range(n))   # a prefix: a consistent snapshot
    assert len(ws.labels("d", "m")) == 400
    assert out["artifacts"]["copied"] == 5 and (dest / "models/m/model.pt").read_bytes() == \
        (ws.root / "models/m/model.pt").read_bytes()
    assert json.loads((dest / "backup.json").read_text())["source"] == str(ws.root)
    code, checked = _check(dest)
    assert code == 0, checked
    last = ws.last_backup()
    assert last["dest"] == str(dest.resolve()) and last["created"]


def test_backup_list_mode_and_refusals(ws, tmp_path):
    dest = tmp_path / "listed"
    out = ws.backup(dest, artifacts="list")
    assert out["artifacts"]["copied"] == 0 and out["artifacts"]["listed"] == 5
    listed = {f["path"]: f["size"] for f in json.loads((dest / "backup.json").read_text())["files"]}
    assert listed["models/m/model.pt"] == (ws.root / "models/m/model.pt").stat().st_size
    assert not (dest / "models").exists() and (dest / "audit.db").is_file()
    with pytest.raises(SpurAuditError, match="not empty"):
        ws.backup(dest)
    with pytest.raises(SpurAuditError, match="inside the workspace"):
        ws.backup(ws.root / "backups" / "b1")
    proc = cli("workspace", "backup", str(dest), workspace=ws.root)
    assert proc.returncode == 2 and no_traceback(proc) and "not empty" in proc.stderr
