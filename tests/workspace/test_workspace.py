"""Workspace: schema + migration, records, concurrency, atomic artifact writes."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from core.errors import SpurAuditError
from core.workspace import SCHEMA_VERSION, Workspace

REPO = Path(__file__).resolve().parents[2]

# The v1 layout as it was shipped (fabricated here independently of the module's own copy).
V1_SQL = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1);
CREATE TABLE datasets (name TEXT PRIMARY KEY, manifest_rel TEXT NOT NULL, root_rel TEXT NOT NULL,
    source TEXT NOT NULL, params TEXT NOT NULL DEFAULT '{}', class_names TEXT NOT NULL DEFAULT '[]',
    bias_columns TEXT NOT NULL DEFAULT '[]', created TEXT NOT NULL);
CREATE TABLE models (name TEXT PRIMARY KEY, dataset TEXT REFERENCES datasets(name) ON DELETE CASCADE,
    arch TEXT NOT NULL, checkpoint_rel TEXT NOT NULL, config TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '{}', created TEXT NOT NULL);
CREATE TABLE feature_sets (id INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    model TEXT NOT NULL REFERENCES models(name) ON DELETE CASCADE, split TEXT NOT NULL,
    features_rel TEXT NOT NULL, logits_rel TEXT NOT NULL, n INTEGER NOT NULL, dim INTEGER NOT NULL,
    num_classes INTEGER NOT NULL, created TEXT NOT NULL, UNIQUE (dataset, model, split));
CREATE TABLE feature_labels (id INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    model TEXT NOT NULL REFERENCES models(name) ON DELETE CASCADE, class_index INTEGER NOT NULL,
    feature INTEGER NOT NULL, answer TEXT NOT NULL, annotator TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT 'human', score REAL, created TEXT NOT NULL);
CREATE TABLE concepts (id INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE, text TEXT NOT NULL,
    class_index INTEGER, kind TEXT NOT NULL DEFAULT 'spurious', created TEXT NOT NULL);
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, method TEXT NOT NULL, dataset TEXT, model TEXT,
    params TEXT NOT NULL DEFAULT '{}', metrics TEXT NOT NULL DEFAULT '{}', status TEXT NOT NULL DEFAULT 'running',
    artifacts TEXT NOT NULL DEFAULT '{}', error TEXT, created TEXT NOT NULL, updated TEXT NOT NULL);
CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, params TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'queued', progress REAL NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT '',
    pid INTEGER, log_rel TEXT, result TEXT, error TEXT, device TEXT, created TEXT NOT NULL, started TEXT,
    finished TEXT);
INSERT INTO datasets VALUES ('old', 'datasets/old/manifest.parquet', 'datasets/old', 'synthetic', '{}',
    '["a","b"]', '["bias"]', '2025-01-01T00:00:00Z');
INSERT INTO models VALUES ('m1', 'old', 'small_cnn', 'models/m1/model.pt', '{}', '{}', '2025-01-01T00:00:00Z');
INSERT INTO feature_labels (dataset, model, class_index, feature, answer, annotator, source, score, created)
    VALUES ('old', 'm1', 1, 7, 'spurious_background', 'ann', 'human', NULL, '2025-01-01T00:00:00Z');
INSERT INTO jobs (kind, params, status, created) VALUES ('sleep', '{}', 'done', '2025-01-01T00:00:00Z');
"""


def _columns(db: Path, table: str) -> set[str]:
    con = sqlite3.connect(db)
    try:
        return {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
    finally:
        con.close()


@pytest.fixture()
def ws(tmp_path: Path) -> Workspace:
    w = Workspace(tmp_path / "ws")
    w.add_dataset("cmnist", manifest_rel="datasets/cmnist/manifest.parquet", root_rel="datasets/cmnist",
                  source="colored-mnist", params={"rho": 0.99}, class_names=[str(i) for i in range(10)],
                  bias_columns=["bias"])
    w.add_model("cnn", dataset="cmnist", arch="small_cnn", checkpoint_rel="models/cnn/model.pt",
                config={"width": 16}, metrics={"acc": 0.5})
    return w


def test_schema_created(tmp_path: Path) -> None:
    w = Workspace(tmp_path / "new")
    assert w.schema_version == SCHEMA_VERSION == 3
    con = sqlite3.connect(w.db_path)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"datasets", "models", "feature_sets", "feature_labels", "concepts", "runs", "jobs",
            "schema_version"} <= tables
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    assert {"note", "score", "source", "annotator"} <= _columns(w.db_path, "feature_labels")
    assert "heartbeat" in _columns(w.db_path, "jobs")
    # reopening is a no-op and create=False works on an existing workspace
    assert Workspace(tmp_path / "new", create=False).schema_version == 3
    with pytest.raises(SpurAuditError, match="does not exist"):
        Workspace(tmp_path / "missing", create=False)


def test_migrates_v1_database(tmp_path: Path) -> None:
    root = tmp_path / "old_ws"
    root.mkdir()
    con = sqlite3.connect(root / "audit.db")
    con.executescript(V1_SQL)
    con.commit()
    con.close()
    assert "note" not in _columns(root / "audit.db", "feature_labels")

    w = Workspace(root)
    assert w.schema_version == 3
    assert "note" in _columns(root / "audit.db", "feature_labels")
    labels = w.labels("old", "m1")
    assert len(labels) == 1 and labels.loc[0, "note"] == "" and labels.loc[0, "feature"] == 7
    assert w.get_dataset("old").class_names == ["a", "b"]
    assert w.list_jobs()[0].heartbeat is None
    # the new column is usable after migration
    w.add_labels([dict(dataset="old", model="m1", class_index=0, feature=1, answer="core", note="after")])
    assert list(w.labels("old", "m1")["note"]) == ["", "after"]


def test_newer_schema_refused(tmp_path: Path) -> None:
    w = Workspace(tmp_path / "w")
    con = sqlite3.connect(w.db_path)
    con.execute("UPDATE schema_version SET version=?", (SCHEMA_VERSION + 5,))
    con.commit()
    con.close()
    with pytest.raises(SpurAuditError, match="newer"):
        Workspace(tmp_path / "w")


def test_records_and_missing_names(ws: Workspace) -> None:
    d = ws.get_dataset("cmnist")
    assert d.manifest_path == ws.root / "datasets/cmnist/manifest.parquet" and d.manifest_path.is_absolute()
    assert d.params == {"rho": 0.99} and d.num_classes == 10 and d.bias_columns == ["bias"]
    m = ws.get_model("cnn")
    assert m.checkpoint == ws.root / "models/cnn/model.pt" and m.dataset == "cmnist"
    with pytest.raises(SpurAuditError, match="known models: cnn"):
        ws.get_model("nope")
    with pytest.raises(SpurAuditError, match="known datasets: cmnist"):
        ws.get_dataset("nope")
    with pytest.raises(SpurAuditError, match="already exists"):
        ws.add_model("cnn", dataset="cmnist", arch="x", checkpoint_rel="models/cnn/model.pt")
    ws.add_model("cnn", dataset="cmnist", arch="mlp", checkpoint_rel="models/cnn/model.pt", replace=True)
    assert ws.get_model("cnn").arch == "mlp"
    with pytest.raises(SpurAuditError, match="extract"):
        ws.get_feature_set("cmnist", "cnn", "val")
    fs = ws.add_feature_set(dataset="cmnist", model="cnn", split="val",
                            features_rel="features/cmnist/cnn/val/features.npy",
                            logits_rel=ws.root / "features/cmnist/cnn/val/logits.npy", n=5, dim=3, num_classes=10)
    assert fs.logits_rel == "features/cmnist/cnn/val/logits.npy"  # absolute input stored relative
    assert ws.list_feature_sets(model="cnn")[0].n == 5
    # upsert
    ws.add_feature_set(dataset="cmnist", model="cnn", split="val", features_rel="a.npy", logits_rel="b.npy",
                       n=6, dim=3, num_classes=10)
    assert [f.n for f in ws.list_feature_sets()] == [6]
    # re-registering the model (new weights) drops its now-stale feature sets
    ws.add_model("cnn", dataset="cmnist", arch="mlp", checkpoint_rel="models/cnn/model.pt", replace=True)
    assert ws.list_feature_sets() == []
    # external path stays absolute
    ext = ws.root.parent / "external"
    rec = ws.add_dataset("ext", manifest_rel=ext / "m.csv", root_rel=ext, source="folder")
    assert rec.root == ext.resolve() and Path(rec.root_rel).is_absolute()
    with pytest.raises(SpurAuditError, match="cannot contain"):
        ws.add_dataset("a/b", manifest_rel="x", root_rel="y", source="s")


def test_labels_runs_concepts_jobs_summary(ws: Workspace) -> None:
    n = ws.add_labels([dict(dataset="cmnist", model="cnn", class_index=c, feature=f, answer="core", annotator="a")
                       for c in range(2) for f in range(3)])
    assert n == 6
    ws.add_labels([dict(dataset="cmnist", model="cnn", class_index=0, feature=0, answer="spurious_background",
                        annotator="a", source="human"),
                   dict(dataset="cmnist", model="cnn", class_index=0, feature=0, answer="spurious_object",
                        source="sam_iou", score=0.12)])
    df = ws.labels("cmnist", "cnn")
    assert len(df) == 8 and list(df.columns[:3]) == ["id", "dataset", "model"]
    latest = ws.labels("cmnist", "cnn", latest=True)
    assert len(latest) == 7
    row = latest[(latest.class_index == 0) & (latest.feature == 0) & (latest.source == "human")]
    assert row.answer.item() == "spurious_background"
    assert ws.labels("cmnist", "cnn", source="sam_iou").score.item() == pytest.approx(0.12)
    with pytest.raises(SpurAuditError, match="valid choices"):
        ws.add_labels([dict(dataset="cmnist", model="cnn", class_index=0, feature=0, answer="maybe")])
    with pytest.raises(SpurAuditError, match="unknown dataset/model"):
        ws.add_labels([dict(dataset="cmnist", model="ghost", class_index=0, feature=0, answer="core")])
    assert len(ws.labels("cmnist", "cnn")) == 8  # failed batch wrote nothing

    cid = ws.add_concept(dataset="cmnist", text="a red digit", class_index=3)
    assert ws.concepts("cmnist").set_index("id").loc[cid, "text"] == "a red digit"

    rid = ws.add_run(method="head_tuning", dataset="cmnist", model="cnn", params={"lr": 0.1})
    (ws.root / ws.run_dir(rid)).mkdir(parents=True)
    ws.update_run(rid, metrics={"accuracy": 0.9}, artifacts={"model": f"runs/{rid}/model.pt"})
    ws.update_run(rid, status="done", metrics={"worst_group_accuracy": 0.7})
    run = ws.get_run(rid)
    assert run.status == "done" and run.metrics == {"accuracy": 0.9, "worst_group_accuracy": 0.7}
    assert run.artifacts["model"] == ws.root / f"runs/{rid}/model.pt"
    assert [r.id for r in ws.list_runs(method="head_tuning")] == [rid]

    jid = ws.add_job("sleep", {"seconds": 1})
    job = ws.get_job(jid)
    assert job.status == "queued" and job.log_path == ws.root / f"jobs/{jid}.log"
    assert ws.update_job(jid, status="cancelled")
    assert not ws.update_job(jid, status="done", only_if_status=["running"])
    assert ws.get_job(jid).status == "cancelled"
    ws.update_job(jid, result={"x": np.float32(1.5)}, progress=3)
    assert ws.get_job(jid).result == {"x": 1.5} and ws.get_job(jid).progress == 1.0

    s = ws.summary()
    assert (s["datasets"], s["models"], s["labels"], s["concepts"], s["runs"], s["jobs"], s["jobs_active"]) == \
        (1, 1, 8, 1, 1, 1, 0)


def test_delete_cascades(ws: Workspace) -> None:
    ws.save_npy("features/cmnist/cnn/val/features.npy", np.zeros((2, 2), np.float16))
    ws.add_feature_set(dataset="cmnist", model="cnn", split="val", features_rel="features/cmnist/cnn/val/features.npy",
                       logits_rel="features/cmnist/cnn/val/logits.npy", n=2, dim=2, num_classes=10)
    ws.add_labels([dict(dataset="cmnist", model="cnn", class_index=0, feature=0, answer="core")])
    ws.add_run(method="erm", dataset="cmnist", model="cnn")
    ws.delete_model("cnn")
    s = ws.summary()
    assert (s["models"], s["feature_sets"], s["labels"], s["runs"]) == (0, 0, 0, 0)
    assert not (ws.root / "features/cmnist/cnn").exists()
    ws.delete_dataset("cmnist")
    assert ws.summary()["datasets"] == 0


def test_workspace_can_be_moved(ws: Workspace, tmp_path: Path) -> None:
    ws.save_npy("features/x.npy", np.arange(4, dtype=np.float32))
    moved = tmp_path / "moved"
    shutil.copytree(ws.root, moved)
    w2 = Workspace(moved)
    assert w2.get_model("cnn").checkpoint == moved.resolve() / "models/cnn/model.pt"
    assert np.array_equal(w2.open_npy("features/x.npy"), np.arange(4, dtype=np.float32))


def test_atomic_writes_keep_old_file(ws: Workspace) -> None:
    ws.write_json("reports/r.json", {"v": 1})
    arr = np.arange(12, dtype=np.float16).reshape(3, 4)
    ws.save_npy("features/a.npy", arr)
    out = ws.open_npy("features/a.npy")
    assert isinstance(out, np.memmap) and out.dtype == np.float16 and np.array_equal(out, arr)

    class Boom(RuntimeError):
        pass

    with pytest.raises(Boom):
        with ws.atomic_path("reports/r.json") as tmp:
            tmp.write_text('{"v": 2, "half')  # partially written, then the writer dies
            raise Boom()
    assert json.loads((ws.root / "reports/r.json").read_text()) == {"v": 1}

    class Unsaveable:
        def __array__(self, *a, **k):
            raise Boom()

    with pytest.raises(Boom):
        ws.save_npy("features/a.npy", Unsaveable())  # type: ignore[arg-type]
    assert np.array_equal(np.load(ws.root / "features/a.npy"), arr)
    leftovers = [p.name for p in ws.root.rglob("*") if ".tmp" in p.name]
    assert leftovers == []

    # torch + image + text round trips; writes outside the workspace are refused
    import torch
    from PIL import Image

    ws.save_torch("models/t.pt", {"w": torch.ones(2)})
    assert torch.equal(ws.load_torch("models/t.pt")["w"], torch.ones(2))
    ws.save_image("cache/i.png", Image.new("RGB", (4, 4), (255, 0, 0)))
    assert Image.open(ws.root / "cache/i.png").getpixel((0, 0)) == (255, 0, 0)
    with pytest.raises(SpurAuditError, match="outside the workspace"):
        ws.write_text("../escape.txt", "x")
    with pytest.raises(SpurAuditError, match="database"):
        ws.write_text("audit.db", "x")


_WRITER = """
import sys
from core.workspace import Workspace
ws = Workspace(sys.argv[1])
tag = sys.argv[2]
for i in range(500):
    ws.add_labels([dict(dataset="cmnist", model="cnn", class_index=i % 10, feature=i, answer="core",
                        annotator=tag)])
"""


def test_two_processes_write_concurrently(ws: Workspace) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(ws.root), tag], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tag in ("p1", "p2")]
    # a third writer in this process's threads at the same time (Streamlit-style)
    def thread_writer(tag: str) -> None:
        for i in range(50):
            ws.add_labels([dict(dataset="cmnist", model="cnn", class_index=0, feature=i, answer="unsure",
                                annotator=tag)])

    threads = [threading.Thread(target=thread_writer, args=(f"t{k}",)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    df = ws.labels("cmnist", "cnn")
    counts = df.annotator.value_counts().to_dict()
    assert counts == {"p1": 500, "p2": 500, "t0": 50, "t1": 50}
    assert sorted(df[df.annotator == "p1"].feature) == list(range(500))


def test_atomic_dir_and_logs(ws: Workspace) -> None:
    ws.write_text("datasets/d/a.txt", "old")
    with pytest.raises(RuntimeError):
        with ws.atomic_dir("datasets/d") as tmp:
            (tmp / "a.txt").write_text("half-built")
            raise RuntimeError("builder crashed")
    assert (ws.root / "datasets/d/a.txt").read_text() == "old"
    with ws.atomic_dir("datasets/d") as tmp:
        (tmp / "b.txt").write_text("new")
    assert sorted(p.name for p in (ws.root / "datasets/d").iterdir()) == ["b.txt"]
    assert [p.name for p in (ws.root / "datasets").iterdir()] == ["d"]  # no temp/old folders left

    for i in range(50):
        ws.append_text("jobs/1.log", f"line {i}\n")
    assert ws.tail("jobs/1.log", lines=3) == "line 47\nline 48\nline 49"
    assert ws.tail("jobs/missing.log") == ""
