"""benchmarks/gpu_check.py on a machine without CUDA: a polite refusal (message, exit code 3, JSON with
--json), argument checks, and — marked slow — a dry run of every section on CPU with tiny sizes (the
script's CUDA path cannot run here; the dry run executes the same code with device "cpu"). With a GPU,
the gpu-marked test runs the real --quick check."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: nothing to refuse")
def test_refuses_politely_without_cuda(tmp_path: Path) -> None:
    proc = _run("--json", "--out", str(tmp_path / "r.json"))
    assert proc.returncode == 3
    assert "needs a CUDA GPU; nothing was run" in proc.stderr and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "refused": True, "reason": "torch sees no CUDA device (torch.cuda.is_available() is False)",
        "cuda_available": False}
    assert not (tmp_path / "r.json").exists()                       # nothing written
    text = _run()
    assert text.returncode == 3 and text.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["--device", "cpu"], "--device must be cuda or cuda:N"),
    (["--device", "tpu:0"], "--device must be cuda or cuda:N"),
    (["--n", "10"], "--n must be >= 64"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--workers", "-1"], "--workers must be >= 0"),
    (["--budget-s", "900"], "--budget-s must be between 10 and 600"),
])
def test_argument_checks(args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    mod = _module()
    with pytest.raises(SystemExit) as exc:
        mod.parse_args(args)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_good_arguments_parse() -> None:
    a = _module().parse_args(["--device", "cuda:1", "--n", "64", "--budget-s", "60", "--json"])
    assert (a.device, a.n, a.budget_s, a.json) == ("cuda:1", 64, 60.0, True)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU test below covers this")
def test_dry_run_on_cpu_runs_every_section(tmp_path: Path) -> None:
    out = tmp_path / "dry.json"
    proc = _run("--allow-cpu", "--device", "cpu", "--json", "--out", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["cpu_dry_run"] is True and res["errors"] == []
    assert set(res["sections"]) == {"queued_job", "extraction", "dcwp", "ffw", "head_tuning"}
    job = res["sections"]["queued_job"]
    assert job["status"] == "done" and job["result"]["cuda_visible_devices"] == ""   # pinned to no GPU
    ext = res["sections"]["extraction"]
    assert ext["pipeline_fp32_images_per_s"] > 0 and ext["bare_fp32_images_per_s"] > 0
    assert res["sections"]["dcwp"]["prune_steps_per_s"] > 0 and res["sections"]["head_tuning"]["epochs_per_s"] > 0
    assert json.loads(out.read_text())["benchmark"] == "gpu_check"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_quick_check_on_the_gpu(tmp_path: Path) -> None:
    proc = _run("--quick", "--json", "--out", str(tmp_path / "g.json"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["errors"] == [] and res["sections"]["queued_job"]["result"]["cuda_visible_devices"] == "0"
