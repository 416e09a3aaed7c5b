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
    if name == "gpu_check.py" and proc.returncode == 3:   # no CUDA here: it must refuse, in JSON, and say why
        import torch

        assert not torch.cuda.is_available(), proc.stderr[-2000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1])["refused"] is True
        pytest.skip("gpu_check needs CUDA: refused as designed (its CPU dry run is in tests/test_gpu_check.py)")
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    lines = [line for line in proc.stdout.strip().splitlines() if line.strip()]
    assert lines, f"{name} printed nothing"
    figures = json.loads(lines[-1])
    assert isinstance(figures, dict) and figures, f"{name} printed no figures"


def test_debias_ffw_merge_averages_runs_and_counts_targets(tmp_path, capsys):
    """--merge: mean ± std per (ρ, model) over saved reports; a run meets both targets only with task
    above its own vanilla, decodability ≥ 50 points lower, and a model that is not collapsed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("debias_ffw_bench", ROOT / "benchmarks" / "debias_ffw.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def report(task: float, decod: float, collapsed: bool = False) -> dict:
        vanilla = {"unbiased_accuracy": 0.5, "bias_decodability": 0.99}
        rank = {"unbiased_accuracy": task, "bias_decodability": decod, "collapsed": collapsed, "kept_neurons": 9}
        sweep = [{"variant": "rank-refit", "bias_budget": 0.4, "unbiased_accuracy": task, "bias_decodability": 0.2}]
        return {"results": [{"rho": 0.99, "vanilla": vanilla, "ffw_rank-refit": rank, "bias_budget_sweep": sweep}]}

    files = []
    for i, (task, decod, collapsed) in enumerate([(0.6, 0.45, False), (0.7, 0.55, False), (0.6, 0.2, True)]):
        files.append(tmp_path / f"seed{i}.json")
        files[-1].write_text(json.dumps(report(task, decod, collapsed)))
    assert bench.main(["--merge", ",".join(map(str, files)), "--json", "--out", str(tmp_path / "m.json")]) == 0
    summary = {row["model"]: row for row in json.loads(capsys.readouterr().out)["summary"]}
    rank = summary["ffw_rank-refit"]
    assert rank["runs"] == 3 and rank["meets_both"] == 1          # 54-point drop; 44 misses; collapsed misses
    assert rank["decodability_drop_points"]["values"] == [54.0, 44.0, 79.0]
    assert abs(rank["unbiased_accuracy"]["mean"] - 63.333) < 1e-2
    assert summary["rank-refit bias_budget=0.4"]["meets_both"] == 3
    assert summary["vanilla"]["meets_both"] == 0
    assert json.loads((tmp_path / "m.json").read_text())["summary"]
