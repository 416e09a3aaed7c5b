"""`python -m core extract --dataset D --model M [--split S|all]`: fill the feature store.

Runs unchanged under PyTorch's launcher to scale out:
``torchrun --nproc-per-node K -m core extract --dataset D --model M --split train`` (each rank
extracts a contiguous range, rank 0 merges; only rank 0 prints).
"""
from __future__ import annotations

import argparse

from core.commands.context import CommandContext
from core.features.extract import AMP_CHOICES, extract_splits
from core.features.sharding import DistInfo


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("extract", parents=[common], help="extract features and logits of a dataset split",
                              description="Extract float16 features and float32 logits of a dataset split with a "
                                          "model into the workspace (resumable; torchrun-aware).")
    p.add_argument("--dataset", required=True, help="dataset name in the workspace")
    p.add_argument("--model", required=True, help="model name in the workspace")
    p.add_argument("--split", default="all", help="train, val, test or all (default)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--chunk-size", type=int, default=4096, help="rows per committed (resumable) chunk")
    p.add_argument("--num-workers", type=int, default=None,
                   help="DataLoader decode workers (default: from the cores with --image-size, else 0)")
    p.add_argument("--image-size", type=int, default=None,
                   help="photo datasets: decode, resize (shorter side SIZE*256/224) and centre-crop SIZE in the "
                        "workers (e.g. 224); default: images as stored")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slow first batches)")
    p.add_argument("--no-channels-last", action="store_true", help="keep NCHW on CUDA")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--amp", default="auto", choices=AMP_CHOICES,
                   help="autocast precision on CUDA (ignored on CPU)")
    p.set_defaults(handler=_extract)


def _extract(ctx: CommandContext) -> int:
    a = ctx.args
    ws = ctx.workspace()
    rank0 = DistInfo.from_env().rank == 0
    progress = ctx.progress(f"extract {a.dataset}/{a.model}") if rank0 else None
    records = extract_splits(ws, a.dataset, a.model, a.split, batch_size=a.batch_size, device=a.device,
                             num_workers=a.num_workers, chunk_size=a.chunk_size, amp=a.amp, image_size=a.image_size,
                             channels_last=not a.no_channels_last, compile=a.compile, progress=progress)
    if not rank0:
        return 0
    out = {"feature_sets": [{"dataset": r.dataset, "model": r.model, "split": r.split, "n": r.n, "dim": r.dim,
                             "num_classes": r.num_classes, "features": str(r.features_path),
                             "logits": str(r.logits_path)} for r in records]}
    text = "\n".join(f"{r.dataset}/{r.model}/{r.split}: {r.n} x {r.dim} features, {r.num_classes} logits -> "
                     f"{r.features_path.parent}" for r in records)
    ctx.emit(out, text)
    return 0
