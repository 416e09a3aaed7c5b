"""The GPU check (issue 14): one command that exercises SpurAudit's CUDA paths when a GPU is lent.

    python benchmarks/gpu_check.py [--json] [--quick] [--device cuda:0] [--n 4000] [--budget-s 540]
                                   [--out benchmarks/results/gpu_check.json]

Without CUDA it refuses politely (a clear message, exit code 3, and with --json one object
``{"refused": true, "reason": ...}``). With CUDA, in under 10 minutes (sections are skipped, and say
so, when ``--budget-s`` runs out):

1. extraction throughput of torchvision ResNet-50 (random init: no weights downloadable; speed does not
   depend on them) at 224 px over a generated ImageFolder of JPEGs (256–500 px): the photo pipeline
   (decode workers on, pinned memory, channels_last) with AMP (bf16/fp16) and with fp32, and a bare
   ``model(x)`` loop on pre-decoded tensors on the GPU (AMP) — images/s and the ratios;
2. DCWP and FFW steps per second on the demo data (Colored MNIST), mining/pretraining shortened;
3. head tuning on cached features (epochs per second);
4. a job launched through the job queue with ``CUDA_VISIBLE_DEVICES`` (job kind ``device-probe``): what the
   job process saw;
5. peak GPU memory per section (``torch.cuda.max_memory_allocated``).

Results go to ``benchmarks/results/gpu_check.json`` with the machine's description. ``--allow-cpu`` runs
the same code on CPU with tiny sizes (to test this script where there is no GPU; such results are marked
``cpu_dry_run`` and never written to the results file unless ``--out`` is given).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._results import write_result  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "gpu_check.json"
REFUSED_EXIT = 3
#: per mode: demo images, DCWP iterations (each stage) and batch, FFW epochs x steps, head-tuning epochs, ERM steps
SIZES = {"full": dict(demo=4000, dcwp_iters=300, dcwp_batch=256, ffw_epochs=10, ffw_steps=50, head_epochs=20, erm=300),
         "quick": dict(demo=600, dcwp_iters=50, dcwp_batch=256, ffw_epochs=3, ffw_steps=50, head_epochs=5, erm=50),
         "cpu": dict(demo=200, dcwp_iters=4, dcwp_batch=32, ffw_epochs=1, ffw_steps=4, head_epochs=2, erm=4)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (about a minute on a GPU)")
    ap.add_argument("--device", default="cuda:0", help="the GPU to check: cuda or cuda:N (default cuda:0)")
    ap.add_argument("--n", type=int, default=4000, help="JPEGs for the extraction section (>= 64)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=None, help="decode workers (default: from the cores)")
    ap.add_argument("--budget-s", type=float, default=540.0, help="stop starting sections after this (< 600)")
    ap.add_argument("--out", default=None, help=f"results JSON (default {RESULTS.relative_to(REPO)} on a GPU)")
    ap.add_argument("--allow-cpu", action="store_true", help="dry run on CPU with tiny sizes (tests the script)")
    args = ap.parse_args(argv)
    dev = str(args.device).strip().lower()
    if not (dev == "cuda" or (dev.startswith("cuda:") and dev[5:].isdigit())) and not (args.allow_cpu and dev == "cpu"):
        ap.error(f"--device must be cuda or cuda:N (got {args.device!r})")
    if args.n < 64:
        ap.error(f"--n must be >= 64 (got {args.n})")
    if args.batch_size < 1:
        ap.error(f"--batch-size must be >= 1 (got {args.batch_size})")
    if args.workers is not None and args.workers < 0:
        ap.error(f"--workers must be >= 0 (got {args.workers})")
    if not 10 <= args.budget_s <= 600:
        ap.error(f"--budget-s must be between 10 and 600 seconds (got {args.budget_s})")
    return args


def refuse(args: argparse.Namespace, reason: str) -> int:
    msg = (f"gpu_check: {reason}. This check needs a CUDA GPU; nothing was run. Run it on a machine with one "
           "(python benchmarks/gpu_check.py --json), or use --allow-cpu for a dry run of the script on CPU.")
    print(msg, file=sys.stderr)
    if args.json:
        print(json.dumps({"refused": True, "reason": reason, "cuda_available": torch.cuda.is_available()}))
    return REFUSED_EXIT


class Sections:
    """Runs named sections within the time budget, recording results, errors and peak GPU memory."""

    def __init__(self, dev: torch.device, budget_s: float) -> None:
        self.dev, self.budget_s, self.t0 = dev, budget_s, time.perf_counter()
        self.out: dict[str, dict] = {}

    def run(self, name: str, fn) -> None:
        left = self.budget_s - (time.perf_counter() - self.t0)
        if left <= 0:
            self.out[name] = {"skipped": f"time budget of {self.budget_s:.0f} s used up"}
            return
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
            torch.cuda.reset_peak_memory_stats(self.dev)
        t = time.perf_counter()
        try:
            res = fn()
        except Exception as exc:  # noqa: BLE001 - a failing section is reported, the others still run
            res = {"error": f"{type(exc).__name__}: {exc}"}
        res["wall_s"] = round(time.perf_counter() - t, 2)
        if self.dev.type == "cuda":
            res["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated(self.dev) / 2 ** 20, 1)
        self.out[name] = res


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def extraction(dev: torch.device, *, n: int, batch_size: int, workers: int, tmp: Path) -> dict:
    from core.data.synthetic.photo_folder import write_photo_folder
    from core.features.extract import extract_features
    from core.features.pipeline import PhotoDataset, PipelineConfig, autocast, to_device
    from core.models.registry import build_model

    folder = tmp / "photos"
    t = time.perf_counter()
    write_photo_folder(folder, n_images=n, n_classes=100 if n >= 200 else 4, seed=0)
    gen_s = time.perf_counter() - t
    paths = sorted(folder.rglob("*.JPEG"))
    labels = np.zeros(len(paths), dtype=np.int64)
    torch.manual_seed(0)
    model = build_model("resnet50", num_classes=1000).eval().to(dev)
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
    ds = PhotoDataset(paths, labels, image_size=224)
    out: dict = {"model": "torchvision resnet50, random init", "images": len(paths), "jpeg_sides_px": [256, 500],
                 "batch_size": batch_size, "workers": workers, "generate_s": round(gen_s, 1)}
    amp_auto = "bf16" if dev.type == "cuda" and torch.cuda.is_bf16_supported() else "fp16"
    for amp in (amp_auto, "off"):
        extract_features(model, torch.utils.data.Subset(ds, range(min(len(ds), 2 * batch_size, max(1, len(ds) // 2)))),
                         out_dir=tmp / f"warm_{amp}", batch_size=batch_size, device=dev, num_workers=workers,
                         amp=amp)                                    # warm-up: cudnn autotune, worker start
        t = time.perf_counter()
        extract_features(model, ds, out_dir=tmp / f"store_{amp}", batch_size=batch_size, device=dev,
                         num_workers=workers, chunk_size=batch_size * 16, amp=amp)
        _sync(dev)
        out[f"pipeline_{'fp32' if amp == 'off' else amp}_images_per_s"] = round(len(ds) / (time.perf_counter() - t), 1)
    # bare forward on pre-decoded tensors already on the device (AMP as above)
    k = min(len(ds), 8 * batch_size)
    x = torch.stack([ds[i][0] for i in range(k)])                      # uint8 (k, 3, 224, 224)
    x = to_device(x, dev, PipelineConfig())
    with torch.inference_mode():
        for amp in (amp_auto, "off"):
            with autocast(dev, amp):
                model(x[:batch_size])
            _sync(dev)
            reps = max(1, len(ds) // k)
            t = time.perf_counter()
            for _ in range(reps):
                for s in range(0, k, batch_size):
                    with autocast(dev, amp):
                        model.features(x[s:s + batch_size])
            _sync(dev)
            out[f"bare_{'fp32' if amp == 'off' else amp}_images_per_s"] = round(reps * k / (time.perf_counter() - t), 1)
    out["ratio_bare_over_pipeline_amp"] = round(out[f"bare_{amp_auto}_images_per_s"] /
                                                out[f"pipeline_{amp_auto}_images_per_s"], 3)
    out["amp_speedup_pipeline"] = round(out[f"pipeline_{amp_auto}_images_per_s"] / out["pipeline_fp32_images_per_s"], 3)
    out["projection_1_28M_minutes_pipeline_amp"] = round(1_281_167 / out[f"pipeline_{amp_auto}_images_per_s"] / 60, 1)
    out["amp"] = amp_auto
    return out


def _demo_data(tmp: Path, z: dict):
    from core.data import build_dataset, load_manifest
    from core.mitigate.data import MitigationData
    from core.workspace import Workspace

    ws = Workspace(tmp / "demo_ws")
    n = z["demo"]
    build_dataset(ws, "colored-mnist", "cmnist", n_train=n, n_val=n // 4, n_test=n // 4, conflict=0.01)
    return MitigationData.from_manifest(load_manifest(ws, "cmnist"))


def _erm(data, dev: torch.device, iters: int):
    from core.models.registry import build_model
    from core.models.train import TrainConfig, train_model

    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=data.num_classes)
    tr = data.split("train")
    train_model(model, torch.utils.data.TensorDataset(tr.x, tr.y),
                config=TrainConfig(epochs=1, max_iters=iters, batch_size=256), device=dev)
    return model


def dcwp(data, dev: torch.device, z: dict) -> dict:
    from core.mitigate.dcwp import DCWPConfig, run_dcwp

    it, bs = z["dcwp_iters"], z["dcwp_batch"]
    cfg = DCWPConfig(prune_iterations=it, finetune_iterations=it, pretrain_iterations=it, eval_every=it,
                     batch_size=bs, mining={"iterations": it, "batch_size": bs})
    res = run_dcwp(data, config=cfg, seed=0, device=dev)
    pr, ft = res.metrics.get("prune", {}), res.metrics.get("finetune", {})
    return {"prune_steps_per_s": round(1 / pr["s_per_iter"], 1) if pr.get("s_per_iter") else None,
            "finetune_steps_per_s": round(1 / ft["s_per_iter"], 1) if ft.get("s_per_iter") else None,
            "iterations": it, "batch_size": cfg.batch_size}


def ffw(data, dev: torch.device, z: dict) -> dict:
    from core.mitigate.ffw import run_ffw

    base = _erm(data, dev, z["erm"])
    cfg = {"max_epochs": z["ffw_epochs"], "min_epochs": 1, "steps_per_epoch": z["ffw_steps"]}
    t = time.perf_counter()
    res = run_ffw(data, base_model=base, config=cfg, seed=0, device=dev)
    wall = time.perf_counter() - t
    epochs = len(res.history) if res.history else cfg["max_epochs"]
    return {"gate_steps_per_s_incl_eval": round(epochs * cfg["steps_per_epoch"] / wall, 1), "epochs": epochs,
            "steps_per_epoch": cfg["steps_per_epoch"]}


def head_tuning(data, dev: torch.device, z: dict) -> dict:
    from core.mitigate.head_tuning import HeadTuningConfig, ranking_from_scores, tune_head
    from core.mitigate.metrics import model_outputs

    model = _erm(data, dev, z["erm"]).to(dev).eval()
    tr, va = data.split("train"), data.split("val")
    _, f_tr = model_outputs(model, tr.x, device=dev)
    _, f_va = model_outputs(model, va.x, device=dev)
    rank = ranking_from_scores(np.random.default_rng(0).random(len(va.y)), va.y.numpy(), data.num_classes)
    epochs = z["head_epochs"]
    cfg = HeadTuningConfig(epochs=epochs, gap_threshold=None, lr=1e-3, momentum=0.9, batch_size=128)
    t = time.perf_counter()
    tune_head(model.head, torch.as_tensor(f_tr), tr.y, val_features=torch.as_tensor(f_va), val_labels=va.y,
              val_ranking=rank, config=cfg, seed=0, device=dev)
    _sync(dev)
    wall = time.perf_counter() - t
    return {"epochs_per_s": round(epochs / wall, 2), "rows": int(len(tr.y)), "epochs": epochs}


def queued_job(dev: torch.device, tmp: Path) -> dict:
    from core import jobs
    from core.workspace import Workspace

    ws = Workspace(tmp / "job_ws")
    device = str(dev) if dev.type == "cuda" and dev.index is not None else ("cuda:0" if dev.type == "cuda" else "cpu")
    job_id = jobs.submit(ws, "device-probe", {}, device=device)
    job = jobs.wait(ws, job_id, timeout_s=180)
    return {"submitted_device": device, "status": job.status, "result": job.result, "job_error": job.error,
            **({"error": f"job {job.status}: {job.error}"} if job.status != "done" else {})}


def machine(dev: torch.device) -> dict:
    out = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
           "cuda": torch.version.cuda, "cpus": os.cpu_count(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        out.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 1e9, 1), capability=f"{p.major}.{p.minor}",
                   gpu_count=torch.cuda.device_count(), bf16=torch.cuda.is_bf16_supported())
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cpu_dry = False
    if not torch.cuda.is_available():
        if not args.allow_cpu:
            return refuse(args, "torch sees no CUDA device (torch.cuda.is_available() is False)")
        cpu_dry, dev = True, torch.device("cpu")
    else:
        dev = torch.device(args.device if args.device != "cpu" else "cuda:0")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            return refuse(args, f"{args.device} asked for, but torch sees {torch.cuda.device_count()} GPU(s)")
    from core.features.pipeline import default_workers

    quick = args.quick or cpu_dry
    z = SIZES["cpu" if cpu_dry else "quick" if args.quick else "full"]
    n = 16 if cpu_dry else (512 if args.quick else args.n)
    bs = 8 if cpu_dry else args.batch_size
    workers = default_workers() if args.workers is None else args.workers
    started = time.perf_counter()
    sec = Sections(dev, args.budget_s)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        sec.run("queued_job", lambda: queued_job(dev, tmp))
        sec.run("extraction", lambda: extraction(dev, n=n, batch_size=bs, workers=workers, tmp=tmp))
        data = None
        try:
            data = _demo_data(tmp, z)
        except Exception as exc:  # noqa: BLE001 - reported; the sections below then say why they did not run
            sec.out["demo_data"] = {"error": f"{type(exc).__name__}: {exc}"}
        if data is not None:
            sec.run("dcwp", lambda: dcwp(data, dev, z))
            sec.run("ffw", lambda: ffw(data, dev, z))
            sec.run("head_tuning", lambda: head_tuning(data, dev, z))
    result = {"benchmark": "gpu_check", "cpu_dry_run": cpu_dry, "quick": quick, "device": str(dev),
              "machine": machine(dev), "sections": sec.out, "wall_s": round(time.perf_counter() - started, 1),
              "peak_gpu_memory_mb": max((s.get("peak_gpu_memory_mb") or 0 for s in sec.out.values()), default=None)
              if dev.type == "cuda" else None,
              "errors": [k for k, v in sec.out.items() if v.get("error")]}
    if write_result(result, args.out or (None if cpu_dry else str(RESULTS)), as_json=args.json):
        print(f"gpu_check on {dev} ({result['machine'].get('gpu', 'CPU dry run')}), {result['wall_s']} s")
        for k, v in sec.out.items():
            print(f"  {k}: {json.dumps(v)}")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
