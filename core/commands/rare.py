"""`python -m core rare ...`: rare spurious correlations (pattern injection, score, privacy, unlearning)."""
from __future__ import annotations

import argparse
from typing import Any

from core.errors import SpurAuditError


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    rare = subparsers.add_parser("rare", parents=[common], help="rare spurious correlations: inject, score, unlearn")
    sub = rare.add_subparsers(dest="rare_command", metavar="ACTION")
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


def _experiment(ctx: Any) -> int:
    from core.rare.experiment import RareExperimentConfig, run_rare_experiment

    args = ctx.args
    try:
        seeds = tuple(int(s) for s in str(args.seeds).split(",") if s.strip())
    except ValueError as exc:
        raise SpurAuditError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from exc
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
