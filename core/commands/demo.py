"""`python -m core demo [--quick]`: build the embedded demo audits in the workspace (idempotent)."""
from __future__ import annotations

import argparse
from typing import Any

from core.demo import run_demo


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    demo = subparsers.add_parser(
        "demo", parents=[common],
        help="build the demo audits end to end (digits-on-textures and colored MNIST)",
        description="Builds, idempotently, two demo audits from data that ships with Python packages: "
                    "digits-on-textures (robust encoder + biased linear head; discovery, mask labels, rankings, "
                    "gaps, report, head tuning) and colored MNIST 1%% (adversarially trained small CNN, "
                    "features, discovery, ERM vs DCWP comparison).")
    demo.add_argument("--quick", action="store_true", help="a seconds-scale version (small data, tiny budgets)")
    demo.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    demo.set_defaults(handler=_demo)


def _demo(ctx: Any) -> int:
    ws = ctx.workspace()
    summary = run_demo(ws, quick=ctx.args.quick, device=ctx.args.device, progress=ctx.progress("demo"))
    lines = [f"SpurAudit demo ready in {summary['wall_time_s']:.0f} s — workspace: {ws.root}", ""]
    for s in summary["steps"]:
        took = f" ({s['seconds']:.1f} s)" if "seconds" in s else ""
        lines.append(f"  [{s['status']:>6}] {s['step']}{took}")
    audit = summary.get("textures_audit") or {}
    if audit:
        pooled = audit.get("pooled_gap") or {}
        gap = pooled.get("gap") if isinstance(pooled, dict) else pooled
        gap_text = f"{100 * gap:.1f} points" if isinstance(gap, (int, float)) else "n/a"
        lines += ["", f"textures audit: {audit.get('n_core_pairs', 0)} core and {audit.get('n_spurious_pairs', 0)} "
                      f"spurious (class, feature) pairs; pooled spurious gap {gap_text} on {audit.get('eval_split')}"]
    if summary["runs"]:
        lines += ["", "runs:"]
        for r in summary["runs"]:
            numbers = ", ".join(f"{k} {v:.3f}" for k, v in r["metrics"].items())
            lines.append(f"  #{r['id']:<3} {r['method']:<13} {r['dataset']:<12} {r['status']:<7} {numbers}")
    if summary.get("report"):
        lines += ["", f"report:    {summary['report']}"]
    lines += [f"dashboard: SPURAUDIT_WORKSPACE={ws.root} python -m streamlit run dashboard/app.py"]
    ctx.emit(summary, "\n".join(lines))
    return 0
