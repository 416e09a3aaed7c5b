"""Helpers for tests that run the CLI as a subprocess, also as a user who cannot write the workspace."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534


def cli(*args: str, workspace: Path | str | None = None, as_nobody: bool = False, timeout: float = 120,
        input: str | None = None) -> subprocess.CompletedProcess:
    """``python -m core ARGS [--workspace W]``; ``as_nobody`` runs it as uid 65534 (when we are root)."""
    cmd = [sys.executable, "-m", "core", *args]
    if workspace is not None:
        cmd += ["--workspace", str(workspace)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    if as_nobody and os.geteuid() == 0:
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
        env["HOME"] = tempfile.gettempdir()
    return subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=timeout,
                          input=input)


def no_traceback(proc: subprocess.CompletedProcess) -> bool:
    return "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


@contextmanager
def shared_tmp() -> Iterator[Path]:
    """A temporary folder other users can read (pytest's tmp_path is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="spuraudit-test-"))
    os.chmod(folder, 0o755)
    try:
        yield folder
    finally:
        _make_writable(folder)
        shutil.rmtree(folder, ignore_errors=True)


def _make_writable(folder: Path) -> None:
    for p in [folder, *folder.rglob("*")]:
        try:
            os.chmod(p, stat.S_IMODE(p.stat().st_mode) | stat.S_IWUSR | (stat.S_IXUSR if p.is_dir() else 0))
        except OSError:
            pass


@contextmanager
def read_only(folder: Path) -> Iterator[bool]:
    """Make ``folder`` read-only for the CLI runs inside the block. As root (who writes anyway) the
    runs must use ``as_nobody=True``: the folder is then simply not theirs; otherwise every file loses
    its write bits. Yields True when a read-only run is possible here."""
    if os.geteuid() == 0:
        ok = shutil.which("setpriv") is not None
        yield ok
        return
    for p in [folder, *folder.rglob("*")]:
        os.chmod(p, stat.S_IMODE(p.stat().st_mode) & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield True
    finally:
        _make_writable(folder)


def tree_state(folder: Path) -> dict[str, tuple[int, bytes]]:
    """{relative path: (size, bytes)} of every file under ``folder`` (to prove nothing changed)."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}
