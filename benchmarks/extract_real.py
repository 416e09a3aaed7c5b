"""Extraction at real shapes (issue 14): torchvision ResNet-50 at 224 px over a generated ImageFolder of
JPEGs at photo sizes, through the photo pipeline and the resumable store, against a bare ``model(x)``
loop on pre-decoded tensors in the same run.

The ResNet-50 is **random init** (no weights can be downloaded here): throughput does not depend on the
weight values. The JPEGs are generated (`core.data.synthetic.photo_folder`: crops of scikit-image's real
photos, 256–500 px per side by default), so decode cost is that of real JPEGs of those sizes.

Measured, in one run:
1. bare forward: pre-decoded (N, 3, 224, 224) float tensors, ``for batch: model(x)`` (inference mode,
   channels_last + AMP on CUDA) -> images/s;
2. pipeline: `core.features.extract.extract_features` over `PhotoDataset` (decode + resize 256 + crop 224 in
   ``--workers`` DataLoader workers, uint8 batches, pinned + non-blocking on CUDA, features f16 + logits
   written with chunked commits) -> images/s and the ratio pipeline_time / bare_time (target <= 1.15
   when decoding is not the bottleneck);
3. where the time goes: decode (one process, ms per image, and the worker pool's images/s without a
   model), transfer (host -> device copy of a pinned batch; 0 on CPU), forward (1.);
4. peak RSS of the extracting process for two N (child processes; flat = grows < 64 MB);
5. the projection to 1.28 M images: on this machine (measured pipeline rate) and on one GPU, where the
   forward rate is not measurable here — the projection takes ``--gpu-forward-ips`` (measured by
   `benchmarks/gpu_check.py` when a GPU is lent) and the decode rate of ``--gpu-host-workers`` workers
   from the per-image decode cost measured here. Stated as a projection.

Usage: ``python benchmarks/extract_real.py [--quick] [--json] [--n 2000] [--classes 100] [--workers K]
[--device auto] [--reps 2] [--mem-sizes A,B] [--out benchmarks/results/extract_real.json]`` (``--quick``:
16 images, < 60 s; results are written only by full runs or with ``--out``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._results import write_result  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.data.synthetic.photo_folder import write_photo_folder  # noqa: E402
from core.device import resolve_device  # noqa: E402
from core.features.extract import extract_features  # noqa: E402
from core.features.pipeline import (PhotoDataset, PipelineConfig, autocast, decode_resize, default_workers,  # noqa: E402
                                    photo_loader, to_device)
from core.models.registry import build_model  # noqa: E402

IMAGENET_TRAIN = 1_281_167
RESULTS = REPO / "benchmarks" / "results" / "extract_real.json"


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _model(classes: int, dev: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("resnet50", num_classes=classes)      # torchvision ResNet-50, random init
    model.eval().to(dev)
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


def _files(root: Path) -> tuple[list[Path], np.ndarray]:
    paths = sorted(root.rglob("*.JPEG"))
    classes = sorted({p.parent.name for p in paths})
    return paths, np.array([classes.index(p.parent.name) for p in paths], dtype=np.int64)


def bare_forward(model, x_all: torch.Tensor, *, batch_size: int, dev: torch.device, amp: str) -> float:
    """Seconds for ``model(x)`` over pre-decoded float batches already in memory (on the device when it fits)."""
    cfg = PipelineConfig(amp=amp)
    with torch.inference_mode():
        xb = to_device(x_all[:batch_size], dev, cfg)
        with autocast(dev, amp):
            model(xb)                                             # warm-up (allocator, cudnn autotune)
        _sync(dev)
        t0 = time.perf_counter()
        for s in range(0, len(x_all), batch_size):
            xb = x_all[s:s + batch_size]
            xb = xb if xb.device == dev else to_device(xb, dev, cfg)
            with autocast(dev, amp):
                model(xb)
        _sync(dev)
    return time.perf_counter() - t0


def decode_costs(paths: list[Path], *, workers: int, batch_size: int, sample: int) -> dict:
    """Single-process ms per image (decode + resize + crop) and the worker pool's images/s (no model)."""
    t0 = time.perf_counter()
    for p in paths[:sample]:
        decode_resize(p, image_size=224, resize_size=256)
    ms = (time.perf_counter() - t0) / max(1, min(sample, len(paths))) * 1000
    ds = PhotoDataset(paths, np.zeros(len(paths), np.int64), image_size=224)
    t0 = time.perf_counter()
    for _ in photo_loader(ds, PipelineConfig(batch_size=batch_size, num_workers=workers), torch.device("cpu")):
        pass
    pool = len(paths) / (time.perf_counter() - t0)
    return {"decode_ms_per_image_one_process": ms, "decode_pool_images_per_s": pool, "workers": workers}


def transfer_cost(dev: torch.device, batch_size: int) -> float | None:
    """ms per image of a pinned uint8 (B, 3, 224, 224) host -> device copy; None on CPU."""
    if dev.type != "cuda":
        return None
    x = torch.zeros(batch_size, 3, 224, 224, dtype=torch.uint8).pin_memory()
    x.to(dev, non_blocking=True)
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(10):
        x.to(dev, non_blocking=True)
    _sync(dev)
    return (time.perf_counter() - t0) / (10 * batch_size) * 1000


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and its reaped children (the decode workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def pipeline(model, paths, labels, *, out: Path, batch_size: int, workers: int, dev: torch.device, amp: str) -> float:
    ds = PhotoDataset(paths, labels, image_size=224)
    t0 = time.perf_counter()
    extract_features(model, ds, out_dir=out, batch_size=batch_size, device=dev, num_workers=workers,
                     chunk_size=batch_size * 8, amp=amp)
    _sync(dev)
    return time.perf_counter() - t0


def child(args: argparse.Namespace) -> None:
    """Extract the first ``--child-n`` images in this process; print the peak RSS (MB) of this process."""
    dev = resolve_device(args.device)
    paths, labels = _files(Path(args.folder))
    paths, labels = paths[:args.child_n], labels[:args.child_n]
    model = _model(args.classes, dev)
    try:
        Path("/proc/self/clear_refs").write_text("5")                 # reset VmHWM after the model is built
        reset = True
    except OSError:
        reset = False
    with tempfile.TemporaryDirectory() as tmp:
        pipeline(model, paths, labels, out=Path(tmp), batch_size=args.batch_size, workers=args.workers, dev=dev,
                 amp=args.amp)
    hwm = None
    if reset:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    print(json.dumps({"n": args.child_n, "peak_rss_mb": hwm if hwm is not None else
                      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "reset": reset}))


def memory(folder: Path, sizes: list[int], args: argparse.Namespace) -> list[dict]:
    rows = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--child", "--folder", str(folder), "--child-n", str(n), "--classes",
               str(args.classes), "--workers", str(args.workers), "--batch-size", str(args.batch_size),
               "--device", args.device, "--amp", args.amp]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ,
                                                                                  "PYTHONPATH": str(REPO)})
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="16 images of 4 classes, batch 8, one repeat (< 60 s)")
    ap.add_argument("--reps", type=int, default=2, help="alternating bare/pipeline repeats (fastest kept)")
    ap.add_argument("--mem-sizes", default=None, help="two N for the peak-RSS check (default N/8,N/2)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--min-side", type=int, default=256)
    ap.add_argument("--max-side", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None, help="decode workers (default: from the cores)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", default="auto")
    ap.add_argument("--gpu-forward-ips", type=float, default=None,
                    help="ResNet-50 224 px forward images/s on the target GPU (from gpu_check) for the projection")
    ap.add_argument("--gpu-host-workers", type=int, default=15, help="decode workers on the GPU host (projection)")
    ap.add_argument("--out", default=None, help=f"results JSON (full runs default to {RESULTS.relative_to(REPO)})")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-n", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.workers is None:
        args.workers = default_workers()
    if args.child:
        child(args)
        return 0
    if args.quick:
        args.n, args.classes, args.batch_size, args.reps = 16, 4, 8, 1
    dev = resolve_device(args.device)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        t0 = time.perf_counter()
        gen = write_photo_folder(folder, n_images=args.n, n_classes=args.classes, min_side=args.min_side,
                                 max_side=args.max_side, seed=0)
        gen_s = time.perf_counter() - t0
        paths, labels = _files(folder)
        model = _model(args.classes, dev)
        # 3. decode costs (no model)
        dec = decode_costs(paths, workers=args.workers, batch_size=args.batch_size, sample=min(64, len(paths)))
        # pre-decoded tensors for the bare loop (decoded once, outside the timing)
        ds = PhotoDataset(paths, labels, image_size=224)
        x_all = torch.stack([ds[i][0] for i in range(len(ds))]).float().div_(255.0)      # (N, 3, 224, 224)
        if dev.type == "cuda" and x_all.numel() * 4 < 0.5 * torch.cuda.mem_get_info(dev)[0]:
            x_all = x_all.to(dev).contiguous(memory_format=torch.channels_last)
        # 1. + 2.: alternate bare / pipeline, fastest of 2 each (least disturbed by other load)
        bare_s, pipe_s, bare_cpu, pipe_cpu = [], [], [], []
        for rep in range(max(1, args.reps)):
            c = cpu_seconds()
            bare_s.append(bare_forward(model, x_all, batch_size=args.batch_size, dev=dev, amp=args.amp))
            bare_cpu.append(cpu_seconds() - c)
            c = cpu_seconds()
            pipe_s.append(pipeline(model, paths, labels, out=Path(tmp) / f"store{rep}", batch_size=args.batch_size,
                                   workers=args.workers, dev=dev, amp=args.amp))
            pipe_cpu.append(cpu_seconds() - c)   # includes the decode workers (reaped at the loader's end)
        del x_all
        bare, pipe = min(bare_s), min(pipe_s)
        n = len(paths)
        transfer_ms = transfer_cost(dev, args.batch_size)
        # 4. peak RSS for two N
        if args.mem_sizes:
            sizes = [int(v) for v in args.mem_sizes.split(",")]
        else:   # both several batches, so the batch's activations are the same in both
            sizes = [8, 16] if args.quick else [max(2 * args.batch_size, n // 8), max(4 * args.batch_size, n // 2)]
        mem = memory(folder, sizes, args)
    forward_ms = bare / n * 1000
    pipe_ips, bare_ips = n / pipe, n / bare
    decode_bound_host = args.gpu_host_workers / (dec["decode_ms_per_image_one_process"] / 1000)   # images/s
    gpu_rate = min(decode_bound_host, args.gpu_forward_ips) if args.gpu_forward_ips else None
    result = {
        "benchmark": "extract_real", "quick": args.quick, "device": str(dev),
        "machine": {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "platform": platform.platform(),
                    "torch": torch.__version__, "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None},
        "model": "torchvision resnet50, RANDOM INIT (no weights downloadable here; speed does not depend on them)",
        "data": {"images": n, "classes": args.classes, "sides_px": [args.min_side, args.max_side],
                 "jpeg_bytes": gen["bytes"], "generate_s": round(gen_s, 2), "input": "224 px (resize 256, centre crop)"},
        "batch_size": args.batch_size, "workers": args.workers, "amp": args.amp,
        "bare_forward_images_per_s": round(bare_ips, 2), "pipeline_images_per_s": round(pipe_ips, 2),
        "ratio_pipeline_over_bare": round(pipe / bare, 3), "ratio_target": 1.15,
        "ratio_met": bool(pipe / bare <= 1.15),
        "runs_s": {"bare": [round(v, 2) for v in bare_s], "pipeline": [round(v, 2) for v in pipe_s]},
        "cpu_s": {"bare": [round(v, 2) for v in bare_cpu], "pipeline_incl_workers": [round(v, 2) for v in pipe_cpu]},
        "ratio_cpu_time_pipeline_over_bare": round(min(pipe_cpu) / max(min(bare_cpu), 1e-9), 3),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "time_split_ms_per_image": {"decode_one_process": round(dec["decode_ms_per_image_one_process"], 2),
                                    "decode_pool_images_per_s": round(dec["decode_pool_images_per_s"], 1),
                                    "transfer": None if transfer_ms is None else round(transfer_ms, 4),
                                    "forward": round(forward_ms, 2)},
        "peak_rss": mem,
        "peak_rss_growth_mb": round(mem[-1]["peak_rss_mb"] - mem[0]["peak_rss_mb"], 1),
        "peak_rss_flat": bool(mem[-1]["peak_rss_mb"] - mem[0]["peak_rss_mb"] < 64),
        "projection_1_28M_images": {
            "note": "PROJECTION from the per-image costs measured in this run, not a measurement",
            "this_machine_hours": round(IMAGENET_TRAIN / pipe_ips / 3600, 2),
            "gpu_host_decode_bound_images_per_s": round(decode_bound_host, 1),
            "gpu_host_workers": args.gpu_host_workers,
            "gpu_forward_images_per_s": args.gpu_forward_ips,
            "one_gpu_minutes": None if gpu_rate is None else round(IMAGENET_TRAIN / gpu_rate / 60, 1),
            "one_gpu_minutes_at_least_decode_bound": round(IMAGENET_TRAIN / decode_bound_host / 60, 1)},
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    if write_result(result, args.out or (None if args.quick else str(RESULTS)), as_json=args.json):
        ts = result["time_split_ms_per_image"]
        print(f"ResNet-50 (random init) 224 px, {n} JPEGs {args.min_side}-{args.max_side} px, {args.workers} workers, "
              f"{dev}\n  bare forward {bare_ips:.1f} img/s | pipeline {pipe_ips:.1f} img/s | ratio {pipe / bare:.2f} "
              f"(target <= 1.15)\n  decode {ts['decode_one_process']} ms/img (one process), pool "
              f"{ts['decode_pool_images_per_s']} img/s; forward {ts['forward']} ms/img; transfer {ts['transfer']}\n"
              f"  peak RSS {[round(m['peak_rss_mb']) for m in mem]} MB for N={sizes}\n"
              f"  projection 1.28 M: {result['projection_1_28M_images']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
