"""The README quick start, as a newcomer runs it: `python -m core demo --quick` in a fresh workspace,
then again (idempotent: everything reused), then the CLI can read what it built."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _core(args, ws):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "core", *args, "--workspace", str(ws), "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_readme_quick_start(tmp_path):
    ws = tmp_path / "ws"
    first = _core(["demo", "--quick"], ws)
    assert {s["status"] for s in first["steps"]} == {"done"}
    assert first["report"] and Path(first["report"]).is_file()
    assert "<html" in Path(first["report"]).read_text()[:500].lower()
    methods = {r["method"] for r in first["runs"] if r["status"] == "done"}
    assert {"head-tuning", "error-tuning", "compare"} <= methods
    audit = first["textures_audit"]
    assert audit["n_core_pairs"] + audit["n_spurious_pairs"] > 0

    again = _core(["demo", "--quick"], ws)
    assert {s["status"] for s in again["steps"]} == {"reused"}

    datasets = _core(["dataset", "list"], ws)
    assert {d["name"] for d in datasets["datasets"]} >= {"textures", "cmnist-1pct"}


def test_readme_python_example_runs_as_written(tmp_path):
    """The README's "Use it from Python" block, executed in a fresh folder."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- python-api-example -->", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert len(block.strip().splitlines()) <= 12
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    first, second = proc.stdout.strip().splitlines()[-2:]
    assert first.startswith("spurious gap +") and (tmp_path / "my-workspace" / "reports" / "tex__cnn.html").is_file()
    assert "'before'" in second and "'after'" in second
