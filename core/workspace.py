"""The workspace: one folder, one SQLite database, artifact files — the one store module.

Every disk write of the engine goes through `Workspace`:

* ``audit.db`` (SQLite, WAL journal, foreign keys on, ``synchronous=FULL``) records datasets,
  models, feature sets, feature labels, concepts, runs and jobs. Its schema is versioned
  (``schema_version`` table); an older database is migrated forward on open, a newer one is
  refused with a clear error.
* Artifacts (features ``.npy``, checkpoints, images, JSON, reports) are written atomically: to a
  temporary file in the destination folder, flushed, then ``os.replace``-d onto the final name, so a
  crash mid-write leaves the old file intact and no half-written file under the final name.
* Paths are stored relative to the workspace root (POSIX), so a workspace can be moved or zipped;
  records returned to callers carry absolute paths. A path outside the workspace (e.g. a user's own
  ImageFolder) is stored absolute.

Concurrency: a new ``sqlite3`` connection is opened for every call (connections never cross threads
or processes — Streamlit runs scripts in threads, jobs run in subprocesses). Each write is one
``BEGIN IMMEDIATE`` transaction with a busy timeout and a retry with exponential backoff, so a
dashboard and a job writing at once neither lose rows nor fail with "database is locked". A write
has been committed (and fsync-ed, ``synchronous=FULL``) when the method returns.

Artifact layout (relative): ``datasets/<name>/`` (images, ``manifest.parquet``),
``models/<name>/model.pt``, ``features/<dataset>/<model>/<split>/{features,logits}.npy``,
``runs/<id>/``, ``cache/``, ``reports/``, ``jobs/<id>.log``.

Identity and faults (nothing is altered that is not ours, nothing is lost):

* ``audit.db`` carries SpurAudit's SQLite ``application_id`` (`APPLICATION_ID`, set at creation) next to
  its ``schema_version`` table. A database made before the id existed (id 0, SpurAudit's tables) is
  adopted (the id is set); any other file named ``audit.db`` — another program's SQLite database, an
  empty SQLite file, a non-SQLite file — is refused with `SpurAuditError` *before* anything is written
  (no WAL switch, no tables, no journal files).
* A missing or 0-byte ``audit.db`` in a folder that holds workspace artifacts (``datasets/*/``,
  ``models/*/``, ``features/``, ``runs/``, ``audits/``, ``jobs/*.log``, ``audit.db-wal``) is an
  error, never a fresh empty workspace (that would orphan every artifact).
* SQLite faults (a damaged file, an I/O error, a full disk) become `SpurAuditError` naming the file
  and the fix (restore a backup, ``python -m core workspace check``).
* A workspace the user cannot write (``audit.db`` or its folder not writable) opens read-only: reads
  use ``mode=ro`` (when ``audit.db-wal`` holds pages) or ``immutable=1`` URIs, so a reader never
  leaves files behind; every write raises `SpurAuditError` saying the workspace is read-only.
* Artifacts are written following the process umask (``tempfile.mkstemp`` alone gives 0600), so a
  team can share a workspace. The size of each artifact written (and of each file a record points
  to) is kept in ``artifact_sizes``; `Workspace.check` compares them with the disk.
* `Workspace.backup` copies the database with SQLite's online backup API (one consistent snapshot,
  even while jobs write) and copies (or lists) the artifact files.
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import sqlite3
import tempfile
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np
import pandas as pd
import torch
from PIL import Image

from core.errors import SpurAuditError, check_choice, check_options
from core.runs import process_identity
from core.serialize import json_default

DB_NAME = "audit.db"
SCHEMA_VERSION = 3
APPLICATION_ID = 0x53415544   # "SAUD" in the SQLite header (PRAGMA application_id): this is a SpurAudit workspace
SQLITE_MAGIC = b"SQLite format 3\x00"
# the tables every SpurAudit database has had since v1 (how a workspace made before APPLICATION_ID is recognised)
SPURAUDIT_TABLES = frozenset({"schema_version", "datasets", "models", "feature_sets", "feature_labels", "concepts",
                              "runs", "jobs"})
# folders (relative glob patterns) whose content means "this folder is a workspace with artifacts"
ARTIFACT_MARKERS = ("datasets/*/*", "models/*/*", "features/*", "runs/*", "audits/*", "jobs/*.log")
# artifacts whose size is not tracked (regenerable caches, append-only logs)
_UNSIZED_PREFIXES = ("cache/", "jobs/")

LABEL_ANSWERS = ("core", "spurious_object", "spurious_background", "unsure")
LABEL_SOURCES = ("human", "clip", "sam_iou", "masks")
RUN_STATUSES = ("running", "done", "failed", "cancelled")
JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")
CONCEPT_KINDS = ("spurious", "core")

_BUSY_TIMEOUT_S = 30.0
_RETRY_BUDGET_S = 120.0

T = TypeVar("T")

# --------------------------------------------------------------------------------------------------
# Schema. Version 1 is the original layout; each later version is a forward migration. A fresh
# workspace is created as v1 and migrated, so the migration code runs every time a workspace is made.
# --------------------------------------------------------------------------------------------------
_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY,
    manifest_rel TEXT NOT NULL,
    root_rel TEXT NOT NULL,
    source TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    class_names TEXT NOT NULL DEFAULT '[]',
    bias_columns TEXT NOT NULL DEFAULT '[]',
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    dataset TEXT REFERENCES datasets(name) ON DELETE CASCADE,
    arch TEXT NOT NULL,
    checkpoint_rel TEXT NOT NULL,
    config TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '{}',
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feature_sets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    model TEXT NOT NULL REFERENCES models(name) ON DELETE CASCADE,
    split TEXT NOT NULL,
    features_rel TEXT NOT NULL,
    logits_rel TEXT NOT NULL,
    n INTEGER NOT NULL,
    dim INTEGER NOT NULL,
    num_classes INTEGER NOT NULL,
    created TEXT NOT NULL,
    UNIQUE (dataset, model, split)
);
CREATE TABLE IF NOT EXISTS feature_labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    model TEXT NOT NULL REFERENCES models(name) ON DELETE CASCADE,
    class_index INTEGER NOT NULL,
    feature INTEGER NOT NULL,
    answer TEXT NOT NULL,
    annotator TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT 'human',
    score REAL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS concepts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    text TEXT NOT NULL,
    class_index INTEGER,
    kind TEXT NOT NULL DEFAULT 'spurious',
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    method TEXT NOT NULL,
    dataset TEXT,
    model TEXT,
    params TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'running',
    artifacts TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'queued',
    progress REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    pid INTEGER,
    log_rel TEXT,
    result TEXT,
    error TEXT,
    device TEXT,
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT
);
"""


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """v2: feature labels gain a free-text ``note``; jobs gain a ``heartbeat`` (unix time) so dead
    processes can be detected; indexes for the per-(dataset, model) label queries and job status."""
    conn.execute("ALTER TABLE feature_labels ADD COLUMN note TEXT NOT NULL DEFAULT ''")
    conn.execute("ALTER TABLE jobs ADD COLUMN heartbeat REAL")
    conn.execute("CREATE INDEX IF NOT EXISTS idx_labels_dm ON feature_labels(dataset, model)")
    conn.execute("CREATE INDEX IF NOT EXISTS idx_jobs_status ON jobs(status)")


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """v3: runs record the process that owns them (``owner_pid``, ``owner_host``, ``owner_token`` = boot
    id + process start time, so a reused pid is not taken for the owner) and a ``heartbeat`` (unix time),
    so a run whose process died is marked failed (`core.runs.reconcile_runs`); ``artifact_sizes`` keeps the
    size of each artifact written or referenced (`Workspace.check`); ``backups`` logs `Workspace.backup`."""
    for column, kind in (("owner_pid", "INTEGER"), ("owner_host", "TEXT"), ("owner_token", "TEXT"),
                         ("heartbeat", "REAL")):
        conn.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
    conn.execute("CREATE INDEX IF NOT EXISTS idx_runs_status ON runs(status)")
    conn.execute("CREATE TABLE IF NOT EXISTS artifact_sizes (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
                 "recorded TEXT NOT NULL)")
    conn.execute("CREATE TABLE IF NOT EXISTS backups (id INTEGER PRIMARY KEY AUTOINCREMENT, dest TEXT NOT NULL, "
                 "created TEXT NOT NULL, db_bytes INTEGER NOT NULL, files INTEGER NOT NULL, "
                 "file_bytes INTEGER NOT NULL, mode TEXT NOT NULL)")


# version v -> function migrating a v database to v + 1 (run inside one transaction)
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migrate_1_to_2, 2: _migrate_2_to_3}
assert len(MIGRATIONS) == SCHEMA_VERSION - 1


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------
@dataclass
class DatasetRecord:
    """A registered dataset. ``manifest_path``/``root`` are absolute."""

    name: str
    manifest_path: Path
    root: Path
    source: str
    params: dict
    class_names: list[str]
    bias_columns: list[str]
    created: str
    manifest_rel: str = ""
    root_rel: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class ModelRecord:
    """A registered model. ``checkpoint`` is absolute; ``dataset`` the one it was trained on (or None)."""

    name: str
    dataset: str | None
    arch: str
    checkpoint: Path
    config: dict
    metrics: dict
    created: str
    checkpoint_rel: str = ""


@dataclass
class FeatureSetRecord:
    """Extracted features of (dataset, model, split): ``features_path`` (N, dim) float16 ``.npy``,
    ``logits_path`` (N, num_classes) float32 ``.npy``, rows aligned with ``manifest.split(split)``."""

    id: int
    dataset: str
    model: str
    split: str
    features_path: Path
    logits_path: Path
    n: int
    dim: int
    num_classes: int
    created: str
    features_rel: str = ""
    logits_rel: str = ""


@dataclass
class RunRecord:
    """One method run (mitigation, audit, ...). ``artifacts`` maps a name to an absolute path."""

    id: int
    method: str
    dataset: str | None
    model: str | None
    params: dict
    metrics: dict
    status: str
    artifacts: dict[str, Path]
    error: str | None
    created: str
    updated: str
    owner_pid: int | None = None      # the process that created / works on the run (see core.runs)
    owner_host: str | None = None
    owner_token: str | None = None
    heartbeat: float | None = None    # unix time of its last beat (None: not tracked)


@dataclass
class JobRecord:
    """A background job (see `core.jobs`). ``heartbeat`` is unix time (float) or None;
    ``log_path`` is absolute; ``progress`` in [0, 1]."""

    id: int
    kind: str
    params: dict
    status: str
    progress: float
    message: str
    pid: int | None
    heartbeat: float | None
    log_path: Path | None
    result: dict | None
    error: str | None
    device: str | None
    created: str
    started: str | None
    finished: str | None

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=json_default, sort_keys=True)


def _loads(text: str | None, default: Any = None) -> Any:
    if text is None or text == "":
        return default
    return json.loads(text)


def _is_locked(exc: BaseException) -> bool:
    msg = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in msg or "busy" in msg)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def fsync_dir(folder: str | Path) -> None:
    """Flush ``folder``'s entries to disk, so a file created in it or renamed into it (``os.replace``)
    survives a crash; a no-op where folders cannot be opened (Windows). For writers that commit files
    by renaming them (feature extraction publishes its partial arrays this way)."""
    _fsync_dir(Path(folder))


@contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """`Workspace.atomic_path` for a plain path (inside a workspace or not): yield a temporary path in
    ``target``'s folder (keeping its suffix); on success it is fsync-ed and renamed onto ``target``
    and the folder fsync-ed, on an exception it is removed and ``target`` stays as it was. The file
    gets the mode ``open`` gives (the process umask). Used for small state files of writers that work
    on a folder, such as feature extraction's ``progress.json``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.{random.randrange(1 << 30)}.tmp{target.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise SpurAuditError(f"nothing was written to the temporary file for {target}")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _known(names: list[str]) -> str:
    return ", ".join(names) if names else "(none yet)"


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` sets it, which races with other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc (macOS): read it by setting it back at once
    os.umask(mask)
    return mask


def _sqlite_uri(path: Path, **query: str) -> str:
    return "file:" + urllib.parse.quote(str(path)) + "?" + urllib.parse.urlencode(query)


def _error_name(exc: BaseException) -> str:
    return str(getattr(exc, "sqlite_errorname", "") or "")


# --------------------------------------------------------------------------------------------------
# Workspace
# --------------------------------------------------------------------------------------------------
class Workspace:
    """A SpurAudit workspace folder (``audit.db`` + artifacts).

    ``Workspace(root)`` creates the folder and database when missing (``create=False`` raises
    `SpurAuditError` instead). The object holds no open connection, so it can be shared between
    threads and pickled to subprocesses. ``read_only`` is True when the user cannot write the
    database or its folder: reads work, writes raise `SpurAuditError` (see the module docstring for
    how foreign, empty, corrupt and read-only databases are treated).
    """

    def __init__(self, root: str | Path, *, create: bool = True) -> None:
        root = Path(root).expanduser()
        self.root: Path = root.resolve()
        self.db_path: Path = self.root / DB_NAME
        self.read_only: bool = False
        self._open(create)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Workspace) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    # ---------------------------------------------------------------- messages
    def _fix_db(self) -> str:
        return (f"Fix: restore {DB_NAME} from a backup (`python -m core workspace backup DEST` makes them), "
                f"or see what is readable with `python -m core workspace check --workspace {self.root}`")

    def _read_only_error(self, what: str = "this command records results in it") -> SpurAuditError:
        return SpurAuditError(
            f"workspace {self.root} is read-only for this user ({self.db_path} or its folder is not writable) "
            f"and {what}. Fix: run it as a user who can write the workspace, make it writable "
            f"(chmod -R u+w {self.root}), or work on a copy (`python -m core workspace backup DEST`)")

    def _foreign_error(self, detail: str) -> SpurAuditError:
        return SpurAuditError(
            f"{self.db_path} is not a SpurAudit workspace database ({detail}); SpurAudit left it untouched. "
            f"Fix: point --workspace (or the dashboard's workspace box) at another folder, or move that "
            f"{DB_NAME} away to start a workspace here")

    def _db_error(self, exc: sqlite3.Error) -> SpurAuditError | None:
        """A user-facing error for an SQLite fault, or None when ``exc`` looks like a bug (SQL error)."""
        name, msg = _error_name(exc), str(exc).lower()
        if name.startswith("SQLITE_READONLY") or "readonly database" in msg or "read-only" in msg:
            return self._read_only_error()
        if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in msg or "not a database" in msg:
            return SpurAuditError(f"the workspace database {self.db_path} is damaged (SQLite: {exc}). {self._fix_db()}")
        if name.startswith("SQLITE_FULL") or "disk is full" in msg:
            return SpurAuditError(f"the disk holding {self.db_path} is full (SQLite: {exc}); free some space and retry")
        if name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN")) or "disk i/o" in msg or "unable to open" in msg:
            return SpurAuditError(f"cannot read or write the workspace database {self.db_path} (SQLite: {exc}); check "
                                  f"that the disk is mounted and the file readable. {self._fix_db()}")
        if type(exc) is sqlite3.DatabaseError:
            return SpurAuditError(f"the workspace database {self.db_path} cannot be used (SQLite: {exc}). {self._fix_db()}")
        return None

    # ---------------------------------------------------------------- opening
    def _artifacts_here(self) -> list[str]:
        """What in the folder shows it holds workspace artifacts (see `ARTIFACT_MARKERS`)."""
        found = []
        for pattern in ARTIFACT_MARKERS:
            if next(iter(self.root.glob(pattern)), None) is not None:
                found.append(pattern.split("/")[0] + "/")
        wal = self.root / (DB_NAME + "-wal")
        if wal.is_file() and wal.stat().st_size > 0:
            found.append(wal.name)
        return found

    def _refuse_over_artifacts(self, why: str) -> None:
        found = self._artifacts_here()
        if found:
            raise SpurAuditError(
                f"{why}, but {self.root} holds workspace artifacts ({', '.join(found)}); SpurAudit will not start an "
                f"empty workspace over them (their records would be lost). Fix: restore {DB_NAME} from a backup "
                "(`python -m core workspace backup DEST` makes them), or move the artifacts away / pick another "
                "folder to start afresh")

    def _read_header(self) -> bytes:
        try:
            with open(self.db_path, "rb") as fh:
                return fh.read(100)
        except PermissionError:
            raise SpurAuditError(f"cannot read {self.db_path} (permission denied); run as a user who can read the "
                                 f"workspace or fix its permissions (chmod -R u+r {self.root})") from None
        except OSError as exc:
            raise SpurAuditError(f"cannot read {self.db_path} ({exc.strerror or exc}); check the disk, or "
                                 f"{self._fix_db()[5:]}") from None

    def _open(self, create: bool) -> None:
        if self.db_path.is_dir():
            raise SpurAuditError(f"{self.db_path} is a folder, not a database; point --workspace at a workspace folder")
        if not self.db_path.exists():
            if not create:
                if not self.root.exists():
                    raise SpurAuditError(f"workspace {self.root} does not exist; create it with "
                                         "Workspace(path) or pass --workspace to a command that creates it")
                raise SpurAuditError(f"{self.root} is not a SpurAudit workspace (no {DB_NAME}); "
                                     "pick another folder or create one with Workspace(path)")
            if self.root.is_dir():
                self._refuse_over_artifacts(f"there is no {DB_NAME} in {self.root}")
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SpurAuditError(f"cannot create the workspace folder {self.root} ({exc.strerror or exc}); "
                                     "pick a folder you can write to") from None
            if not os.access(self.root, os.W_OK):
                raise SpurAuditError(f"cannot create a workspace in {self.root}: the folder is not writable; "
                                     "pick a folder you can write to")
            self._setup(adopt=True)
            return
        header = self._read_header()
        self.read_only = not (os.access(self.db_path, os.W_OK) and os.access(self.root, os.W_OK))
        if not header:
            self._refuse_over_artifacts(f"{self.db_path} is empty (0 bytes)")
            if not create:
                raise SpurAuditError(f"{self.root} is not a SpurAudit workspace yet ({DB_NAME} is empty); create one "
                                     "with a command that writes to it (e.g. `python -m core demo --workspace "
                                     f"{self.root}`)")
            if self.read_only:
                raise self._read_only_error(f"its {DB_NAME} is empty (0 bytes), so there is nothing to read")
            self._setup(adopt=True)
            return
        if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
            raise SpurAuditError(f"{self.db_path} is not an SQLite database (its header is {header[:16]!r}): it is "
                                 f"damaged, or another program's file; SpurAudit left it untouched. {self._fix_db()}")
        app_id = int.from_bytes(header[68:72], "big")
        adopt = False
        if app_id != APPLICATION_ID:
            if app_id != 0:
                raise self._foreign_error(f"its SQLite application_id is {app_id:#010x}, SpurAudit's is "
                                          f"{APPLICATION_ID:#010x}")
            app_id, tables = self._probe()   # through the WAL: the id may have been set there
            if app_id not in (0, APPLICATION_ID):
                raise self._foreign_error(f"its SQLite application_id is {app_id:#010x}")
            if app_id == 0:
                if not SPURAUDIT_TABLES <= tables:
                    shown = ", ".join(sorted(tables)[:8]) or "none"
                    raise self._foreign_error(f"no SpurAudit application_id and not SpurAudit's tables (it has: {shown})")
                adopt = True           # made by SpurAudit before the id existed
        version = self._read_version()
        if version is None:
            raise SpurAuditError(f"{self.db_path} has SpurAudit's id but no schema version; it is damaged. "
                                 f"{self._fix_db()}")
        if version > SCHEMA_VERSION:
            raise SpurAuditError(
                f"workspace {self.root} uses schema version {version}, newer than this SpurAudit "
                f"understands ({SCHEMA_VERSION}); upgrade SpurAudit or use another workspace")
        wal = header[18] == 2 and header[19] == 2
        if version == SCHEMA_VERSION and not adopt and wal:
            return                     # the common case: nothing to do
        if self.read_only:
            if version < SCHEMA_VERSION:
                raise self._read_only_error(f"it was made by an older SpurAudit (schema {version}) and needs a "
                                            f"one-time upgrade to schema {SCHEMA_VERSION} before it can be read")
            return                     # adoption and the WAL switch wait for a user who can write
        self._setup(adopt=adopt)

    def _probe(self) -> tuple[int, set[str]]:
        """(application_id, table names) read without writing anything (read-only connection)."""
        def attempt() -> tuple[int, set[str]]:
            conn = self._connect_ro()
            try:
                app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                return app_id, tables
            finally:
                conn.close()

        return self._retry(attempt)

    def _read_version(self) -> int | None:
        def attempt() -> int | None:
            conn = self._connect()
            try:
                has = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'").fetchone()
                if not has:
                    return None
                row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
                return None if row[0] is None else int(row[0])
            finally:
                conn.close()

        return self._retry(attempt)

    def _setup(self, *, adopt: bool) -> None:
        """Create (v1 + every migration) or migrate the schema and set the application id in one
        transaction, then switch to WAL. Only ever called on a new, empty or SpurAudit database."""
        def migrate(conn: sqlite3.Connection) -> None:
            app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if app_id not in (0, APPLICATION_ID) or (app_id == 0 and tables and not SPURAUDIT_TABLES <= tables):
                raise self._foreign_error("it appeared while the workspace was being opened")  # pragma: no cover
            if app_id == 0 and adopt:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = row[0]
            if version is None:
                if "datasets" in tables:
                    raise SpurAuditError(f"{self.db_path} has tables but no schema version; it was not "
                                         "made by SpurAudit — use another workspace folder")
                for stmt in _split_sql(_SCHEMA_V1):
                    conn.execute(stmt)
                conn.execute("INSERT INTO schema_version (version) VALUES (1)")
                version = 1
            if version > SCHEMA_VERSION:
                raise SpurAuditError(
                    f"workspace {self.root} uses schema version {version}, newer than this SpurAudit "
                    f"understands ({SCHEMA_VERSION}); upgrade SpurAudit or use another workspace")
            while version < SCHEMA_VERSION:
                MIGRATIONS[version](conn)
                version += 1
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

        self._write(migrate)

        def wal() -> None:
            conn = self._connect()
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":  # pragma: no cover - e.g. network file systems
                    raise SpurAuditError(f"could not switch {self.db_path} to WAL mode (got {mode}); "
                                         "put the workspace on a local disk")
            finally:
                conn.close()

        self._retry(wal)

    # ---------------------------------------------------------------- database plumbing
    def _connect_ro(self) -> sqlite3.Connection:
        """A connection that never writes to the folder: ``mode=ro`` when ``audit.db-wal`` holds pages
        (they must be read), else ``immutable=1`` (also works in a folder the user cannot write)."""
        wal = Path(str(self.db_path) + "-wal")
        pending = wal.is_file() and wal.stat().st_size > 0
        uris = ([_sqlite_uri(self.db_path, mode="ro")] if pending else []) + [_sqlite_uri(self.db_path, immutable="1")]
        for i, uri in enumerate(uris):
            conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
            try:
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                return conn
            except sqlite3.OperationalError:
                conn.close()
                if i == len(uris) - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            conn = self._connect_ro()
        else:
            conn = sqlite3.connect(self.db_path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def _retry(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` retrying on SQLITE_BUSY/LOCKED with jittered exponential backoff; other SQLite
        faults (damaged file, read-only, I/O, full disk) become `SpurAuditError` naming the file."""
        deadline = time.monotonic() + _RETRY_BUDGET_S
        delay = 0.02
        while True:
            try:
                return fn()
            except sqlite3.DatabaseError as exc:
                if not _is_locked(exc) or time.monotonic() > deadline:
                    if _is_locked(exc):
                        raise SpurAuditError(f"workspace database {self.db_path} stayed locked for "
                                             f"{_RETRY_BUDGET_S:.0f} s; another process holds it — "
                                             "close it or retry") from exc
                    user_error = self._db_error(exc)
                    if user_error is not None:
                        raise user_error from exc
                    raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction (committed before returning)."""
        if self.read_only:
            raise self._read_only_error()

        def attempt() -> T:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return out
            finally:
                conn.close()

        return self._retry(attempt)

    def _read(self, sql: str, params: tuple | list = ()) -> list[sqlite3.Row]:
        def attempt() -> list[sqlite3.Row]:
            conn = self._connect()
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()

        return self._retry(attempt)

    @property
    def schema_version(self) -> int:
        return int(self._read("SELECT MAX(version) FROM schema_version")[0][0])

    # ---------------------------------------------------------------- paths
    def path(self, rel: str | Path) -> Path:
        """Workspace-relative path -> absolute path (an absolute ``rel`` is returned unchanged)."""
        p = Path(rel)
        return p if p.is_absolute() else self.root / p

    def rel(self, path: str | Path) -> str:
        """Absolute (or workspace-relative) path -> workspace-relative POSIX string.

        Raises `SpurAuditError` for a path outside the workspace."""
        p = Path(path)
        if not p.is_absolute():
            p = self.root / p
        p = Path(os.path.normpath(p))
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:
            resolved = p.resolve()
            try:
                return resolved.relative_to(self.root).as_posix()
            except ValueError:
                raise SpurAuditError(f"{path} is outside the workspace {self.root}; "
                                     "copy it into the workspace or pass a path inside it") from None

    def _store(self, path: str | Path) -> str:
        """How a path is stored in the database: relative when inside the workspace, else absolute."""
        try:
            return self.rel(path)
        except SpurAuditError:
            return str(Path(path).resolve())

    def _target(self, rel: str | Path) -> Path:
        """Absolute destination for a write; refuses paths escaping the workspace."""
        r = self.rel(rel)  # raises when outside
        if r in ("", ".") or r.startswith("../"):
            raise SpurAuditError(f"cannot write to {rel!r}: give a file path inside the workspace")
        if r == DB_NAME or r.startswith(DB_NAME):
            raise SpurAuditError(f"{rel!r} is the workspace database; write artifacts elsewhere")
        if self.read_only:
            raise self._read_only_error(f"writing {r} needs write access")
        return self.root / r

    def check_writable(self, rel: str | Path) -> None:
        """Fail now, with the folder and the fix, when ``rel`` (a file to be written later) could not be
        written — so long work (training, extraction) never runs to the end only to fail at the save."""
        target = self._target(rel)
        self._make_parent(target)
        try:
            fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=target.parent)
        except PermissionError:
            raise SpurAuditError(f"cannot write {target}: the folder {target.parent} is not writable for this user; "
                                 "fix its permissions (chmod u+w) or use another workspace") from None
        os.close(fd)
        os.unlink(probe)

    def _make_parent(self, target: Path) -> None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except PermissionError:
            raise SpurAuditError(f"cannot write {target}: the folder {target.parent} (or one above it) is not "
                                 "writable for this user; fix its permissions (chmod u+w) or use another workspace") from None

    def _record_size(self, stored: str, size: int, conn: sqlite3.Connection | None = None) -> None:
        """Remember the size of an artifact (``stored`` = the path as records store it)."""
        if stored.startswith(_UNSIZED_PREFIXES):
            return
        sql = ("INSERT INTO artifact_sizes (path, size, recorded) VALUES (?,?,?) ON CONFLICT(path) DO UPDATE SET "
               "size=excluded.size, recorded=excluded.recorded")
        if conn is not None:
            conn.execute(sql, (stored, int(size), _now()))
        else:
            self._write(lambda c: c.execute(sql, (stored, int(size), _now())))

    def _record_sizes_of(self, conn: sqlite3.Connection, stored_paths: Iterable[str]) -> None:
        """Inside a record's transaction: remember the sizes of the files it points to (those that exist)."""
        for stored in stored_paths:
            try:
                p = self.path(stored)
                if p.is_file():
                    self._record_size(stored, p.stat().st_size, conn)
            except OSError:
                continue

    # ---------------------------------------------------------------- atomic artifact writes
    @contextmanager
    def atomic_path(self, rel: str | Path) -> Iterator[Path]:
        """Yield a temporary path in the destination folder; on success it is fsync-ed and renamed
        onto ``rel`` (``os.replace``), on an exception it is deleted and the old file stays intact.

        The temporary name keeps the destination's suffix (``np.save``/PIL pick formats by it).
        """
        target = self._target(rel)
        self._make_parent(target)
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}",
                                            dir=target.parent)
        except PermissionError:
            raise SpurAuditError(f"cannot write {target}: the folder {target.parent} is not writable for this user; "
                                 "fix its permissions (chmod u+w) or use another workspace") from None
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
            if not tmp.exists():
                raise SpurAuditError(f"nothing was written to the temporary file for {rel}")
            # cache/ holds images any page or job can render again: no fsync (issue 12: thousands of thumbnails
            # per labelling-assets job); the rename still makes each file appear whole or not at all
            durable = not self.rel(target).startswith("cache/")
            if durable:
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~_umask())   # mkstemp made it 0600; an artifact follows the umask like any file
            os.replace(tmp, target)
            if durable:
                _fsync_dir(target.parent)
        except BaseException:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
            raise
        try:  # advisory (`check` compares it): a failure here must not fail a write that is done
            self._record_size(self.rel(target), target.stat().st_size)
        except (SpurAuditError, OSError, sqlite3.Error):
            pass

    @contextmanager
    def atomic_dir(self, rel: str | Path) -> Iterator[Path]:
        """Yield a fresh temporary folder next to ``rel``; on success it replaces ``rel`` (an existing
        folder is moved aside, the new one renamed in, the old one removed), on an exception it is
        removed and ``rel`` stays as it was."""
        target = self._target(rel)
        self._make_parent(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmpdir", dir=target.parent))
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        os.chmod(tmp, 0o777 & ~_umask())   # mkdtemp made it 0700
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.{os.getpid()}.{random.randrange(1 << 30)}.old"
            os.replace(target, old)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def write_bytes(self, rel: str | Path, data: bytes) -> Path:
        """Atomically write ``data`` to ``rel``; returns the absolute path."""
        with self.atomic_path(rel) as tmp:
            tmp.write_bytes(data)
        return self.path(self.rel(rel))

    def write_text(self, rel: str | Path, text: str) -> Path:
        """Atomically write UTF-8 ``text`` to ``rel``."""
        return self.write_bytes(rel, text.encode("utf-8"))

    def write_json(self, rel: str | Path, obj: Any) -> Path:
        """Atomically write ``obj`` as indented JSON (numpy scalars/arrays and Paths converted)."""
        return self.write_text(rel, json.dumps(obj, indent=2, default=json_default, sort_keys=True))

    def read_json(self, rel: str | Path, default: Any = None) -> Any:
        """Read a JSON artifact; ``default`` when the file is missing."""
        p = self.path(rel)
        if not p.exists():
            return default
        return json.loads(p.read_text(encoding="utf-8"))

    def save_npy(self, rel: str | Path, array: np.ndarray) -> Path:
        """Atomically save ``array`` as ``.npy`` (dtype and shape kept)."""
        if not str(rel).endswith(".npy"):
            raise SpurAuditError(f"save_npy needs a path ending in .npy, got {rel!r}")
        with self.atomic_path(rel) as tmp:
            np.save(tmp, np.asarray(array), allow_pickle=False)
        return self.path(self.rel(rel))

    def open_npy(self, rel: str | Path, *, mmap: bool = True) -> np.ndarray:
        """Open a ``.npy`` artifact, memory-mapped read-only (``mmap_mode="r"``) by default."""
        p = self.path(rel)
        if not p.exists():
            raise SpurAuditError(f"array file {p} is missing; re-run the step that creates it "
                                 "(e.g. `python -m core extract` for features)")
        return np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)

    def save_torch(self, rel: str | Path, obj: Any) -> Path:
        """Atomically ``torch.save`` ``obj`` (state dicts, tensors, plain containers)."""
        with self.atomic_path(rel) as tmp:
            torch.save(obj, tmp)
        return self.path(self.rel(rel))

    def load_torch(self, rel: str | Path, *, map_location: Any = "cpu") -> Any:
        """``torch.load(..., weights_only=True)`` of an artifact."""
        p = self.path(rel)
        if not p.exists():
            raise SpurAuditError(f"checkpoint {p} is missing; re-train or re-register the model")
        return torch.load(p, map_location=map_location, weights_only=True)

    def save_image(self, rel: str | Path, image: "Image.Image", **save_kwargs: Any) -> Path:
        """Atomically save a PIL image; the format follows the suffix (.png, .jpg, ...)."""
        with self.atomic_path(rel) as tmp:
            fmt = None
            suffix = Path(str(rel)).suffix.lower()
            if suffix in (".jpg", ".jpeg"):
                fmt = "JPEG"
                if image.mode not in ("RGB", "L"):
                    image = image.convert("RGB")
            image.save(tmp, format=fmt, **save_kwargs)
        return self.path(self.rel(rel))

    def append_text(self, rel: str | Path, text: str) -> Path:
        """Append ``text`` to a log-like file (``O_APPEND``, flushed and fsync-ed); not atomic by design —
        for logs only (``jobs/<id>.log``). Creates the file and its folder when missing."""
        target = self._target(rel)
        self._make_parent(target)
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        return target

    def open_append(self, rel: str | Path):  # -> BinaryIO
        """Open a log file for appending in binary mode (e.g. as a subprocess's stdout); caller closes it."""
        target = self._target(rel)
        self._make_parent(target)
        return open(target, "ab")

    def tail(self, rel: str | Path, *, lines: int = 30, max_bytes: int = 65536) -> str:
        """The last ``lines`` lines of a text artifact ("" when missing)."""
        p = self.path(rel)
        if not p.exists():
            return ""
        with open(p, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read().decode("utf-8", errors="replace")
        return "\n".join(data.splitlines()[-lines:])

    def remove_path(self, rel: str | Path) -> bool:
        """Delete an artifact file or folder inside the workspace; True when something was removed."""
        target = self._target(rel)
        if target.is_dir():
            shutil.rmtree(target)
            return True
        if target.exists():
            target.unlink()
            return True
        return False

    # ---------------------------------------------------------------- datasets
    def _dataset_record(self, row: sqlite3.Row) -> DatasetRecord:
        return DatasetRecord(
            name=row["name"], manifest_path=self.path(row["manifest_rel"]), root=self.path(row["root_rel"]),
            source=row["source"], params=_loads(row["params"], {}), class_names=_loads(row["class_names"], []),
            bias_columns=_loads(row["bias_columns"], []), created=row["created"],
            manifest_rel=row["manifest_rel"], root_rel=row["root_rel"])

    def add_dataset(self, name: str, *, manifest_rel: str | Path, root_rel: str | Path, source: str,
                    params: dict | None = None, class_names: list[str] | None = None,
                    bias_columns: list[str] | None = None, replace: bool = False) -> DatasetRecord:
        """Register a dataset (its manifest file and image root). ``replace=True`` overwrites an
        existing record of that name; its feature-set records are dropped (they described the old
        data), models and labels are kept."""
        check_name("dataset", name)
        values = (self._store(manifest_rel), self._store(root_rel), str(source), _dumps(params or {}),
                  _dumps([str(c) for c in (class_names or [])]), _dumps(list(bias_columns or [])), _now())

        def tx(conn: sqlite3.Connection) -> None:
            exists = conn.execute("SELECT 1 FROM datasets WHERE name=?", (name,)).fetchone()
            if exists and not replace:
                raise SpurAuditError(f"dataset {name!r} already exists; pick another name or pass replace=True "
                                     "(--replace on the CLI)")
            if exists:  # the stored features no longer describe the new data: drop their records
                conn.execute("DELETE FROM feature_sets WHERE dataset=?", (name,))
                conn.execute("UPDATE datasets SET manifest_rel=?, root_rel=?, source=?, params=?, class_names=?, "
                             "bias_columns=?, created=? WHERE name=?", (*values, name))
            else:
                conn.execute("INSERT INTO datasets (manifest_rel, root_rel, source, params, class_names, "
                             "bias_columns, created, name) VALUES (?,?,?,?,?,?,?,?)", (*values, name))
            self._record_sizes_of(conn, [values[0]])

        self._write(tx)
        return self.get_dataset(name)

    def get_dataset(self, name: str) -> DatasetRecord:
        rows = self._read("SELECT * FROM datasets WHERE name=?", (name,))
        if not rows:
            known = [r["name"] for r in self._read("SELECT name FROM datasets ORDER BY name")]
            raise SpurAuditError(f"unknown dataset {name!r}; known datasets: {_known(known)}. Create one with "
                                 "`python -m core dataset build ...` (synthetic) or `python -m core dataset add ...` "
                                 "(a folder/CSV on disk), or on the dashboard's data page")
        return self._dataset_record(rows[0])

    def has_dataset(self, name: str) -> bool:
        return bool(self._read("SELECT 1 FROM datasets WHERE name=?", (name,)))

    def list_datasets(self) -> list[DatasetRecord]:
        return [self._dataset_record(r) for r in self._read("SELECT * FROM datasets ORDER BY name")]

    def delete_dataset(self, name: str, *, remove_files: bool = True) -> None:
        """Delete a dataset and everything recorded for it (models trained on it, feature sets,
        labels, concepts, runs). With ``remove_files`` also the standard artifact folders
        (``datasets/<name>``, ``features/<name>``, ``models/<model>``); files outside the
        workspace are never touched."""
        self.get_dataset(name)  # raises with the known names
        models = [r["name"] for r in self._read("SELECT name FROM models WHERE dataset=?", (name,))]

        def tx(conn: sqlite3.Connection) -> None:
            for m in models:
                self._delete_model_rows(conn, m)
            conn.execute("DELETE FROM runs WHERE dataset=?", (name,))
            conn.execute("DELETE FROM datasets WHERE name=?", (name,))

        self._write(tx)
        if remove_files:
            self._remove_dirs([f"datasets/{name}", f"features/{name}"] + [f"models/{m}" for m in models]
                              + [f"features/{d}/{m}" for m in models for d in self._feature_dirs()])

    # ---------------------------------------------------------------- models
    def _model_record(self, row: sqlite3.Row) -> ModelRecord:
        return ModelRecord(name=row["name"], dataset=row["dataset"], arch=row["arch"],
                           checkpoint=self.path(row["checkpoint_rel"]), config=_loads(row["config"], {}),
                           metrics=_loads(row["metrics"], {}), created=row["created"],
                           checkpoint_rel=row["checkpoint_rel"])

    def add_model(self, name: str, *, dataset: str | None, arch: str, checkpoint_rel: str | Path,
                  config: dict | None = None, metrics: dict | None = None, replace: bool = False) -> ModelRecord:
        """Register a model checkpoint (``dataset`` = the dataset it was trained on, or None).
        ``replace=True`` overwrites a record of that name and drops its feature-set records (they were
        extracted with the old weights); labels and runs are kept."""
        check_name("model", name)
        if dataset is not None:
            self.get_dataset(dataset)
        values = (dataset, str(arch), self._store(checkpoint_rel), _dumps(config or {}), _dumps(metrics or {}),
                  _now())

        def tx(conn: sqlite3.Connection) -> None:
            exists = conn.execute("SELECT 1 FROM models WHERE name=?", (name,)).fetchone()
            if exists and not replace:
                raise SpurAuditError(f"model {name!r} already exists; pick another name or pass replace=True "
                                     "(--replace on the CLI)")
            if exists:  # features of the old weights are stale: drop their records (labels are kept)
                conn.execute("DELETE FROM feature_sets WHERE model=?", (name,))
                conn.execute("UPDATE models SET dataset=?, arch=?, checkpoint_rel=?, config=?, metrics=?, created=? "
                             "WHERE name=?", (*values, name))
            else:
                conn.execute("INSERT INTO models (dataset, arch, checkpoint_rel, config, metrics, created, name) "
                             "VALUES (?,?,?,?,?,?,?)", (*values, name))
            self._record_sizes_of(conn, [values[2]])

        self._write(tx)
        return self.get_model(name)

    def update_model(self, name: str, *, metrics: dict | None = None, config: dict | None = None) -> ModelRecord:
        """Merge ``metrics``/``config`` keys into a model's record."""
        rec = self.get_model(name)

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE models SET metrics=?, config=? WHERE name=?",
                         (_dumps({**rec.metrics, **(metrics or {})}), _dumps({**rec.config, **(config or {})}), name))

        self._write(tx)
        return self.get_model(name)

    def get_model(self, name: str) -> ModelRecord:
        rows = self._read("SELECT * FROM models WHERE name=?", (name,))
        if not rows:
            known = [r["name"] for r in self._read("SELECT name FROM models ORDER BY name")]
            raise SpurAuditError(f"unknown model {name!r}; known models: {_known(known)}. Create one with "
                                 "`python -m core model train ...` or `python -m core model register ...`, or on the dashboard")
        return self._model_record(rows[0])

    def has_model(self, name: str) -> bool:
        return bool(self._read("SELECT 1 FROM models WHERE name=?", (name,)))

    def list_models(self, dataset: str | None = None) -> list[ModelRecord]:
        if dataset is None:
            rows = self._read("SELECT * FROM models ORDER BY name")
        else:
            rows = self._read("SELECT * FROM models WHERE dataset=? ORDER BY name", (dataset,))
        return [self._model_record(r) for r in rows]

    @staticmethod
    def _delete_model_rows(conn: sqlite3.Connection, name: str) -> None:
        conn.execute("DELETE FROM runs WHERE model=?", (name,))
        conn.execute("DELETE FROM models WHERE name=?", (name,))  # cascades feature sets + labels

    def delete_model(self, name: str, *, remove_files: bool = True) -> None:
        """Delete a model, its feature sets, labels and runs (and ``models/<name>``,
        ``features/*/<name>`` when ``remove_files``)."""
        self.get_model(name)
        self._write(lambda conn: self._delete_model_rows(conn, name))
        if remove_files:
            self._remove_dirs([f"models/{name}"] + [f"features/{d}/{name}" for d in self._feature_dirs()])

    def _feature_dirs(self) -> list[str]:
        base = self.root / "features"
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.exists() else []

    def _remove_dirs(self, rels: list[str]) -> None:
        for r in rels:
            target = self.root / r
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)

    # ---------------------------------------------------------------- feature sets
    def _feature_set_record(self, row: sqlite3.Row) -> FeatureSetRecord:
        return FeatureSetRecord(
            id=row["id"], dataset=row["dataset"], model=row["model"], split=row["split"],
            features_path=self.path(row["features_rel"]), logits_path=self.path(row["logits_rel"]),
            n=row["n"], dim=row["dim"], num_classes=row["num_classes"], created=row["created"],
            features_rel=row["features_rel"], logits_rel=row["logits_rel"])

    def feature_dir(self, dataset: str, model: str, split: str) -> str:
        """Relative folder of a feature set: ``features/<dataset>/<model>/<split>``."""
        return f"features/{dataset}/{model}/{split}"

    def add_feature_set(self, *, dataset: str, model: str, split: str, features_rel: str | Path,
                        logits_rel: str | Path, n: int, dim: int, num_classes: int) -> FeatureSetRecord:
        """Record (or replace) the feature set of (dataset, model, split)."""
        self.get_dataset(dataset)
        self.get_model(model)
        if min(int(n), int(dim), int(num_classes)) < 0:
            raise SpurAuditError(f"feature set sizes must be >= 0, got n={n}, dim={dim}, num_classes={num_classes}")
        values = (self._store(features_rel), self._store(logits_rel), int(n), int(dim), int(num_classes), _now())

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO feature_sets (dataset, model, split, features_rel, logits_rel, n, dim, num_classes, created) "
                "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(dataset, model, split) DO UPDATE SET "
                "features_rel=excluded.features_rel, logits_rel=excluded.logits_rel, n=excluded.n, dim=excluded.dim, "
                "num_classes=excluded.num_classes, created=excluded.created",
                (dataset, model, split, *values))
            self._record_sizes_of(conn, values[:2])

        self._write(tx)
        return self.get_feature_set(dataset, model, split)

    def get_feature_set(self, dataset: str, model: str, split: str) -> FeatureSetRecord:
        rows = self._read("SELECT * FROM feature_sets WHERE dataset=? AND model=? AND split=?", (dataset, model, split))
        if not rows:
            known = [f"{r['dataset']}/{r['model']}/{r['split']}"
                     for r in self._read("SELECT dataset, model, split FROM feature_sets ORDER BY dataset, model, split")]
            raise SpurAuditError(f"no features for dataset {dataset!r}, model {model!r}, split {split!r}; known feature "
                                 f"sets: {_known(known)}. Extract them with `python -m core extract --dataset {dataset} "
                                 f"--model {model} --split {split}`")
        return self._feature_set_record(rows[0])

    def list_feature_sets(self, dataset: str | None = None, model: str | None = None) -> list[FeatureSetRecord]:
        sql, args = "SELECT * FROM feature_sets WHERE 1=1", []
        if dataset is not None:
            sql += " AND dataset=?"
            args.append(dataset)
        if model is not None:
            sql += " AND model=?"
            args.append(model)
        return [self._feature_set_record(r) for r in self._read(sql + " ORDER BY dataset, model, split", args)]

    def delete_feature_set(self, dataset: str, model: str, split: str, *, remove_files: bool = True) -> None:
        rec = self.get_feature_set(dataset, model, split)
        self._write(lambda conn: conn.execute("DELETE FROM feature_sets WHERE id=?", (rec.id,)))
        if remove_files:
            self._remove_dirs([self.feature_dir(dataset, model, split)])

    # ---------------------------------------------------------------- feature labels
    _LABEL_COLUMNS = ("dataset", "model", "class_index", "feature", "answer", "annotator", "source", "score", "note")

    def add_labels(self, rows: Iterable[dict]) -> int:
        """Append feature labels in one transaction; returns how many were written.

        Each row: ``dataset``, ``model``, ``class_index`` (int), ``feature`` (int), ``answer``
        (core | spurious_object | spurious_background | unsure), optional ``annotator`` (str),
        ``source`` (human | clip | sam_iou | masks; default human), ``score`` (float, e.g. an IoU or
        CLIP similarity), ``note``. Labels are a log: every answer is kept; see ``labels(latest=True)``.
        """
        prepared = []
        for i, row in enumerate(rows):
            missing = [k for k in ("dataset", "model", "class_index", "feature", "answer") if k not in row]
            if missing:
                raise SpurAuditError(f"label row {i} lacks {', '.join(missing)}; each row needs dataset, model, "
                                     "class_index, feature and answer")
            unknown = set(row) - set(self._LABEL_COLUMNS)
            if unknown:
                raise SpurAuditError(f"label row {i} has unknown keys {sorted(unknown)}; valid keys: "
                                     f"{', '.join(self._LABEL_COLUMNS)}")
            check_choice("label answer", row["answer"], LABEL_ANSWERS)
            source = row.get("source") or "human"
            check_choice("label source", source, LABEL_SOURCES)
            score = row.get("score")
            if score is not None:
                score = float(score)
                if math.isnan(score):
                    score = None
            cls, feat = int(row["class_index"]), int(row["feature"])
            if cls < 0 or feat < 0:
                raise SpurAuditError(f"label row {i}: class_index and feature must be >= 0, got {cls}, {feat}")
            prepared.append((str(row["dataset"]), str(row["model"]), cls, feat, row["answer"],
                             str(row.get("annotator") or ""), source, score, str(row.get("note") or ""), _now()))
        if not prepared:
            return 0

        def tx(conn: sqlite3.Connection) -> int:
            try:
                conn.executemany("INSERT INTO feature_labels (dataset, model, class_index, feature, answer, annotator, "
                                 "source, score, note, created) VALUES (?,?,?,?,?,?,?,?,?,?)", prepared)
            except sqlite3.IntegrityError as exc:
                pairs = sorted({(p[0], p[1]) for p in prepared})
                raise SpurAuditError(f"labels refer to an unknown dataset/model {pairs}; register them first "
                                     f"(known datasets: {_known([d.name for d in self.list_datasets()])})") from exc
            return len(prepared)

        return self._write(tx)

    def labels(self, dataset: str, model: str, *, source: str | None = None, latest: bool = False) -> "pd.DataFrame":
        """Feature labels of (dataset, model) as a DataFrame with columns id, dataset, model,
        class_index, feature, answer, annotator, source, score, note, created (oldest first).

        ``latest=True`` keeps only the newest answer per (class_index, feature, annotator, source)."""
        if source is not None:
            check_choice("label source", source, LABEL_SOURCES)
        sql = "SELECT * FROM feature_labels WHERE dataset=? AND model=?"
        args: list[Any] = [dataset, model]
        if source is not None:
            sql += " AND source=?"
            args.append(source)
        rows = self._read(sql + " ORDER BY id", args)
        cols = ["id", *self._LABEL_COLUMNS, "created"]
        df = pd.DataFrame([{c: r[c] for c in cols} for r in rows], columns=cols)
        df = df.astype({"id": "int64", "class_index": "int64", "feature": "int64", "score": "float64"})
        if latest and len(df):
            df = df.drop_duplicates(["class_index", "feature", "annotator", "source"], keep="last").reset_index(drop=True)
        return df

    def labels_version(self, dataset: str, model: str) -> tuple[int, int, int]:
        """(count, max id, sum of ids) of the feature labels of (dataset, model): changes whenever a
        label is added or removed, read with one indexed aggregate query (cheap enough for every
        dashboard rerun, unlike loading the whole table with `labels`)."""
        row = self._read("SELECT COUNT(*), COALESCE(MAX(id), 0), COALESCE(SUM(id), 0) FROM feature_labels "
                         "WHERE dataset=? AND model=?", [dataset, model])[0]
        return (int(row[0]), int(row[1]), int(row[2]))

    def delete_labels(self, ids: Iterable[int]) -> int:
        """Delete labels by id (undo); returns how many were removed."""
        ids = [int(i) for i in ids]
        if not ids:
            return 0
        return self._write(lambda conn: conn.executemany("DELETE FROM feature_labels WHERE id=?",
                                                         [(i,) for i in ids]).rowcount)

    # ---------------------------------------------------------------- concepts
    def add_concept(self, *, dataset: str, text: str, class_index: int | None = None, kind: str = "spurious") -> int:
        """Record a concept text (for CLIP scoring) for a dataset (optionally one class); returns its id."""
        check_choice("concept kind", kind, CONCEPT_KINDS)
        if not str(text).strip():
            raise SpurAuditError("concept text is empty; give a short phrase such as 'a red background'")
        self.get_dataset(dataset)
        return self._write(lambda conn: conn.execute(
            "INSERT INTO concepts (dataset, text, class_index, kind, created) VALUES (?,?,?,?,?)",
            (dataset, str(text).strip(), None if class_index is None else int(class_index), kind, _now())).lastrowid)

    def concepts(self, dataset: str) -> "pd.DataFrame":
        """Concepts of a dataset: columns id, dataset, text, class_index, kind, created."""
        cols = ["id", "dataset", "text", "class_index", "kind", "created"]
        rows = self._read("SELECT * FROM concepts WHERE dataset=? ORDER BY id", (dataset,))
        return pd.DataFrame([{c: r[c] for c in cols} for r in rows], columns=cols)

    def delete_concept(self, concept_id: int) -> None:
        self._write(lambda conn: conn.execute("DELETE FROM concepts WHERE id=?", (int(concept_id),)))

    # ---------------------------------------------------------------- runs
    def _run_record(self, row: sqlite3.Row) -> RunRecord:
        keys = row.keys()
        return RunRecord(id=row["id"], method=row["method"], dataset=row["dataset"], model=row["model"],
                         params=_loads(row["params"], {}), metrics=_loads(row["metrics"], {}), status=row["status"],
                         artifacts={k: self.path(v) for k, v in _loads(row["artifacts"], {}).items()},
                         error=row["error"], created=row["created"], updated=row["updated"],
                         **{k: row[k] for k in ("owner_pid", "owner_host", "owner_token", "heartbeat") if k in keys})

    def add_run(self, *, method: str, dataset: str | None, model: str | None, params: dict | None = None,
                status: str = "running") -> int:
        """Record a method run; returns its id (artifacts go under ``runs/<id>/``). The calling process is
        recorded as its owner (`core.runs`: a run whose owner dies is marked failed when runs are listed)."""
        check_choice("run status", status, RUN_STATUSES)
        now = _now()
        me = process_identity()
        return self._write(lambda conn: conn.execute(
            "INSERT INTO runs (method, dataset, model, params, status, created, updated, owner_pid, owner_host, "
            "owner_token) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (str(method), dataset, model, _dumps(params or {}), status, now, now, me["pid"], me["host"],
             me["token"])).lastrowid)

    def set_run_owner(self, run_id: int, *, pid: int, host: str, token: str = "",
                      heartbeat: float | None = None) -> None:
        """Record which process works on a run (and its first heartbeat); see `core.runs.track_run`."""
        n = self._write(lambda conn: conn.execute(
            "UPDATE runs SET owner_pid=?, owner_host=?, owner_token=?, heartbeat=? WHERE id=?",
            (int(pid), str(host), str(token or ""), heartbeat, int(run_id))).rowcount)
        if not n:
            raise SpurAuditError(f"unknown run id {run_id}; list runs with `python -m core run list`")

    def beat_run(self, run_id: int) -> None:
        """Store a heartbeat (now) for a running run."""
        self._write(lambda conn: conn.execute("UPDATE runs SET heartbeat=? WHERE id=? AND status='running'",
                                              (time.time(), int(run_id))))

    def run_dir(self, run_id: int) -> str:
        return f"runs/{int(run_id)}"

    def update_run(self, run_id: int, *, status: str | None = None, metrics: dict | None = None,
                   artifacts: dict[str, str | Path] | None = None, error: str | None = None,
                   only_if_status: Iterable[str] | None = None) -> bool:
        """Update a run. ``metrics`` and ``artifacts`` (name -> path) are merged into what is stored.
        With ``only_if_status`` nothing changes unless the run's status is one of those; returns
        whether the run was updated."""
        if status is not None:
            check_choice("run status", status, RUN_STATUSES)
        stored_art = {k: self._store(v) for k, v in (artifacts or {}).items()}
        allowed = None if only_if_status is None else set(only_if_status)

        def tx(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT * FROM runs WHERE id=?", (int(run_id),)).fetchone()
            if row is None:
                raise SpurAuditError(f"unknown run id {run_id}; list runs with `python -m core run list`")
            if allowed is not None and row["status"] not in allowed:
                return False
            new_metrics = {**_loads(row["metrics"], {}), **(metrics or {})}
            new_art = {**_loads(row["artifacts"], {}), **stored_art}
            conn.execute("UPDATE runs SET status=?, metrics=?, artifacts=?, error=?, updated=? WHERE id=?",
                         (status or row["status"], _dumps(new_metrics), _dumps(new_art),
                          error if error is not None else row["error"], _now(), int(run_id)))
            self._record_sizes_of(conn, stored_art.values())
            return True

        return self._write(tx)

    def get_run(self, run_id: int) -> RunRecord:
        rows = self._read("SELECT * FROM runs WHERE id=?", (int(run_id),))
        if not rows:
            known = [str(r["id"]) for r in self._read("SELECT id FROM runs ORDER BY id DESC LIMIT 20")]
            raise SpurAuditError(f"unknown run id {run_id}; recent runs: {_known(known)}. Start one with "
                                 "`python -m core mitigate ...` or the dashboard's mitigate page")
        return self._run_record(rows[0])

    def list_runs(self, *, dataset: str | None = None, model: str | None = None,
                  method: str | None = None, status: str | None = None) -> list[RunRecord]:
        """Runs, oldest first, filtered by any of dataset, model, method, status. (Listing for a person?
        Call `core.runs.reconcile_runs` first, so runs whose process died show as failed.)"""
        if status is not None:
            check_choice("run status", status, RUN_STATUSES)
        sql, args = "SELECT * FROM runs WHERE 1=1", []
        for col, val in (("dataset", dataset), ("model", model), ("method", method), ("status", status)):
            if val is not None:
                sql += f" AND {col}=?"
                args.append(val)
        return [self._run_record(r) for r in self._read(sql + " ORDER BY id", args)]

    def delete_run(self, run_id: int, *, remove_files: bool = True) -> None:
        self.get_run(run_id)
        self._write(lambda conn: conn.execute("DELETE FROM runs WHERE id=?", (int(run_id),)))
        if remove_files:
            self._remove_dirs([self.run_dir(run_id)])

    # ---------------------------------------------------------------- jobs
    _JOB_FIELDS = {"status", "progress", "message", "pid", "heartbeat", "log_rel", "result", "error", "device",
                   "started", "finished", "params"}

    def _job_record(self, row: sqlite3.Row) -> JobRecord:
        return JobRecord(id=row["id"], kind=row["kind"], params=_loads(row["params"], {}), status=row["status"],
                         progress=float(row["progress"]), message=row["message"], pid=row["pid"],
                         heartbeat=row["heartbeat"], log_path=self.path(row["log_rel"]) if row["log_rel"] else None,
                         result=_loads(row["result"], None), error=row["error"], device=row["device"],
                         created=row["created"], started=row["started"], finished=row["finished"])

    def add_job(self, kind: str, params: dict | None = None, *, device: str | None = None) -> int:
        """Insert a queued job row; returns its id. Its log path is ``jobs/<id>.log``.
        (Start it with `core.jobs.submit`, which calls this.)"""
        if not str(kind).strip():
            raise SpurAuditError("job kind is empty; see core.jobs.JOB_KINDS for the valid kinds")

        def tx(conn: sqlite3.Connection) -> int:
            job_id = conn.execute("INSERT INTO jobs (kind, params, status, device, created) VALUES (?,?,?,?,?)",
                                  (str(kind), _dumps(params or {}), "queued", device, _now())).lastrowid
            conn.execute("UPDATE jobs SET log_rel=? WHERE id=?", (f"jobs/{job_id}.log", job_id))
            return int(job_id)

        return self._write(tx)

    def get_job(self, job_id: int) -> JobRecord:
        rows = self._read("SELECT * FROM jobs WHERE id=?", (int(job_id),))
        if not rows:
            known = [str(r["id"]) for r in self._read("SELECT id FROM jobs ORDER BY id DESC LIMIT 20")]
            raise SpurAuditError(f"unknown job id {job_id}; recent jobs: {_known(known)}. "
                                 "See `python -m core job list`")
        return self._job_record(rows[0])

    def update_job(self, job_id: int, *, only_if_status: Iterable[str] | None = None, **fields: Any) -> bool:
        """Set job columns (status, progress, message, pid, heartbeat, result, error, device, started,
        finished, params). ``result``/``params`` are JSON-encoded. With ``only_if_status`` the update
        applies only while the job's status is one of those (returns False otherwise) — e.g. a
        finishing job must not overwrite a ``cancelled`` status."""
        check_options("job field", fields, self._JOB_FIELDS)
        if "status" in fields:
            check_choice("job status", fields["status"], JOB_STATUSES)
        if "progress" in fields:
            fields["progress"] = min(max(float(fields["progress"]), 0.0), 1.0)
        for key in ("result", "params"):
            if key in fields and fields[key] is not None:
                fields[key] = _dumps(fields[key])
        if not fields:
            return True
        cols = sorted(fields)
        sql = "UPDATE jobs SET " + ", ".join(f"{c}=?" for c in cols) + " WHERE id=?"
        args: list[Any] = [fields[c] for c in cols] + [int(job_id)]
        if only_if_status is not None:
            allowed = list(only_if_status)
            sql += " AND status IN (" + ",".join("?" * len(allowed)) + ")"
            args += allowed
        return bool(self._write(lambda conn: conn.execute(sql, args).rowcount))

    def claim_jobs(self, choose: Callable[[list[JobRecord]], list[int]]) -> list[int]:
        """Atomically pick queued jobs to start: ``choose(active jobs, oldest first)`` returns the ids
        of waiting jobs (queued, no process yet) to dispatch; they are marked dispatched (``pid = -1``,
        heartbeat now) in the same ``BEGIN IMMEDIATE`` transaction, so two processes dispatching at
        once never start the same job or exceed a device's slots. Returns the claimed ids."""

        def tx(conn: sqlite3.Connection) -> list[int]:
            rows = conn.execute("SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY id").fetchall()
            active = [self._job_record(r) for r in rows]
            waiting = {j.id for j in active if j.status == "queued" and j.pid is None}
            chosen = [int(i) for i in choose(active) if int(i) in waiting]
            for job_id in chosen:
                conn.execute("UPDATE jobs SET pid=-1, heartbeat=? WHERE id=? AND status='queued' AND pid IS NULL",
                             (time.time(), job_id))
            return chosen

        return self._write(tx)

    def list_jobs(self, status: str | Iterable[str] | None = None, *, limit: int | None = None) -> list[JobRecord]:
        """Jobs, newest first; ``status`` filters (one status or several)."""
        sql, args = "SELECT * FROM jobs", []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            for s in statuses:
                check_choice("job status", s, JOB_STATUSES)
            sql += " WHERE status IN (" + ",".join("?" * len(statuses)) + ")"
            args += statuses
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [self._job_record(r) for r in self._read(sql, args)]

    # ---------------------------------------------------------------- check and backup
    def referenced_artifacts(self) -> list[tuple[str, str, bool | None]]:
        """``(record, stored path, is_folder)`` for every file or folder a record points to: dataset
        manifests and image roots, model checkpoints, feature/logit arrays, run artifacts (``is_folder``
        None: a run artifact may be either)."""
        out: list[tuple[str, str, bool | None]] = []
        for r in self._read("SELECT name, manifest_rel, root_rel FROM datasets ORDER BY name"):
            out += [(f"dataset {r['name']} manifest", r["manifest_rel"], False),
                    (f"dataset {r['name']} image root", r["root_rel"], True)]
        for r in self._read("SELECT name, checkpoint_rel FROM models ORDER BY name"):
            out.append((f"model {r['name']} checkpoint", r["checkpoint_rel"], False))
        for r in self._read("SELECT dataset, model, split, features_rel, logits_rel FROM feature_sets "
                            "ORDER BY dataset, model, split"):
            key = f"{r['dataset']}/{r['model']}/{r['split']}"
            out += [(f"feature set {key} features", r["features_rel"], False),
                    (f"feature set {key} logits", r["logits_rel"], False)]
        for r in self._read("SELECT id, artifacts FROM runs ORDER BY id"):
            for name, stored in sorted(_loads(r["artifacts"], {}).items()):
                out.append((f"run {r['id']} {name}", stored, None))
        return out

    def check(self, *, record_sizes: bool = True) -> dict:
        """Check the workspace: SQLite ``integrity_check``, the application id, and that every artifact a
        record points to exists and has the size recorded when it was written. Files whose size was never
        recorded (a workspace made before sizes were kept, a file written outside the workspace) get it
        recorded now (``record_sizes``; not on a read-only workspace). Returns a JSON-able dict with
        ``ok``, ``integrity`` (["ok"] or SQLite's findings), ``missing``, ``size_mismatch`` (record, path,
        recorded, actual), ``artifacts_checked``, ``recorded_now``."""
        out: dict[str, Any] = {"workspace": str(self.root), "db": str(self.db_path), "read_only": self.read_only}
        try:
            out["integrity"] = [str(r[0]) for r in self._read("PRAGMA integrity_check")]
            out["application_id_ok"] = int(self._read("PRAGMA application_id")[0][0]) == APPLICATION_ID
            out["schema_version"] = self.schema_version
            refs = self.referenced_artifacts()
            sizes = {r["path"]: int(r["size"]) for r in self._read("SELECT path, size FROM artifact_sizes")}
        except SpurAuditError as exc:
            out.update(integrity=out.get("integrity") or [str(exc)], application_id_ok=out.get("application_id_ok"),
                       artifacts_checked=0, missing=[], size_mismatch=[], recorded_now=0, ok=False,
                       error=str(exc))
            return out
        missing, mismatch, unrecorded = [], [], []
        for record, stored, is_folder in refs:
            p = self.path(stored)
            shown = stored
            if not (p.is_dir() if is_folder else p.exists()):
                missing.append({"record": record, "path": shown})
                continue
            if p.is_dir():
                continue
            try:
                actual = p.stat().st_size
            except OSError:
                missing.append({"record": record, "path": shown})
                continue
            if stored not in sizes:
                unrecorded.append((stored, actual))
            elif sizes[stored] != actual:
                mismatch.append({"record": record, "path": shown, "recorded": sizes[stored], "actual": actual})
        recorded_now = 0
        if unrecorded and record_sizes and not self.read_only:
            self._write(lambda conn: [self._record_size(p, n, conn) for p, n in unrecorded])
            recorded_now = len(unrecorded)
        out.update(artifacts_checked=len(refs), missing=missing, size_mismatch=mismatch, recorded_now=recorded_now,
                   unrecorded=len(unrecorded) - recorded_now)
        out["ok"] = out["integrity"] == ["ok"] and bool(out["application_id_ok"]) and not missing and not mismatch
        return out

    _BACKUP_SKIP_DIRS = ("cache",)          # regenerable: thumbnails, overlays, decoded image arrays

    def _backup_files(self) -> tuple[list[tuple[str, int]], int]:
        """(relative path, size) of every artifact file to back up, and how many files were skipped
        (the database and its journal files, temporary files, ``cache/`` folders)."""
        files, skipped = [], 0
        db_files = {DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", DB_NAME + "-journal"}
        for folder, dirs, names in os.walk(self.root, followlinks=False):
            rel_folder = Path(folder).relative_to(self.root)
            keep = []
            for d in sorted(dirs):
                if d in self._BACKUP_SKIP_DIRS or (d.startswith(".") and (".tmp" in d or d.endswith(".old"))):
                    skipped += sum(len(n) for _, _, n in os.walk(Path(folder) / d))
                else:
                    keep.append(d)
            dirs[:] = keep
            for name in sorted(names):
                rel = (rel_folder / name).as_posix()
                if (rel_folder == Path(".") and name in db_files) or (name.startswith(".") and ".tmp" in name):
                    skipped += 1
                    continue
                try:
                    files.append((rel, (Path(folder) / name).stat().st_size))
                except OSError:
                    skipped += 1
        return files, skipped

    def backup(self, dest: str | Path, *, artifacts: str = "copy", progress: Callable[[float, str], None] | None = None) -> dict:
        """Back the workspace up into the new (or empty) folder ``dest``, outside the workspace.

        The database is copied with SQLite's online backup API (``sqlite3.Connection.backup``): every page
        in one step under one read transaction, so the copy is one consistent snapshot even while jobs
        write (WAL readers do not block writers), and it is checked (``quick_check``) before it is renamed
        to ``dest/audit.db``. Artifacts: ``artifacts="copy"`` copies every file of the workspace folder
        (``cache/`` folders, the database's journal files and temporary files are skipped; they are
        regenerable or part of the snapshot); ``"list"`` copies none and lists them (path, size) so they
        can be copied by other means. Files written after the snapshot may be included (harmless);
        dataset folders outside the workspace are listed as ``external``, never copied. ``dest/backup.json``
        describes the backup; ``dest`` is itself a workspace. The backup is recorded in this workspace
        (`last_backup`) unless it is read-only.
        """
        check_choice("backup artifacts mode", artifacts, ("copy", "list"))
        report = progress or (lambda f, m="": None)
        target = Path(dest).expanduser().resolve()
        if target == self.root or self.root in target.parents:
            raise SpurAuditError(f"backup destination {target} is inside the workspace {self.root}; pick a folder "
                                 "outside it (ideally on another disk)")
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise SpurAuditError(f"backup destination {target} is not empty; give a new or empty folder "
                                 "(a backup never overwrites anything)")
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpurAuditError(f"cannot create the backup folder {target} ({exc.strerror or exc}); "
                                 "pick a folder you can write to") from None
        created = _now()
        partial = target / f".{DB_NAME}.partial"

        def snapshot() -> str:
            src = self._connect()
            try:
                dst = sqlite3.connect(partial)
                try:
                    src.backup(dst)
                    return str(dst.execute("PRAGMA quick_check").fetchone()[0])
                finally:
                    dst.close()
            finally:
                src.close()

        report(0.0, "copying the database")
        verdict = self._retry(snapshot)
        if verdict != "ok":
            partial.unlink(missing_ok=True)
            raise SpurAuditError(f"the backup of {self.db_path} failed its check ({verdict}); the database may be "
                                 f"damaged — run `python -m core workspace check --workspace {self.root}`")
        os.replace(partial, target / DB_NAME)
        db_bytes = (target / DB_NAME).stat().st_size
        files, skipped = self._backup_files()
        copied, vanished, total = 0, [], 0
        for i, (rel, size) in enumerate(files):
            if artifacts == "copy":
                out = target / rel
                try:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(self.root / rel, out)
                    copied += 1
                except FileNotFoundError:  # removed since it was listed
                    vanished.append(rel)
                    continue
            total += size
            if i % 50 == 0:
                report(0.1 + 0.85 * i / max(len(files), 1), f"{'copying' if artifacts == 'copy' else 'listing'} {rel}")
        external = [{"record": record, "path": stored} for record, stored, _ in self.referenced_artifacts()
                    if Path(stored).is_absolute() and self.root not in Path(stored).parents]
        listed = [{"path": rel, "size": size} for rel, size in files if rel not in set(vanished)]
        info = {"created": created, "source": str(self.root), "schema_version": self.schema_version,
                "db_bytes": db_bytes, "mode": artifacts, "files": listed, "skipped": skipped, "vanished": vanished,
                "external": external,
                "note": ("artifact files copied beside audit.db" if artifacts == "copy" else
                         "artifact files NOT copied: copy the listed files from the source to restore")}
        tmp = target / ".backup.json.tmp"
        tmp.write_text(json.dumps(info, indent=2, default=json_default), encoding="utf-8")
        os.replace(tmp, target / "backup.json")
        recorded = False
        if not self.read_only:
            self._write(lambda conn: conn.execute(
                "INSERT INTO backups (dest, created, db_bytes, files, file_bytes, mode) VALUES (?,?,?,?,?,?)",
                (str(target), created, db_bytes, len(listed), total, artifacts)))
            recorded = True
        report(1.0, f"backup in {target}")
        return {"dest": str(target), "created": created, "db_bytes": db_bytes, "recorded": recorded,
                "artifacts": {"mode": artifacts, "listed": len(listed), "copied": copied, "bytes": total,
                              "skipped": skipped, "vanished": vanished, "external": external}}

    def last_backup(self) -> dict | None:
        """The newest backup recorded by `backup`: dest, created (UTC ISO), db_bytes, files, file_bytes,
        mode; None when there is none."""
        rows = self._read("SELECT * FROM backups ORDER BY id DESC LIMIT 1")
        if not rows:
            return None
        r = rows[0]
        return {"dest": r["dest"], "created": r["created"], "db_bytes": r["db_bytes"], "files": r["files"],
                "file_bytes": r["file_bytes"], "mode": r["mode"]}

    # ---------------------------------------------------------------- summary
    def summary(self) -> dict:
        """Counts for the dashboard home page: datasets, models, feature_sets, labels, concepts,
        runs, jobs, jobs_active, plus ``root``, ``schema_version`` and ``read_only``."""
        out: dict[str, Any] = {"root": str(self.root), "schema_version": self.schema_version,
                               "read_only": self.read_only}
        for key, table in (("datasets", "datasets"), ("models", "models"), ("feature_sets", "feature_sets"),
                           ("labels", "feature_labels"), ("concepts", "concepts"), ("runs", "runs"),
                           ("jobs", "jobs")):
            out[key] = int(self._read(f"SELECT COUNT(*) FROM {table}")[0][0])
        out["jobs_active"] = int(self._read("SELECT COUNT(*) FROM jobs WHERE status IN ('queued','running')")[0][0])
        return out


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def check_name(what: str, name: str) -> None:
    """Refuse a dataset/model name that cannot name a folder of the workspace: empty, with surrounding
    spaces, one of / \\ : * ? " < > |, or starting with a dot (hidden, or ``..``)."""
    if not isinstance(name, str) or not name.strip():
        raise SpurAuditError(f"{what} name is empty; give a short name such as 'cmnist'")
    if set(name) & set('/\\:*?"<>|') or name.startswith(".") or name != name.strip():
        raise SpurAuditError(f"{what} name {name!r} cannot contain / \\ : * ? \" < > |, start with a dot or have "
                             "surrounding spaces (it names a folder); use letters, digits, '-', '_' or '.' "
                             "(e.g. cmnist-1pct)")
