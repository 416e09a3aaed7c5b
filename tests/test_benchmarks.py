"""Every benchmark runs with --quick and prints one JSON object (so none of them can rot).

The accuracy and speed targets live in the benchmarks' full runs, not here: this only checks that each
script still runs end to end on CPU and reports its figures.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))


def test_there_are_benchmarks():
    assert {"extract.py", "train_demo.py", "rank_scale.py", "audit_quality.py", "debias_cmnist.py",
            "debias_ffw.py", "head_tuning_speed.py"} <= set(BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_quick_json(name, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPURAUDIT_WORKSPACE": str(tmp_path / "ws")}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), "--quick", "--json"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    lines = [line for line in proc.stdout.strip().splitlines() if line.strip()]
    assert lines, f"{name} printed nothing"
    figures = json.loads(lines[-1])
    assert isinstance(figures, dict) and figures, f"{name} printed no figures"
