"""`python -m core study`: the many-model study (issue 14).

    python -m core study --dataset D --ranking-model M --models a,b,c [--split val] [--name N]
        [--models-file F] [--image-size 224] [--batch-size 256] [--num-workers K] [--device auto]
        [--k K] [--n-boot 1000] [--job]
    python -m core study --list [--dataset D]
    python -m core study --show NAME

Model specs (`core.study.specs`): a workspace model name, ``<arch>@<checkpoint>``,
``timm:<name>@<checkpoint>``, ``clip-zeroshot:<name>[@<tag or file>]``; ``LABEL=spec`` names one.
Runs in this process by default (resumable: rerun the same command after an interruption); ``--job``
queues it as a background job on its device instead (`core.jobs`) and prints the job id.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict

from core import jobs
from core.commands.context import CommandContext
from core.errors import SpurAuditError
from core.study.artifacts import list_studies, load_study, study_files
from core.study.run import StudyConfig, run_study
from core.study.specs import read_models_file


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("study", parents=[common], help="spurious gaps of many models on one ranked split",
                              description="The many-model study: each model's predictions on the split ranked by "
                                          "--ranking-model's audit, per-class and pooled gaps with intervals, "
                                          "acc(high) vs acc(low) with a fitted line (effective robustness) and "
                                          "the correlation of per-class gaps between models.")
    p.add_argument("--dataset", help="workspace dataset")
    p.add_argument("--ranking-model", help="the audited model whose saved ranking orders the images")
    p.add_argument("--models", default="", help="comma-separated model specs (workspace names, arch@ckpt, "
                                                "timm:NAME@ckpt, clip-zeroshot:NAME[@tag])")
    p.add_argument("--models-file", default=None, help="a file with one model spec per line (# comments)")
    p.add_argument("--split", default="val", help="the ranked split (default val)")
    p.add_argument("--name", default=None, help="study name (default DATASET__MODEL__SPLIT)")
    p.add_argument("--no-ranking-model", action="store_true", help="do not evaluate the ranking model itself")
    p.add_argument("--class-names", default=None, metavar="FILE",
                   help="readable class names (one per line, class order) for clip-zeroshot prompts")
    p.add_argument("--k", type=int, default=None, help="slice size per class (default min(100, n/4))")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the intervals")
    p.add_argument("--image-size", type=int, default=None,
                   help="decode + resize + centre-crop to this size (photos; default: images as stored)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-workers", type=int, default=None, help="decode workers (default: from the cores)")
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"))
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--job", action="store_true", help="queue as a background job instead of running here")
    p.add_argument("--list", action="store_true", help="list finished studies")
    p.add_argument("--show", default=None, metavar="NAME", help="show a finished study")
    p.set_defaults(handler=_study)


def _specs(a: argparse.Namespace) -> list[str]:
    specs = [s.strip() for s in (a.models or "").split(",") if s.strip()]
    if a.models_file:
        specs += read_models_file(a.models_file)
    return specs


def _study(ctx: CommandContext) -> int:
    a = ctx.args
    ws = ctx.workspace()
    if a.list:
        names = list_studies(ws, dataset=a.dataset)
        ctx.emit({"studies": names}, "\n".join(names) or "no studies yet")
        return 0
    if a.show:
        s = load_study(ws, a.show)
        cols = ["model", "accuracy", "acc_high", "acc_low", "gap", "ci_low", "ci_high", "effective_robustness"]
        ctx.emit({"name": s.name, **s.summary},
                 f"study {s.name}: {len(s.models)} models on {s.dataset} ranked by {s.ranking_model}\n"
                 f"{s.models[cols].round(3).to_string(index=False)}\n"
                 f"mean pairwise Pearson of per-class gaps: {s.summary.get('mean_pairwise_pearson')}")
        return 0
    if not a.dataset or not a.ranking_model:
        raise SpurAuditError("study needs --dataset and --ranking-model (or --list / --show NAME)")
    cfg = StudyConfig(dataset=a.dataset, ranking_model=a.ranking_model, models=_specs(a), split=a.split, name=a.name,
                      include_ranking_model=not a.no_ranking_model, class_names_file=a.class_names, k=a.k,
                      n_boot=a.n_boot, image_size=a.image_size,
                      batch_size=a.batch_size, num_workers=a.num_workers, amp=a.amp, device=a.device).validate()
    if a.job:
        params = asdict(cfg)
        job_id = jobs.submit(ws, "study", params, device=a.device)
        ctx.emit({"job": job_id}, f"study queued as job {job_id}; follow it with `python -m core job show {job_id}`")
        return 0
    out = run_study(ws, cfg, progress=ctx.progress(f"study {a.dataset}"))
    def f(v: object, spec: str = ".3f") -> str:
        return "n/a" if v is None else format(v, spec)

    rows = "\n".join(f"  {m['model']}: acc {f(m['accuracy'])}  high {f(m['acc_high'])}  low {f(m['acc_low'])}  "
                     f"gap {f(m['gap'], '+.3f')}" for m in out["models"])
    ctx.emit(out, f"study {out['name']}: {out['n_models']} models\n{rows}\n"
                  f"mean pairwise Pearson of per-class gaps: {out['mean_pairwise_pearson']}\n"
                  f"files: {ws.path(study_files(out['name']).folder)}")
    return 0
