"""`python -m core mitigate ...` and `python -m core compare ...`: debias a workspace model, compare methods.

    python -m core mitigate --dataset D --model M --method ffw [--set gamma=10 --set structured=true] [--seed 0] [--device auto]
    python -m core compare --dataset D --model M --methods erm,head-tuning,ffw [--seeds 0,1,2] [--sweep gamma=1,10,100]

Both record a run in the workspace (``runs/<id>/``) and print its metrics (``--json``: one JSON object).
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from core.errors import SpurAuditError
from core.mitigate.registry import METHOD_CHOICES
from core.mitigate.runner import run_comparison, run_mitigation

METHODS_HELP = ", ".join(METHOD_CHOICES)


def parse_set(pairs: list[str] | None) -> dict[str, Any]:
    """``["gamma=10", "structured=true", "name=x"]`` -> {"gamma": 10, "structured": True, "name": "x"}
    (values parsed as JSON when they are valid JSON, else kept as strings)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = str(pair).partition("=")
        if not sep or not key.strip():
            raise SpurAuditError(f"--set expects key=value (e.g. --set gamma=10), got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError as exc:
        raise SpurAuditError(f"{flag} must be comma-separated integers, got {text!r}") from exc
    if not values:
        raise SpurAuditError(f"{flag} is empty; e.g. {flag} 0,1,2")
    return values


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    mit = subparsers.add_parser("mitigate", parents=[common],
                                help="debias a model with one method and record the run")
    mit.add_argument("--dataset", required=True, help="workspace dataset name")
    mit.add_argument("--model", required=True, help="workspace model name (trained on the dataset)")
    mit.add_argument("--method", required=True, help=f"one of {METHODS_HELP}")
    mit.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="method option, repeatable (e.g. --set gamma=10 --set structured=true)")
    mit.add_argument("--seed", type=int, default=0)
    mit.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    mit.set_defaults(handler=_mitigate)

    cmp_ = subparsers.add_parser("compare", parents=[common],
                                 help="compare mitigation methods (or sweep one parameter) and record the table")
    cmp_.add_argument("--dataset", required=True)
    cmp_.add_argument("--model", required=True)
    cmp_.add_argument("--methods", required=True, help=f"comma-separated, from {METHODS_HELP}")
    cmp_.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    cmp_.add_argument("--sweep", default=None, metavar="PARAM=V1,V2",
                      help="sweep one parameter of the single method given (e.g. gamma=1,10,100)")
    cmp_.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE",
                      help="option of one method, repeatable (e.g. --set ffw.gamma=10)")
    cmp_.add_argument("--device", default="auto")
    cmp_.set_defaults(handler=_compare)


def _mitigate(ctx: Any) -> int:
    args = ctx.args
    ws = ctx.workspace()
    config = parse_set(args.set)
    run_id = run_mitigation(ws, dataset=args.dataset, model=args.model, method=args.method, config=config,
                            seed=args.seed, device=args.device, progress=ctx.progress(f"{args.method}"))
    run = ws.get_run(run_id)
    result = {"run_id": run_id, "method": run.method, "status": run.status, "metrics": run.metrics,
              "artifacts": {k: str(v) for k, v in run.artifacts.items()}}
    lines = [f"run {run_id}: {args.method} on {args.dataset}/{args.model} ({run.status})"]
    for split in ("val", "test"):
        m = run.metrics.get(split) or {}
        if m:
            parts = [f"{k} {100 * m[k]:.1f}" for k in ("accuracy", "unbiased_accuracy", "worst_group_accuracy",
                                                       "conflicting_accuracy", "bias_decodability")
                     if isinstance(m.get(k), (int, float))]
            lines.append(f"  {split}: " + ", ".join(parts))
    if run.metrics.get("sparsity") is not None:
        lines.append(f"  sparsity {100 * run.metrics['sparsity']:.1f} %")
    if run.metrics.get("gaps"):
        g = run.metrics["gaps"]
        if g.get("before") is not None and g.get("after") is not None:
            lines.append(f"  pooled spurious gap ({g['split']}): {100 * g['before']:.1f} -> {100 * g['after']:.1f} points")
    lines.append(f"  artifacts: {ws.rel(run.artifacts['model']).rsplit('/', 1)[0] if 'model' in run.artifacts else ''}")
    ctx.emit(result, "\n".join(lines))
    return 0


def _compare(ctx: Any) -> int:
    args = ctx.args
    ws = ctx.workspace()
    methods = [m.strip() for m in str(args.methods).split(",") if m.strip()]
    seeds = _ints(args.seeds, "--seeds")
    configs: dict[str, dict] = {}
    for key, value in parse_set(args.set).items():
        method, dot, option = key.partition(".")
        if not dot:
            if len(methods) != 1:
                raise SpurAuditError(f"--set {key}=... names no method; write --set METHOD.{key}=VALUE")
            method, option = methods[0], key
        configs.setdefault(method, {})[option] = value
    run_id = run_comparison(ws, dataset=args.dataset, model=args.model, methods=methods, seeds=seeds,
                            configs=configs, sweep=args.sweep, device=args.device,
                            progress=ctx.progress("compare" if not args.sweep else f"sweep {args.sweep}"))
    run = ws.get_run(run_id)
    result = {"run_id": run_id, "method": run.method, "status": run.status, "metrics": run.metrics,
              "artifacts": {k: str(v) for k, v in run.artifacts.items()}}
    text = None
    md = run.artifacts.get("comparison_md") or run.artifacts.get("sweep_md")
    if md is not None:
        text = f"run {run_id} ({run.method})\n" + md.read_text()
    ctx.emit(result, text)
    return 0
