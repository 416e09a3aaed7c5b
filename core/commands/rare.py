"""`python -m core rare ...`: rare spurious correlations (seed 003) — sweeps, canary audits, scores, deletion.

    python -m core rare sweep   [--data mnist|digits|colored-mnist|workspace --dataset D] [--patterns s3,r3]
                                [--counts 0,1,3,10] [--optimizers sgd,adam] [--regularisers none,wd=5e-4,noise=0.1]
                                [--seeds 0,1,2] [--arch mlp] [--epochs 70] [--set KEY=VALUE ...] [--fresh|--resume RUN]
    python -m core rare canary  --dataset D (--model M | --arch small_cnn) (--pattern s3 | --patch logo.png
                                [--patch-position bottom-right] [--patch-scale 1]) [--target 0] [--counts 0,1,2,4,8]
    python -m core rare score   --model M --dataset D (--pattern s3 | --patch logo.png) [--target 0] [--split test]
    python -m core rare unlearn [--data mnist] --pattern s3 --n 10 [--seeds 0,1,2] [--deletion-epochs 20]
    python -m core rare runs | show RUN          # list / print saved rare-pattern runs
    python -m core rare experiment ...           # the original single experiment

Every command accepts ``--json`` (one JSON object) and ``--workspace``. Sweeps and canary audits are
workspace runs: starting the same one again continues it (finished cells are not re-run).
"""
from __future__ import annotations

import argparse
from typing import Any

from core.errors import SpurAuditError

# The handlers import the engine inside their bodies: `python -m core --help` (and every other command)
# must not pay for importing torch, scikit-learn and the rare toolkit.
PATTERN_HELP = "s1, s2, s3 (small squares), r1, r2, r3 (random noise), core (a bar) or patch (with --patch)"


def _ints(text: str | None, flag: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError as exc:
        raise SpurAuditError(f"{flag} must be comma-separated integers, got {text!r}") from exc


def _words(text: str | None) -> list[str] | None:
    return None if text is None else [s.strip() for s in str(text).split(",") if s.strip()]


def _add_patch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--patch", default=None, metavar="PNG",
                   help="your own patch: a PNG (alpha = transparency), e.g. a logo or watermark; implies --pattern patch")
    p.add_argument("--patch-position", default="bottom-right",
                   help="top-left, top-right, bottom-left, bottom-right, center, or ROW,COL of its top-left pixel")
    p.add_argument("--patch-scale", type=float, default=1.0, help="resize factor of the PNG (1 = its pixel size)")
    p.add_argument("--patch-opacity", type=float, default=1.0, help="multiplies the PNG's alpha, in (0, 1]")


def _patch(args: Any) -> dict | None:
    if not getattr(args, "patch", None):
        return None
    return {"path": args.patch, "position": args.patch_position, "scale": args.patch_scale,
            "opacity": args.patch_opacity}


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    rare = subparsers.add_parser("rare", parents=[common], help="rare spurious correlations: sweeps, canary audits, scores")
    sub = rare.add_subparsers(dest="rare_command", metavar="ACTION")

    sw = sub.add_parser("sweep", parents=[common], help="patterns × n × optimizer × regulariser × seeds, one resumable run")
    sw.add_argument("--data", default=None, help="mnist (default), digits, colored-mnist or workspace (with --dataset)")
    sw.add_argument("--dataset", default=None, help="workspace dataset name (implies --data workspace)")
    sw.add_argument("--patterns", default=None, help=f"comma-separated: {PATTERN_HELP} (default: the seven)")
    sw.add_argument("--counts", default=None, help="values of n, comma-separated (default 0,1,3,5,10,20,100)")
    sw.add_argument("--optimizers", default=None, help="sgd and/or adam (default sgd)")
    sw.add_argument("--regularisers", default=None,
                    help="comma-separated: none, wd=V, clip=V, noise=V, or combinations like wd=5e-4+noise=0.1")
    sw.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2)")
    sw.add_argument("--target", type=int, default=None, help="class the pattern is added to (default 0)")
    sw.add_argument("--arch", default=None, help="mlp (default; LargeMLP 256-256-256), small_cnn or a registry name")
    sw.add_argument("--epochs", type=int, default=None, help="training epochs per model (default 70)")
    sw.add_argument("--n-train", type=int, default=None, help="subsample the training split (default: all)")
    sw.add_argument("--deletion-counts", default=None, help="n at which to test deletion (retraining, influence)")
    sw.add_argument("--no-membership", action="store_true", help="skip the membership-inference attack")
    _add_patch_args(sw)
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="any other sweep option (e.g. --set lr_sgd=0.05 --set train_val=true)")
    sw.add_argument("--resume", type=int, default=None, metavar="RUN", help="continue this run id")
    sw.add_argument("--fresh", action="store_true", help="start a new run even if an unfinished one matches")
    sw.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps")
    sw.set_defaults(handler=_sweep)

    ca = sub.add_parser("canary", parents=[common],
                        help="how many patterned images does a training recipe need to learn a shortcut?")
    ca.add_argument("--dataset", required=True, help="workspace dataset (train / val / test splits)")
    ca.add_argument("--model", default=None, help="workspace model whose saved recipe is reused")
    ca.add_argument("--arch", default=None, help="architecture when no --model is given (default small_cnn)")
    ca.add_argument("--pattern", default=None, help=PATTERN_HELP)
    _add_patch_args(ca)
    ca.add_argument("--target", type=int, default=0)
    ca.add_argument("--counts", default=None, help="n to try in order (default 0,1,2,4,8,16,32)")
    ca.add_argument("--seeds", default=None, help="comma-separated seeds, at least two (default 0,1,2)")
    ca.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    ca.add_argument("--augment-shift", type=int, default=None, help="random translation by up to k pixels")
    ca.add_argument("--n-train", type=int, default=None)
    ca.add_argument("--no-stop-early", action="store_true", help="try every count even after a significant one")
    ca.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="training option of the recipe (a TrainConfig field, e.g. --set lr=0.01)")
    ca.add_argument("--resume", type=int, default=None, metavar="RUN")
    ca.add_argument("--fresh", action="store_true")
    ca.add_argument("--device", default=None)
    ca.set_defaults(handler=_canary)

    sc = sub.add_parser("score", parents=[common], help="spurious score of a workspace model for a pattern")
    sc.add_argument("--model", required=True, help="workspace model(s), comma-separated")
    sc.add_argument("--dataset", required=True, help="workspace dataset whose split is scored")
    sc.add_argument("--split", default="test")
    sc.add_argument("--pattern", default=None, help=PATTERN_HELP)
    _add_patch_args(sc)
    sc.add_argument("--target", type=int, default=0)
    sc.add_argument("--threshold", type=float, default=0.1, help="Δ threshold (default 0.1)")
    sc.add_argument("--noise-seed", type=int, default=0, help="seed of the random patterns' noise image")
    sc.add_argument("--device", default="auto")
    sc.set_defaults(handler=_score)

    un = sub.add_parser("unlearn", parents=[common],
                        help="delete the patterned examples (incremental retraining, group influence): is it forgotten?")
    un.add_argument("--data", default="mnist", help="mnist, digits, colored-mnist or workspace (with --dataset)")
    un.add_argument("--dataset", default=None)
    un.add_argument("--pattern", default="s3", help=PATTERN_HELP)
    _add_patch_args(un)
    un.add_argument("--n", type=int, default=10, help="number of patterned training images")
    un.add_argument("--seeds", default="0,1,2")
    un.add_argument("--optimizer", default="sgd")
    un.add_argument("--arch", default=None)
    un.add_argument("--epochs", type=int, default=None)
    un.add_argument("--deletion-epochs", type=int, default=20, help="epochs of incremental retraining")
    un.add_argument("--lissa-iterations", type=int, default=100)
    un.add_argument("--n-train", type=int, default=None)
    un.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    un.add_argument("--device", default=None)
    un.set_defaults(handler=_unlearn)

    ls = sub.add_parser("runs", parents=[common], help="list the rare-pattern runs of the workspace")
    ls.set_defaults(handler=_runs)
    sh = sub.add_parser("show", parents=[common], help="print a saved sweep / canary audit")
    sh.add_argument("run", type=int)
    sh.set_defaults(handler=_show)

    exp = sub.add_parser("experiment", parents=[common],
                         help="inject a pattern into n MNIST training images and measure score, privacy, unlearning")
    exp.add_argument("--pattern", default="s3", help="s1, s2, s3 (small), r1, r2, r3 (random) or core")
    exp.add_argument("--n", type=int, default=3, help="number of patterned training images")
    exp.add_argument("--target", type=int, default=0, help="class the pattern is added to")
    exp.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    exp.add_argument("--epochs", type=int, default=60)
    exp.add_argument("--no-membership", action="store_true", help="skip the membership-inference attack")
    exp.add_argument("--device", default="auto")
    exp.set_defaults(handler=_experiment)
    rare.set_defaults(handler=lambda ctx: (rare.print_help(), 0)[1])


# --------------------------------------------------------------------------------------------------
# handlers
# --------------------------------------------------------------------------------------------------
def _set_pairs(pairs: list[str]) -> dict:
    from core.commands.mitigate import parse_set  # lazy: fast CLI start-up

    return parse_set(pairs)


def _given(mapping: dict) -> dict:
    return {k: v for k, v in mapping.items() if v is not None}


def _sweep_mapping(args: Any) -> dict:
    data = args.data or ("workspace" if args.dataset else None)
    patch = _patch(args)
    patterns = _words(args.patterns)
    if patch is not None and patterns is None:
        patterns = ["patch"]
    mapping = _given({"data": data, "dataset": args.dataset, "patterns": patterns, "counts": _ints(args.counts, "--counts"),
                      "optimizers": _words(args.optimizers), "regularisers": _words(args.regularisers),
                      "seeds": _ints(args.seeds, "--seeds"), "target": args.target, "arch": args.arch,
                      "epochs": args.epochs, "n_train": args.n_train, "patch": patch,
                      "deletion_counts": _ints(args.deletion_counts, "--deletion-counts"), "device": args.device,
                      "resume_run": args.resume})
    if args.no_membership:
        mapping["membership"] = False
    if args.fresh:
        mapping["resume"] = False
    mapping.update(_set_pairs(args.set))
    return mapping


def _cell_lines(summary: dict, *, limit: int = 80) -> list[str]:
    lines = [f"  {'pattern':8s} {'n':>5s} {'optimizer':9s} {'regulariser':16s} {'score':>16s} {'p vs n=0':>9s} "
             f"{'test acc':>8s} {'ℓ2':>6s}"]
    for c in summary.get("cells", [])[:limit]:
        sem = c.get("score_sem")
        score = f"{c['score_mean']:.4f}" + (f" ± {sem:.4f}" if sem is not None else "")
        p = c.get("p_value")
        acc = c.get("test_accuracy_mean")
        norm = c.get("l2_norm")
        lines.append(f"  {c['pattern']:8s} {c['n']:5d} {c['optimizer']:9s} {c['regulariser']:16s} {score:>16s} "
                     f"{(f'{p:.3g}' if p is not None else '-'):>9s} {(f'{acc:.3f}' if acc is not None else '-'):>8s} "
                     f"{(f'{norm:.2f}' if norm is not None else '-'):>6s}")
    if len(summary.get("cells", [])) > limit:
        lines.append(f"  ... {len(summary['cells']) - limit} more cells (--json for all)")
    return lines


def _sweep(ctx: Any) -> int:
    from core.config import config_from_mapping  # lazy: fast CLI start-up
    from core.rare.sweep import SweepConfig, run_sweep  # lazy: fast CLI start-up

    ws = ctx.workspace()
    cfg = config_from_mapping(SweepConfig, _sweep_mapping(ctx.args), what="rare sweep")
    res = run_sweep(ws, cfg, progress=ctx.progress("rare sweep"))
    result = {"run_id": res.run_id, "status": res.status, "cells_run": res.cells_run, "cells_skipped": res.cells_skipped,
              "cells_total": res.cells_total, "summary": res.summary, "notes": res.notes}
    lines = [f"rare sweep run {res.run_id}: {res.cells_run} cells trained, {res.cells_skipped} already saved "
             f"({res.cells_total} in all)"] + _cell_lines(res.summary)
    ctx.emit(result, "\n".join(lines))
    return 0


def _canary(ctx: Any) -> int:
    from core.config import config_from_mapping  # lazy: fast CLI start-up
    from core.rare.canary import CanaryConfig, run_canary  # lazy: fast CLI start-up

    args = ctx.args
    patch = _patch(args)
    pattern = args.pattern or ("patch" if patch else "s3")
    train = _set_pairs(args.set)
    if args.epochs is not None:
        train["epochs"] = args.epochs
    mapping = _given({"dataset": args.dataset, "model": args.model, "arch": args.arch, "pattern": pattern,
                      "patch": patch, "target": args.target, "counts": _ints(args.counts, "--counts"),
                      "seeds": _ints(args.seeds, "--seeds"), "augment_shift": args.augment_shift,
                      "n_train": args.n_train, "device": args.device, "resume_run": args.resume})
    mapping["train"] = train
    if args.no_stop_early:
        mapping["stop_early"] = False
    if args.fresh:
        mapping["resume"] = False
    cfg = config_from_mapping(CanaryConfig, mapping, what="canary")
    res = run_canary(ctx.workspace(), cfg, progress=ctx.progress("canary audit"))
    verdict = res.verdict
    head = (f"learned from n = {res.learned_n} patterned images" if res.learned_n is not None
            else f"not learned up to n = {verdict['largest_n_tried']} (no n significantly above n = 0)")
    lines = [f"canary audit run {res.run_id} on {args.dataset} ({res.recipe['arch']}, recipe: {res.recipe['source']}), "
             f"pattern {pattern}, class {args.target}: {head}"]
    for row in res.per_n:
        p = row.get("p_value")
        sem = row.get("score_sem")
        lines.append(f"  n={row['n']:<5d} score {row['score_mean']:.4f}" + (f" ± {sem:.4f}" if sem is not None else "")
                     + (f"  p={p:.3g}" if p is not None else "") + ("  *" if row.get("significant") else ""))
    ctx.emit({"run_id": res.run_id, "learned_n": res.learned_n, "verdict": verdict, "recipe": res.recipe}, "\n".join(lines))
    return 0


def _score(ctx: Any) -> int:
    import numpy as np  # lazy: fast CLI start-up

    from core.data import load_manifest  # lazy: fast CLI start-up
    from core.models.checkpoints import load_workspace_model  # lazy: fast CLI start-up
    from core.rare.inject import PATCH, PatchPattern, PatchSpec, check_pattern  # lazy: fast CLI start-up
    from core.rare.score import pattern_deltas  # lazy: fast CLI start-up

    args = ctx.args
    ws = ctx.workspace()
    patch = _patch(args)
    pattern: Any = args.pattern or ("patch" if patch else "s3")
    if pattern == PATCH:
        if patch is None:
            raise SpurAuditError("--pattern patch needs --patch PNG")
        pattern = PatchPattern(PatchSpec(**patch), root=ws.root)
    check_pattern(pattern)
    part = load_manifest(ws, args.dataset).split(args.split)
    if len(part) == 0:
        raise SpurAuditError(f"dataset {args.dataset!r} has no {args.split!r} split")
    x, y = part.load_tensors()
    if isinstance(pattern, PatchPattern):
        pattern.origin(int(x.shape[2]), int(x.shape[3]))
    keep = y != args.target
    if not bool(keep.any()):
        raise SpurAuditError(f"every {args.split} image is of class {args.target}: nothing to score")
    rows = []
    for name in _words(args.model) or []:
        model = load_workspace_model(ws, name)
        if args.target >= model.num_classes:
            raise SpurAuditError(f"target {args.target} is not a class of model {name!r} (0..{model.num_classes - 1})")
        d = pattern_deltas(model, x[keep], pattern=pattern, target=args.target, noise_seed=args.noise_seed,
                           device=args.device)
        rows.append({"model": name, "score": float((d > args.threshold).mean()), "mean_delta": float(d.mean()),
                     "median_delta": float(np.median(d)), "p95_delta": float(np.quantile(d, 0.95)), "n_images": int(len(d))})
    label = pattern if isinstance(pattern, str) else "patch"
    lines = [f"spurious score of pattern {label} for class {args.target} on {args.dataset}/{args.split} "
             f"(fraction of other-class images with Δp > {args.threshold}):"]
    lines += [f"  {r['model']:20s} {r['score']:.4f}   mean Δ {r['mean_delta']:+.4f}, 95th pct {r['p95_delta']:+.4f}"
              for r in rows]
    ctx.emit({"pattern": label, "target": args.target, "split": args.split, "threshold": args.threshold,
              "models": rows}, "\n".join(lines))
    return 0


def _unlearn(ctx: Any) -> int:
    from core.config import config_from_mapping  # lazy: fast CLI start-up
    from core.rare.sweep import SweepConfig, run_sweep  # lazy: fast CLI start-up

    args = ctx.args
    if args.n < 1:
        raise SpurAuditError("--n must be >= 1 (the patterned images to delete)")
    patch = _patch(args)
    pattern = "patch" if patch and args.pattern == "s3" else args.pattern
    data = "workspace" if args.dataset else args.data
    mapping = _given({"data": data, "dataset": args.dataset, "patterns": [pattern], "patch": patch,
                      "counts": [0, args.n], "seeds": _ints(args.seeds, "--seeds"), "optimizers": [args.optimizer],
                      "arch": args.arch, "epochs": args.epochs, "deletion_counts": [args.n],
                      "deletion_epochs": args.deletion_epochs, "lissa_iterations": args.lissa_iterations,
                      "n_train": args.n_train, "device": args.device})
    mapping["membership"] = False
    mapping.update(_set_pairs(args.set))
    cfg = config_from_mapping(SweepConfig, mapping, what="rare unlearn")
    res = run_sweep(ctx.workspace(), cfg, progress=ctx.progress("rare unlearn"))
    rows = res.summary.get("deletion", [])
    lines = [f"deletion of {args.n} {pattern}-patterned images (run {res.run_id}):"]
    for r in rows:
        def fmt(v):
            return "-" if v is None else f"{v:.4f}"
        lines.append(f"  score n=0 {fmt(r['score_n0'])} | before {fmt(r['score_before'])} | after retraining "
                     f"{fmt(r['score_after_retraining'])} (still learned: {r['still_learned_after_retraining']}) | "
                     f"after group influence {fmt(r['score_after_influence'])} "
                     f"(still learned: {r['still_learned_after_influence']})")
    ctx.emit({"run_id": res.run_id, "deletion": rows, "summary": res.summary}, "\n".join(lines))
    return 0


def _runs(ctx: Any) -> int:
    from core.rare.artifacts import list_rare_runs  # lazy: fast CLI start-up

    rows = list_rare_runs(ctx.workspace())
    lines = [f"  #{r['id']:<4d} {r['method']:12s} {r['status']:9s} {str(r['data']):14s} {str(r['arch']):10s} "
             f"patterns {r['patterns']}  counts {r['counts']}  cells {r['cells_done']}/{r['cells_total']}" for r in rows]
    ctx.emit({"runs": rows}, "\n".join(lines) if lines else "no rare-pattern runs in this workspace")
    return 0


def _show(ctx: Any) -> int:
    from core.rare.artifacts import load_rare_run  # lazy: fast CLI start-up

    run = load_rare_run(ctx.workspace(), ctx.args.run)
    lines = [f"{run.method} run {run.id} ({run.status}), cells {run.progress[0]}/{run.progress[1]}"]
    if run.error:
        lines.append(f"  error: {run.error}")
    if run.is_canary and run.summary.get("canary"):
        v = run.summary["canary"]
        lines.append(f"  learned n: {v.get('learned_n')} (largest n tried {v.get('largest_n_tried')})")
    lines += _cell_lines(run.summary)
    ctx.emit({"id": run.id, "method": run.method, "status": run.status, "progress": list(run.progress),
              "config": run.config, "summary": run.summary}, "\n".join(lines))
    return 0


def _experiment(ctx: Any) -> int:
    from core.rare.experiment import RareExperimentConfig, run_rare_experiment  # lazy: fast CLI start-up

    args = ctx.args
    seeds = tuple(_ints(args.seeds, "--seeds") or ())
    cfg = RareExperimentConfig(pattern=args.pattern, n=args.n, target=args.target, seeds=seeds,
                               epochs=args.epochs, membership=not args.no_membership)
    result = run_rare_experiment(cfg, device=args.device, progress=ctx.progress("rare-spurious experiment"))
    mean = result["mean"]
    lines = [f"pattern {cfg.pattern}, n={cfg.n}, target={cfg.target}, seeds {list(seeds)}"]
    for key, value in mean.items():
        lines.append(f"  {key:32s} {value:.4f}")
    if "t_test" in result:
        lines.append(f"  Welch t-test vs n=0: t={result['t_test']['t']:.2f}, p={result['t_test']['p_value']:.3g}")
    ctx.emit(result, "\n".join(lines))
    return 0
