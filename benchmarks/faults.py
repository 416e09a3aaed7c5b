"""Benchmark: the bad-input and fault matrix — every bad input and fault gets a clear answer, nothing is
lost, nothing is altered that is not ours (issue 15).

    python benchmarks/faults.py [--quick] [--json] [--workers 2] [--only TEXT ...] [--out FILE]

Each row builds its situation in a temporary workspace (a copy of one small base workspace: a
biased-MNIST dataset, a 1-epoch small CNN, labels, a run, a job), runs the CLI as subprocesses
(``python -m core ...``) and checks the answer:

* ``error`` rows expect exit 2 and a message on stderr that names the problem (a needle);
* ``handled`` rows expect the fault to be absorbed (exit 0, the right state afterwards: a killed run
  marked failed, 4,000 of 4,000 rows, a read-only workspace readable, ...).

Every row also reports tracebacks (any ``Traceback`` in a process's output), rows lost (database rows
and artifact files there before the fault and gone after it) and foreign files altered (files that are
not SpurAudit's — another program's ``audit.db``, the files beside it, the folders a dataset points to —
whose bytes changed, or files added beside them). It prints cases tried, clear errors, handled faults,
tracebacks (must be 0), rows lost (must be 0), foreign files altered (must be 0) and the rows that did
not meet their expectation; ``--json``: one JSON object. Exit 0 when everything held.

``--quick`` (CI, via tests/test_benchmarks.py) runs the rows marked quick (one or two per group, about a minute on 2 cores);
the full run adds the rest. Adding a row: write a function ``def row_x(b: Bench) -> Result`` decorated
with ``@case("name", "group", quick=...)``; build the situation with ``b.workspace()`` /
``b.empty_workspace()`` / ``b.folder()``, run ``b.cli(...)``, return ``b.error(proc, "needle")`` or
``b.handled(ok, detail, *procs)`` (plus ``lost=`` / ``altered=`` counts where the row measures them).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PY = sys.executable
NOBODY = 65534
CLI_TIMEOUT_S = 240.0


# --------------------------------------------------------------------------------------------------
# results and the row registry
# --------------------------------------------------------------------------------------------------
@dataclass
class Proc:
    args: list[str]
    code: int
    out: str
    err: str

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.out or "Traceback (most recent call last)" in self.err


@dataclass
class Result:
    ok: bool
    detail: str
    procs: list[Proc] = field(default_factory=list)
    lost: int = 0
    altered: int = 0
    expect: str = "error"

    @property
    def tracebacks(self) -> int:
        return sum(p.traceback for p in self.procs)


@dataclass
class Case:
    name: str
    group: str
    fn: Callable[["Bench"], Result]
    quick: bool


CASES: list[Case] = []


def case(name: str, group: str, *, quick: bool = False) -> Callable:
    def deco(fn: Callable[["Bench"], Result]) -> Callable[["Bench"], Result]:
        CASES.append(Case(name, group, fn, quick))
        return fn

    return deco


# --------------------------------------------------------------------------------------------------
# the bench: temporary folders, the base workspace, CLI calls, measurements
# --------------------------------------------------------------------------------------------------
def file_state(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``folder``."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[p.relative_to(folder).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def altered(before: dict[str, str], after: dict[str, str]) -> int:
    """Files changed, removed or added between two `file_state` snapshots."""
    return sum(before.get(k) != after.get(k) for k in set(before) | set(after))


def row_counts(db: Path) -> dict[str, int]:
    """Rows per table of a SpurAudit database (a read-only connection; it reads pages still in the WAL)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                            "AND name NOT LIKE 'sqlite_%'")]
        return {t: int(con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]) for t in tables}
    finally:
        con.close()


def lost_rows(before: dict[str, int], after: dict[str, int]) -> int:
    return sum(max(0, n - after.get(t, 0)) for t, n in before.items())


class Bench:
    def __init__(self, tmp: Path, base: Path) -> None:
        self.tmp, self.base = tmp, base
        self._n = 0

    def folder(self, name: str = "f") -> Path:
        self._n += 1
        p = self.tmp / f"{name}-{self._n}-{os.getpid()}-{time.monotonic_ns()}"
        p.mkdir(parents=True)
        os.chmod(p, 0o755)
        return p

    def workspace(self) -> Path:
        """A private copy of the base workspace (dataset bm, model cnn, labels, a done run, a done job)."""
        dest = self.folder("ws") / "ws"
        shutil.copytree(self.base, dest, symlinks=True)
        return dest

    def empty_workspace(self) -> Path:
        from core.workspace import Workspace

        dest = self.folder("empty") / "ws"
        Workspace(dest)
        return dest

    def cli(self, *args: str, workspace: Path | None = None, as_nobody: bool = False, extra: list[str] | None = None,
            timeout: float = CLI_TIMEOUT_S, env: dict | None = None) -> Proc:
        cmd = [PY, "-m", "core", *args] + (["--workspace", str(workspace)] if workspace is not None else []) + (extra or [])
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
        if as_nobody and os.geteuid() == 0:
            cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
            full_env["HOME"] = tempfile.gettempdir()
        try:
            proc = subprocess.run(cmd, cwd=str(ROOT), env=full_env, capture_output=True, text=True, timeout=timeout)
            return Proc(list(args), proc.returncode, proc.stdout, proc.stderr)
        except subprocess.TimeoutExpired as exc:
            return Proc(list(args), -9, str(exc.stdout or ""), f"timed out after {timeout:.0f} s")

    def popen(self, *args: str, workspace: Path) -> subprocess.Popen:
        cmd = [PY, "-m", "core", *args, "--workspace", str(workspace)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)

    # ---- verdicts
    @staticmethod
    def error(proc: Proc, *needles: str, procs: list[Proc] | None = None, lost: int = 0, altered: int = 0) -> Result:
        """Exit 2 and every needle on stderr (the message names the problem)."""
        missing = [n for n in needles if n not in proc.err]
        ok = proc.code == 2 and not missing and not proc.traceback
        detail = (f"exit {proc.code}" + (f", message lacks {missing}" if missing else "")
                  + (": " + (proc.err.strip().splitlines() or [""])[-1][:160] if not ok else ""))
        return Result(ok, detail if not ok else (proc.err.strip().splitlines() or [""])[-1][:160],
                      (procs or []) + [proc], lost=lost, altered=altered, expect="error")

    @staticmethod
    def handled(ok: bool, detail: str, *procs: Proc, lost: int = 0, altered: int = 0) -> Result:
        return Result(bool(ok) and not any(p.traceback for p in procs), detail, list(procs), lost=lost,
                      altered=altered, expect="handled")


def _wait_for(pred: Callable[[], object], timeout: float = 180.0, poll: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(poll)
    return None


def _json(proc: Proc) -> dict:
    try:
        return json.loads(proc.out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}


def _png(path: Path, value: int = 0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value % 256, 40, 90)).save(path)


def _image_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per: int = 6) -> Path:
    for c, name in enumerate(classes):
        for i in range(per):
            _png(root / name / f"{i}.png", 30 * i + c)
    return root


def _csv(folder: Path, rows: list[tuple[str, str, str]], *, header: str = "path,label,bias") -> Path:
    for i in range(12):
        if not (folder / f"img{i}.png").exists():
            _png(folder / f"img{i}.png", 20 * i)
    text = header + "\n" + "".join(",".join(r) + "\n" for r in rows)
    (folder / "t.csv").write_text(text)
    return folder / "t.csv"


GOOD_ROWS = [(f"img{i}.png", str(i % 2), str(i % 2)) for i in range(10)]


def _add_csv(b: Bench, rows: list[tuple[str, str, str]], *extra: str) -> tuple[Proc, Path]:
    src = b.folder("csv")
    csv = _csv(src, rows)
    ws = b.empty_workspace()
    return b.cli("dataset", "add", "mine", "--from", "csv", str(csv), "--bias-col", "bias", *extra, workspace=ws), ws


# --------------------------------------------------------------------------------------------------
# rows: CSV import (item 1)
# --------------------------------------------------------------------------------------------------
@case("csv: blank label", "csv import")
def row_csv_blank_label(b: Bench) -> Result:
    proc, _ = _add_csv(b, GOOD_ROWS + [("img10.png", "", "1")])
    return b.error(proc, "empty label")


@case("csv: non-integer label 1.5", "csv import")
def row_csv_float_label(b: Bench) -> Result:
    proc, _ = _add_csv(b, GOOD_ROWS + [("img10.png", "1.5", "1")])
    return b.error(proc, "'1.5' is not an integer")


@case("csv: blank bias value = unknown", "csv import")
def row_csv_blank_bias(b: Bench) -> Result:
    proc, ws = _add_csv(b, GOOD_ROWS + [("img10.png", "1", "")], "--json")
    out = _json(proc)
    return b.handled(proc.code == 0 and out.get("n") == 11, f"exit {proc.code}, {out.get('n')} rows", proc)


@case("csv: --skip-bad lists bad rows in skipped.csv", "csv import", quick=True)
def row_csv_skip_bad(b: Bench) -> Result:
    proc, ws = _add_csv(b, GOOD_ROWS + [("img10.png", "", "1"), ("img11.png", "1.5", ""), ("", "0", "0")],
                        "--skip-bad", "--json")
    out = _json(proc)
    skipped = Path(out.get("skipped_csv", "/nonexistent"))
    text = skipped.read_text() if skipped.is_file() else ""
    ok = proc.code == 0 and out.get("skipped") == 3 and all(r in text for r in ("empty label", "not an integer",
                                                                                  "empty path"))
    return b.handled(ok, f"exit {proc.code}, skipped {out.get('skipped')}", proc)


@case("csv: mixed numeric and text labels", "csv import")
def row_csv_mixed(b: Bench) -> Result:
    rows = [(f"img{i}.png", ["0", "1", "cat", "dog"][i % 4], "0") for i in range(8)]
    proc, _ = _add_csv(b, rows)
    return b.error(proc, "mixes class indices and class names")


@case("csv: empty path cell", "csv import")
def row_csv_empty_path(b: Bench) -> Result:
    proc, _ = _add_csv(b, GOOD_ROWS + [("", "1", "1")])
    return b.error(proc, "empty path")


@case("csv: unknown split", "csv import")
def row_csv_unknown_split(b: Bench) -> Result:
    src = b.folder("csv")
    _csv(src, [])
    (src / "t.csv").write_text("path,label,split\n" + "".join(f"img{i}.png,{i % 2},{'train' if i else 'banana'}\n"
                                                            for i in range(10)))
    proc = b.cli("dataset", "add", "mine", "--from", "csv", str(src / "t.csv"), "--split-col", "split",
                 workspace=b.empty_workspace())
    return b.error(proc, "unknown split 'banana'")


# --------------------------------------------------------------------------------------------------
# rows: images and paths (hold already; item 8 symlinks)
# --------------------------------------------------------------------------------------------------
@case("images: missing image", "images and paths")
def row_missing_image(b: Bench) -> Result:
    src = b.folder("csv")
    csv = _csv(src, GOOD_ROWS + [("gone.png", "1", "1")])
    proc = b.cli("dataset", "add", "mine", "--from", "csv", str(csv), workspace=b.empty_workspace())
    return b.error(proc, "gone.png (missing image file)")


@case("images: corrupt image", "images and paths", quick=True)
def row_corrupt_image(b: Bench) -> Result:
    root = _image_folder(b.folder("img") / "data")
    (root / "cat" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    before = file_state(root)
    proc = b.cli("dataset", "add", "pets", "--from", "imagefolder", str(root), workspace=b.empty_workspace())
    return b.error(proc, "cat/3.png (unreadable image", altered=altered(before, file_state(root)))


@case("images: 0-byte image", "images and paths")
def row_empty_image(b: Bench) -> Result:
    root = _image_folder(b.folder("img") / "data")
    (root / "dog" / "2.png").write_bytes(b"")
    proc = b.cli("dataset", "add", "pets", "--from", "imagefolder", str(root), workspace=b.empty_workspace())
    return b.error(proc, "dog/2.png (unreadable image")


@case("images: empty class folder", "images and paths")
def row_empty_class(b: Bench) -> Result:
    root = _image_folder(b.folder("img") / "data")
    (root / "emu").mkdir()
    proc = b.cli("dataset", "add", "pets", "--from", "imagefolder", str(root), workspace=b.empty_workspace())
    return b.error(proc, "empty class")


@case("paths: ../../etc/passwd", "images and paths", quick=True)
def row_path_escape(b: Bench) -> Result:
    src = b.folder("csv")
    csv = _csv(src, GOOD_ROWS + [("../../etc/passwd", "1", "1")])
    proc = b.cli("dataset", "add", "mine", "--from", "csv", str(csv), workspace=b.empty_workspace())
    return b.error(proc, "../../etc/passwd (path outside the dataset root")


@case("paths: symlink to an image outside the root", "images and paths")
def row_symlink_image(b: Bench) -> Result:
    base = b.folder("img")
    root = _image_folder(base / "data")
    _png(base / "secret" / "private.png", 9)
    os.symlink(base / "secret" / "private.png", root / "cat" / "link.png")
    proc = b.cli("dataset", "add", "pets", "--from", "imagefolder", str(root), workspace=b.empty_workspace())
    return b.error(proc, "cat/link.png (path outside the dataset root", "symbolic link")


@case("paths: symlink to /etc/hostname with --no-check-images", "images and paths")
def row_symlink_hostname(b: Bench) -> Result:
    root = _image_folder(b.folder("img") / "data")
    target = Path("/etc/hostname") if Path("/etc/hostname").exists() else Path("/etc/passwd")
    os.symlink(target, root / "dog" / "host.png")
    proc = b.cli("dataset", "add", "pets", "--from", "imagefolder", str(root), "--no-check-images",
                 workspace=b.empty_workspace())
    return b.error(proc, "dog/host.png (path outside the dataset root")


# --------------------------------------------------------------------------------------------------
# rows: option values and absurd parameters (item 6; the rest hold)
# --------------------------------------------------------------------------------------------------
def _mitigate_error(b: Bench, method: str, setting: str, needle: str) -> Result:
    ws = b.workspace()
    before = row_counts(ws / "audit.db")
    proc = b.cli("mitigate", "--dataset", "bm", "--model", "cnn", "--method", method, "--set", setting,
                 "--device", "cpu", workspace=ws)
    after = row_counts(ws / "audit.db")
    res = b.error(proc, needle, lost=lost_rows(before, after))
    if after.get("runs") != before.get("runs"):
        res.ok, res.detail = False, "a run was recorded for refused options"
    return res


@case("options: head-tuning --set lr=abc", "option values")
def row_opt_lr(b: Bench) -> Result:
    return _mitigate_error(b, "head-tuning", "lr=abc", "option head-tuning.lr expects a number, got 'abc'")


@case("options: error-tuning --set lr=abc", "option values")
def row_opt_error_tuning(b: Bench) -> Result:
    return _mitigate_error(b, "error-tuning", "lr=abc", "option error-tuning.lr expects a number")


@case("options: ffw --set gamma=abc", "option values")
def row_opt_gamma(b: Bench) -> Result:
    return _mitigate_error(b, "ffw", "gamma=abc", "option ffw.gamma expects a number")


@case("options: --set lr=NaN", "option values", quick=True)
def row_opt_nan(b: Bench) -> Result:
    return _mitigate_error(b, "head-tuning", "lr=NaN", "option head-tuning.lr expects a number, got nan")


@case("options: dcwp --set lambda_sparse=abc", "option values")
def row_opt_dcwp(b: Bench) -> Result:
    return _mitigate_error(b, "dcwp", "lambda_sparse=abc", "option dcwp.lambda_sparse expects a number")


@case("options: compare --sweep gamma=1,abc", "option values")
def row_opt_sweep(b: Bench) -> Result:
    ws = b.workspace()
    before = row_counts(ws / "audit.db")
    proc = b.cli("compare", "--dataset", "bm", "--model", "cnn", "--methods", "ffw", "--sweep", "gamma=1,abc",
                 "--device", "cpu", workspace=ws)
    res = b.error(proc, "option ffw.gamma expects a number")
    if row_counts(ws / "audit.db").get("runs") != before.get("runs"):
        res.ok, res.detail = False, "a run was recorded for a refused sweep value"
    return res


@case("absurd: model train --epochs -1", "absurd parameters", quick=True)
def row_absurd_epochs(b: Bench) -> Result:
    proc = b.cli("model", "train", "bad", "--dataset", "bm", "--epochs", "-1", "--device", "cpu", workspace=b.workspace())
    return b.error(proc, "epochs")


@case("absurd: model train --batch-size 0", "absurd parameters")
def row_absurd_batch(b: Bench) -> Result:
    proc = b.cli("model", "train", "bad", "--dataset", "bm", "--batch-size", "0", "--device", "cpu",
                 workspace=b.workspace())
    return b.error(proc, "batch")


@case("absurd: dataset build --conflict 2", "absurd parameters")
def row_absurd_conflict(b: Bench) -> Result:
    proc = b.cli("dataset", "build", "colored-mnist", "--name", "x", "--conflict", "2", workspace=b.empty_workspace())
    return b.error(proc, "conflict")


@case("absurd: extract --batch-size 0", "absurd parameters")
def row_absurd_extract(b: Bench) -> Result:
    proc = b.cli("extract", "--dataset", "bm", "--model", "cnn", "--batch-size", "0", "--device", "cpu",
                 workspace=b.workspace())
    return b.error(proc, "batch")


# --------------------------------------------------------------------------------------------------
# rows: checkpoints (item 7: one wrapped loader, one clear message)
# --------------------------------------------------------------------------------------------------
@case("checkpoints: malicious pickle is never executed", "checkpoints", quick=True)
def row_malicious_pickle(b: Bench) -> Result:
    folder = b.folder("evil")
    marker = folder / "PWNED"
    script = ("import os, sys, torch\n"
              "class Evil:\n"
              "    def __reduce__(self):\n"
              f"        return (os.system, ('touch {marker}',))\n"
              f"torch.save({{'state_dict': {{'w': torch.ones(1)}}, 'x': Evil()}}, {str(folder / 'evil.pt')!r})\n")
    subprocess.run([PY, "-c", script], check=True, capture_output=True, timeout=CLI_TIMEOUT_S)
    proc = b.cli("model", "register", "evil", "--arch", "small_cnn", "--pretrained", str(folder / "evil.pt"),
                 "--dataset", "bm", workspace=b.workspace())
    res = b.error(proc, "weights_only")
    if marker.exists():
        res.ok, res.detail, res.altered = False, "the pickle ran code", 1
    return res


@case("checkpoints: wrong architecture", "checkpoints")
def row_wrong_arch(b: Bench) -> Result:
    folder = b.folder("ckpt")
    script = ("import torch\nfrom core.models.registry import build_model\n"
              f"torch.save(build_model('mlp', num_classes=10).state_dict(), {str(folder / 'mlp.pt')!r})\n")
    subprocess.run([PY, "-c", script], check=True, capture_output=True, timeout=CLI_TIMEOUT_S,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc = b.cli("model", "register", "wrong", "--arch", "small_cnn", "--pretrained", str(folder / "mlp.pt"),
                 "--dataset", "bm", workspace=b.workspace())
    return b.error(proc, "does not match the model")


@case("checkpoints: 0-byte .pt in model register", "checkpoints", quick=True)
def row_empty_checkpoint(b: Bench) -> Result:
    path = b.folder("ckpt0") / "empty.pt"
    path.write_bytes(b"")
    proc = b.cli("model", "register", "empty", "--arch", "small_cnn", "--pretrained", str(path), "--dataset", "bm",
                 workspace=b.workspace())
    return b.error(proc, "empty (0 bytes)", str(path))


@case("checkpoints: model show on a registered checkpoint that became 0 bytes / junk", "checkpoints")
def row_damaged_registered_checkpoint(b: Bench) -> Result:
    folder = b.folder("ckptj")
    script = ("import torch\nfrom core.models import build_model, save_model\n"
              f"save_model(build_model('small_cnn', num_classes=10), {str(folder / 'ok.pt')!r})\n")
    subprocess.run([PY, "-c", script], check=True, capture_output=True, timeout=CLI_TIMEOUT_S,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    ws = b.workspace()
    first = b.cli("model", "register", "later-damaged", "--arch", "small_cnn", "--pretrained", str(folder / "ok.pt"),
                  "--dataset", "bm", workspace=ws)
    if first.code != 0:
        return b.handled(False, f"could not register the good checkpoint: {first.err[-200:]}", first)
    ckpt = ws / "models" / "later-damaged" / "model.pt"
    ckpt.write_bytes(b"")
    empty = b.cli("model", "show", "later-damaged", workspace=ws)
    ckpt.write_bytes(b"definitely not a torch file")
    junk = b.cli("model", "show", "later-damaged", workspace=ws)
    verdicts = [b.error(empty, "empty (0 bytes)"), b.error(junk, "not a readable torch file")]
    return Result(all(v.ok for v in verdicts), "; ".join(v.detail for v in verdicts), [first, empty, junk])


@case("files: training into an unwritable models/ fails before the training", "output and files")
def row_unwritable_models(b: Bench) -> Result:
    ws = b.workspace()
    models = ws / "models"
    models.mkdir(exist_ok=True)
    as_nobody = os.geteuid() == 0   # root writes anywhere: train as a user who owns all but models/
    if as_nobody:
        for parent in ws.parents:
            if parent == Path(tempfile.gettempdir()):
                break
            os.chmod(parent, stat.S_IMODE(parent.stat().st_mode) | 0o011)   # others may traverse
        for p in [ws, *ws.rglob("*")]:
            if p != models:
                os.chown(p, NOBODY, NOBODY)
    else:
        os.chmod(models, 0o555)
    try:
        start = time.monotonic()
        proc = b.cli("model", "train", "never", "--dataset", "bm", "--arch", "small_cnn", "--epochs", "50",
                     workspace=ws, as_nobody=as_nobody)
        res = b.error(proc, "not writable")
        if "epoch" in proc.err.lower():
            res.ok, res.detail = False, f"trained before failing ({time.monotonic() - start:.0f} s)"
        return res
    finally:
        os.chmod(models, 0o755)
        if as_nobody:
            for p in [ws, *ws.rglob("*")]:
                os.chown(p, 0, 0)


# --------------------------------------------------------------------------------------------------
# rows: the database (items 3 and 4)
# --------------------------------------------------------------------------------------------------
LIGHT_READS = [["dataset", "list"], ["model", "list"], ["job", "list"], ["run", "list"], ["workspace", "info"]]


def _checkpointed(ws: Path) -> None:
    con = sqlite3.connect(ws / "audit.db")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def _every_read_errors(b: Bench, ws: Path, *needles: str, lost: int = 0, altered_: int = 0) -> Result:
    procs = [b.cli(*args, workspace=ws) for args in LIGHT_READS]
    verdicts = [b.error(p, *needles) for p in procs]
    bad = [f"{' '.join(p.args)}: {v.detail}" for p, v in zip(procs, verdicts) if not v.ok]
    return Result(not bad, "; ".join(bad) or verdicts[0].detail, procs, lost=lost, altered=altered_)


@case("database: corrupt header", "database")
def row_db_header(b: Bench) -> Result:
    ws = b.workspace()
    _checkpointed(ws)
    data = bytearray((ws / "audit.db").read_bytes())
    data[:16] = b"not a database!!"
    (ws / "audit.db").write_bytes(bytes(data))
    before = file_state(ws)
    res = _every_read_errors(b, ws, str(ws / "audit.db"), "backup")
    res.lost = altered(before, file_state(ws))   # nothing of the damaged workspace may change
    return res


@case("database: damaged pages", "database")
def row_db_pages(b: Bench) -> Result:
    ws = b.workspace()
    _checkpointed(ws)
    data = bytearray((ws / "audit.db").read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    data[page:] = bytes((i * 7919) % 251 for i in range(len(data) - page))
    (ws / "audit.db").write_bytes(bytes(data))
    before = file_state(ws)
    res = _every_read_errors(b, ws, str(ws / "audit.db"))
    check = b.cli("workspace", "check", workspace=ws)
    res.procs.append(check)
    if check.code not in (1, 2) or check.traceback:
        res.ok, res.detail = False, f"workspace check exit {check.code}"
    res.lost = altered(before, file_state(ws))
    return res


@case("database: 0-byte audit.db beside artifacts", "database")
def row_db_zero(b: Bench) -> Result:
    ws = b.workspace()
    (ws / "audit.db").write_bytes(b"")
    for extra in ("audit.db-wal", "audit.db-shm"):
        (ws / extra).unlink(missing_ok=True)
    before = file_state(ws)
    res = _every_read_errors(b, ws, "0 bytes", "datasets/")
    build = b.cli("dataset", "build", "colored-mnist", "--name", "again", workspace=ws)
    res.procs.append(build)
    if build.code != 2:
        res.ok, res.detail = False, f"a writing command re-initialised it (exit {build.code})"
    res.lost = altered(before, file_state(ws))
    return res


@case("database: missing audit.db beside artifacts", "database")
def row_db_missing(b: Bench) -> Result:
    ws = b.workspace()
    for name in ("audit.db", "audit.db-wal", "audit.db-shm"):
        (ws / name).unlink(missing_ok=True)
    before = file_state(ws)
    proc = b.cli("dataset", "build", "colored-mnist", "--name", "again", workspace=ws)
    return b.error(proc, "no audit.db", lost=altered(before, file_state(ws)))


@case("database: read-only workspace", "database")
def row_db_read_only(b: Bench) -> Result:
    ws = b.workspace()
    _checkpointed(ws)
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return b.handled(True, "skipped: root without setpriv cannot run as a user who cannot write")
    if os.geteuid() != 0:
        for p in [ws, *ws.rglob("*")]:
            os.chmod(p, stat.S_IMODE(p.stat().st_mode) & ~0o222)
    before = file_state(ws)
    try:
        reads = [b.cli(*args, "--json", workspace=ws, as_nobody=True)
                 for args in LIGHT_READS + [["label", "export", "--dataset", "bm", "--model", "cnn"],
                                            ["workspace", "check"]]]
        write = b.cli("label", "add", "--dataset", "bm", "--model", "cnn", "--class", "0", "--feature", "1",
                      "--answer", "core", "--annotator", "ro", workspace=ws, as_nobody=True)
    finally:
        if os.geteuid() != 0:
            for p in [ws, *ws.rglob("*")]:
                os.chmod(p, stat.S_IMODE(p.stat().st_mode) | 0o200)
    failed = [" ".join(p.args) for p in reads if p.code != 0]
    ok = not failed and write.code == 2 and "read-only" in write.err
    detail = (f"{len(reads)} reads ok, the write refused" if ok else
              f"reads failing: {failed}; write exit {write.code}: {write.err.strip()[-120:]}")
    return b.handled(ok, detail, *reads, write, lost=altered(before, file_state(ws)))


def _foreign_db(folder: Path, *, wal: bool) -> Path:
    con = sqlite3.connect(folder / "audit.db")
    if wal:
        con.execute("PRAGMA journal_mode = WAL")
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    con.executemany("INSERT INTO notes (text) VALUES (?)", [(f"note {i}",) for i in range(100)])
    con.commit()
    con.close()
    (folder / "README.txt").write_text("someone else's folder")
    return folder / "audit.db"


@case("database: foreign audit.db", "database")
def row_db_foreign(b: Bench) -> Result:
    folder = b.folder("theirs")
    _foreign_db(folder, wal=False)
    before = file_state(folder)
    procs = [b.cli(*args, workspace=folder) for args in (["dataset", "list"], ["demo", "--quick"],
                                                         ["workspace", "check"])]
    verdicts = [b.error(p, "not a SpurAudit workspace") for p in procs]
    bad = [v.detail for v in verdicts if not v.ok]
    return Result(not bad, "; ".join(bad) or verdicts[0].detail, procs, altered=altered(before, file_state(folder)))


@case("database: foreign WAL-mode audit.db", "database")
def row_db_foreign_wal(b: Bench) -> Result:
    folder = b.folder("theirs")
    _foreign_db(folder, wal=True)
    before = file_state(folder)
    proc = b.cli("dataset", "build", "colored-mnist", "--name", "x", workspace=folder)
    return b.error(proc, "not a SpurAudit workspace", altered=altered(before, file_state(folder)))


@case("database: workspace made before the identity is adopted", "database")
def row_db_adopt(b: Bench) -> Result:
    ws = b.workspace()
    con = sqlite3.connect(ws / "audit.db")
    con.execute("PRAGMA application_id = 0")
    con.commit()
    con.close()
    before = row_counts(ws / "audit.db")
    proc = b.cli("dataset", "list", "--json", workspace=ws)
    app_id = sqlite3.connect(f"file:{ws / 'audit.db'}?mode=ro", uri=True).execute("PRAGMA application_id").fetchone()[0]
    ok = proc.code == 0 and [d["name"] for d in _json(proc).get("datasets", [])] == ["bm"] and app_id != 0
    return b.handled(ok, f"exit {proc.code}, application_id {app_id:#x}", proc,
                     lost=lost_rows(before, row_counts(ws / "audit.db")))


@case("check: a truncated checkpoint is found", "database", quick=True)
def row_check_truncated(b: Bench) -> Result:
    ws = b.workspace()
    ckpt = ws / "models" / "cnn" / "model.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    proc = b.cli("workspace", "check", "--json", workspace=ws)
    out = _json(proc)
    found = [m["path"] for m in out.get("size_mismatch", [])]
    return b.handled(proc.code == 1 and found == ["models/cnn/model.pt"], f"exit {proc.code}, size changed: {found}",
                     proc)


# --------------------------------------------------------------------------------------------------
# rows: concurrency and kill -9 (hold; item 2 for mitigate)
# --------------------------------------------------------------------------------------------------
def _labels_csv(folder: Path, annotator: str, n: int, offset: int = 0) -> Path:
    path = folder / f"{annotator}.csv"
    path.write_text("class_index,feature,answer,annotator\n" +
                    "".join(f"{i % 10},{offset + i},core,{annotator}\n" for i in range(n)))
    return path


@case("concurrency: 2 writers x 2,000 rows + a backup", "concurrency")
def row_concurrent_writers(b: Bench) -> Result:
    ws = b.workspace()
    folder = b.folder("labels")
    start = row_counts(ws / "audit.db").get("feature_labels", 0)
    chunks = 4
    per = 2000 // chunks
    procs: list[subprocess.Popen] = []
    for writer in ("w1", "w2"):
        script = " && ".join(f"{PY} -m core label import --workspace {ws} --dataset bm --model cnn "
                             f"{_labels_csv(folder, f'{writer}_{k}', per, k * per)}" for k in range(chunks))
        procs.append(subprocess.Popen(["bash", "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)},
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    _wait_for(lambda: row_counts(ws / "audit.db").get("feature_labels", 0) > start, timeout=120, poll=0.05)
    backup = b.cli("workspace", "backup", str(folder / "bk"), "--json", workspace=ws)   # while they write
    outs = [p.communicate(timeout=CLI_TIMEOUT_S) for p in procs]
    writers = [Proc(["label", "import"], p.returncode, o, e) for p, (o, e) in zip(procs, outs)]
    got = row_counts(ws / "audit.db").get("feature_labels", 0) - start
    snap = row_counts(folder / "bk" / "audit.db").get("feature_labels", 0) - start if backup.code == 0 else -1
    ok = all(w.code == 0 for w in writers) and backup.code == 0 and got == 4000 and snap % per == 0
    return b.handled(ok, f"{got} of 4000 rows; backup snapshot holds {snap} (whole imports only)",
                     *writers, backup, lost=max(0, 4000 - got))


def _kill_when(proc: subprocess.Popen, pred: Callable[[], object], timeout: float = 180.0) -> bool:
    seen = _wait_for(lambda: pred() or proc.poll() is not None, timeout=timeout)
    alive = proc.poll() is None
    if alive:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    return bool(seen) and alive


def _running_runs(ws: Path) -> list[int]:
    try:
        con = sqlite3.connect(f"file:{ws / 'audit.db'}?mode=ro", uri=True)
        try:
            return [r[0] for r in con.execute("SELECT id FROM runs WHERE status='running'")]
        finally:
            con.close()
    except sqlite3.Error:
        return []


@case("kill -9: mitigate", "kill -9")
def row_kill_mitigate(b: Bench) -> Result:
    ws = b.workspace()
    before = row_counts(ws / "audit.db")
    proc = b.popen("mitigate", "--dataset", "bm", "--model", "cnn", "--method", "erm", "--set", "iterations=100000",
                   "--device", "cpu", workspace=ws)
    killed = _kill_when(proc, lambda: _running_runs(ws))
    listed = b.cli("run", "list", "--json", "--status", "failed", workspace=ws)
    out = _json(listed)
    failed = [r for r in out.get("runs", []) if r["id"] in out.get("reconciled", [])]
    ok = killed and len(failed) == 1 and "gone" in (failed[0].get("error") or "") and not _running_runs(ws)
    return b.handled(ok, f"killed {killed}; marked failed: {[r['id'] for r in failed]}", listed,
                     lost=lost_rows(before, row_counts(ws / "audit.db")))


@case("kill -9: compare", "kill -9")
def row_kill_compare(b: Bench) -> Result:
    ws = b.workspace()
    proc = b.popen("compare", "--dataset", "bm", "--model", "cnn", "--methods", "erm", "--set",
                   "erm.iterations=100000", "--device", "cpu", workspace=ws)
    killed = _kill_when(proc, lambda: _running_runs(ws))
    listed = b.cli("run", "list", "--json", workspace=ws)
    ok = killed and len(_json(listed).get("reconciled", [])) == 1 and not _running_runs(ws)
    return b.handled(ok, f"killed {killed}; reconciled {_json(listed).get('reconciled')}", listed)


@case("kill -9: model train", "kill -9")
def row_kill_train(b: Bench) -> Result:
    ws = b.workspace()
    before = row_counts(ws / "audit.db")
    proc = b.popen("model", "train", "big", "--dataset", "bm", "--epochs", "500", "--device", "cpu", workspace=ws)
    time.sleep(12.0)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    listed = b.cli("model", "list", "--json", workspace=ws)
    names = [m["name"] for m in _json(listed).get("models", [])]
    ok = killed and names == ["cnn"] and not (ws / "models" / "big" / "model.pt").exists()
    return b.handled(ok, f"killed {killed}; models {names}; no half-written checkpoint", listed,
                     lost=lost_rows(before, row_counts(ws / "audit.db")))


@case("kill -9: extract, then resume", "kill -9")
def row_kill_extract(b: Bench) -> Result:
    ws = b.workspace()
    proc = b.popen("extract", "--dataset", "bm", "--model", "cnn", "--batch-size", "8", "--chunk-size", "16",
                   "--device", "cpu", workspace=ws)
    feats = ws / "features" / "bm" / "cnn"
    killed = _kill_when(proc, lambda: feats.exists() and any(feats.rglob("*.npy")))
    again = b.cli("extract", "--dataset", "bm", "--model", "cnn", "--device", "cpu", "--json", workspace=ws)
    shown = b.cli("workspace", "check", "--json", workspace=ws)
    ok = again.code == 0 and _json(shown).get("ok") is True
    return b.handled(ok, f"killed {killed}; re-run exit {again.code}; check ok {_json(shown).get('ok')}", again, shown)


@case("kill -9: job", "kill -9", quick=True)
def row_kill_job(b: Bench) -> Result:
    ws = b.workspace()
    sub = b.cli("job", "submit", "sleep", "--params", '{"seconds": 120, "steps": 1200}', "--device", "cpu", "--json",
                workspace=ws)
    job = _json(sub)

    def pid() -> int | None:
        con = sqlite3.connect(f"file:{ws / 'audit.db'}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT pid, status FROM jobs WHERE id=?", (job.get("id", -1),)).fetchone()
            return row[0] if row and row[1] == "running" else None
        finally:
            con.close()

    p = _wait_for(pid, timeout=120)
    if p:
        os.killpg(int(p), signal.SIGKILL)
        time.sleep(0.5)
    listed = b.cli("job", "list", "--json", workspace=ws)
    ok = bool(p) and job.get("id") in _json(listed).get("reconciled", [])
    return b.handled(ok, f"job {job.get('id')} pid {p}; reconciled {_json(listed).get('reconciled')}", sub, listed)


# --------------------------------------------------------------------------------------------------
# rows: output and files (item 9)
# --------------------------------------------------------------------------------------------------
@case("output: label export | head", "output and files")
def row_broken_pipe(b: Bench) -> Result:
    ws = b.workspace()
    folder = b.folder("labels")
    imp = b.cli("label", "import", "--dataset", "bm", "--model", "cnn", str(_labels_csv(folder, "many", 20000)),
                workspace=ws)
    cmd = f"{PY} -m core label export --workspace {ws} --dataset bm --model cnn | head -n 1; exit ${{PIPESTATUS[0]}}"
    proc = subprocess.run(["bash", "-c", cmd], env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=CLI_TIMEOUT_S)
    pipe = Proc(["label", "export", "|", "head"], proc.returncode, proc.stdout, proc.stderr)
    ok = imp.code == 0 and proc.returncode == 141 and proc.stderr.strip() == ""
    return b.handled(ok, f"exit {proc.returncode}, stderr {proc.stderr.strip()[:80]!r}", imp, pipe)


@case("files: artifacts follow the umask", "output and files", quick=True)
def row_umask(b: Bench) -> Result:
    ws = b.workspace()   # the base was built by the CLI under umask 022
    modes = {p.relative_to(ws).as_posix(): oct(stat.S_IMODE(p.stat().st_mode))
             for p in [ws / "models" / "cnn" / "model.pt", ws / "datasets" / "bm" / "manifest.parquet"]}
    ok = all(m == "0o644" for m in modes.values())
    return b.handled(ok, ", ".join(f"{k} {v}" for k, v in modes.items()))


@case("names: hostile class/dataset/model/annotator/note names on every dashboard page", "injected names")
def row_injected_names(b: Bench) -> Result:
    """The real-browser test of tests/e2e/test_injection_e2e.py (every page, outside requests blocked and
    counted, no element built from a payload); without Chromium the row says so and fails."""
    if not shutil.which("chromium"):
        return b.handled(False, "chromium is not installed (apt-get install -y chromium): not checked")
    cmd = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/e2e/test_injection_e2e.py"]
    proc = subprocess.run(cmd, cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=CLI_TIMEOUT_S)
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    run_ = Proc(["pytest", "tests/e2e/test_injection_e2e.py"], proc.returncode, "", proc.stderr)  # pytest's own
    return b.handled(proc.returncode == 0, last[:160], run_)                                   # report is not ours


# --------------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------------
def build_base(tmp: Path) -> Path:
    """The base workspace every row copies: biased-MNIST (200/100/100), a 1-epoch small CNN, 20 labels,
    a finished run and a finished job — built with the CLI under umask 022."""
    ws = tmp / "base"
    old = os.umask(0o022)
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        steps = [["dataset", "build", "biased-mnist", "--name", "bm", "--rho", "0.95", "--n-train", "200",
                  "--n-val", "100", "--n-test", "100"],
                 ["model", "train", "cnn", "--dataset", "bm", "--epochs", "1", "--widths", "8,16,32", "--device", "cpu"]]
        for args in steps:
            proc = subprocess.run([PY, "-m", "core", *args, "--workspace", str(ws)], cwd=str(ROOT), env=env,
                                  capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                raise SystemExit(f"could not build the base workspace ({' '.join(args)}):\n{proc.stderr[-3000:]}")
        from core.workspace import Workspace

        w = Workspace(ws)
        w.add_labels([dict(dataset="bm", model="cnn", class_index=i % 10, feature=i, answer="core", annotator="base")
                      for i in range(20)])
        rid = w.add_run(method="erm", dataset="bm", model="cnn", status="done")
        w.write_json(f"runs/{rid}/metrics.json", {"accuracy": 0.5})
        w.update_run(rid, artifacts={"metrics": f"runs/{rid}/metrics.json"})
        jid = w.add_job("sleep", {})
        w.update_job(jid, status="done")
    finally:
        os.umask(old)
    _checkpointed(ws)
    for p in [ws, *ws.rglob("*")]:
        if p.is_dir():
            os.chmod(p, stat.S_IMODE(p.stat().st_mode) | 0o755)
    return ws


def run(*, quick: bool, workers: int, only: list[str] | None = None) -> dict:
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="spuraudit-faults-"))
    os.chmod(tmp, 0o755)
    try:
        base = build_base(tmp)
        setup_s = time.perf_counter() - started
        chosen = [c for c in CASES if (c.quick or not quick) and (not only or any(t in c.name for t in only))]

        def one(c: Case) -> dict:
            t0 = time.perf_counter()
            try:
                res = c.fn(Bench(tmp, base))
            except Exception as exc:  # a broken row is a failed row, not a crashed benchmark
                res = Result(False, f"row crashed: {type(exc).__name__}: {exc}")
            return {"name": c.name, "group": c.group, "expect": res.expect, "ok": res.ok, "detail": res.detail,
                    "tracebacks": res.tracebacks, "rows_lost": res.lost, "foreign_altered": res.altered,
                    "exit_codes": [p.code for p in res.procs], "seconds": round(time.perf_counter() - t0, 1)}

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            rows = list(pool.map(one, chosen))
    finally:
        for p in [tmp, *tmp.rglob("*")]:
            try:
                if p.is_dir() and not p.is_symlink():
                    os.chmod(p, stat.S_IMODE(p.stat().st_mode) | 0o700)
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {
        "benchmark": "faults", "quick": quick, "cases": len(rows),
        "clear_errors": sum(r["ok"] and r["expect"] == "error" for r in rows),
        "handled": sum(r["ok"] and r["expect"] == "handled" for r in rows),
        "tracebacks": sum(r["tracebacks"] for r in rows),
        "rows_lost": sum(r["rows_lost"] for r in rows),
        "foreign_altered": sum(r["foreign_altered"] for r in rows),
        "failed": [r["name"] for r in rows if not r["ok"]],
        "setup_s": round(setup_s, 1), "seconds": round(time.perf_counter() - started, 1), "workers": workers,
        "rows": rows,
    }
    summary["all_held"] = (not summary["failed"] and summary["tracebacks"] == 0 and summary["rows_lost"] == 0
                           and summary["foreign_altered"] == 0)
    return summary


def print_table(s: dict) -> None:
    print(f"{'row':<54} {'expect':<8} {'ok':<4} {'s':>5}  detail")
    for r in s["rows"]:
        print(f"{r['name'][:54]:<54} {r['expect']:<8} {'yes' if r['ok'] else 'NO':<4} {r['seconds']:>5.1f}  "
              f"{r['detail'][:90]}")
    print(f"\ncases tried {s['cases']}, clear errors {s['clear_errors']}, handled faults {s['handled']}, "
          f"tracebacks {s['tracebacks']} (must be 0), rows lost {s['rows_lost']} (must be 0), foreign files "
          f"altered {s['foreign_altered']} (must be 0); {s['seconds']:.0f} s")
    if s["failed"]:
        print("did not hold: " + "; ".join(s["failed"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the rows marked quick (CI: about 2 minutes on 2 cores)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                    help="rows run in parallel (default: CPU count, at most 4)")
    ap.add_argument("--only", action="append", default=None, metavar="TEXT",
                    help="run only the rows whose name contains TEXT (repeatable)")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error("--workers must be at least 1")
    s = run(quick=args.quick, workers=args.workers, only=args.only)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(s, indent=2))
    if args.json:
        print(json.dumps(s))
    else:
        print_table(s)
    return 0 if s["all_held"] else 1


if __name__ == "__main__":
    sys.exit(main())
