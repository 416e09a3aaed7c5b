"""The dashboard binds to 127.0.0.1 by default (`.streamlit/config.toml`, issue 11): a server started
from the repository root *without* ``--server.address`` listens on the loopback address only (read from
the kernel's socket table) and prints only the local URL."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _listening(port: int) -> list[str]:
    """Local addresses of the LISTEN sockets on ``port`` (IPv4 and IPv6), from /proc/net/tcp{,6}."""
    found = []
    for name, width in (("tcp", 8), ("tcp6", 32)):
        table = Path("/proc/net") / name
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            parts = line.split()
            addr, hexport = parts[1].split(":")
            if parts[3] != "0A" or int(hexport, 16) != port:     # 0A = LISTEN
                continue
            raw = bytes.fromhex(addr)
            if width == 8:
                found.append(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                found.append(socket.inet_ntop(socket.AF_INET6, words))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the Linux socket table")
def test_default_config_binds_loopback_only(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "streamlit.log"
    env = {**os.environ, "SPURAUDIT_WORKSPACE": str(tmp_path / "ws"), "PYTHONPATH": str(REPO)}
    env.pop("STREAMLIT_SERVER_ADDRESS", None)
    cmd = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless=true",
           f"--server.port={port}", "--server.fileWatcherType=none"]           # no --server.address
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.read().decode().strip() == "ok":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        addresses = _listening(port)
        assert addresses and set(addresses) <= {"127.0.0.1", "::ffff:127.0.0.1"}, addresses
        time.sleep(0.5)
        text = log.read_text()
        assert f"http://127.0.0.1:{port}" in text and "Network URL" not in text and "External URL" not in text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
