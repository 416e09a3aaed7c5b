"""`python -m core audit|discover|label|rank|gaps|collisions|crops|sensitivity|report ...`.

    python -m core audit --dataset tex --model cnn [--k 5] [--label-source auto] [--eval-split val]
    python -m core discover --dataset tex --model cnn [--split train] [--k 5] [--group-by prediction]
    python -m core label add --dataset tex --model cnn --class 3 --feature 17 --answer spurious_background --annotator ana
    python -m core label import --dataset imnet --model r50 answers.csv [--format salient-imagenet]
    python -m core label import --dataset imnet --model r50 --format salient-imagenet [answers.csv] \
        --masks salient_imagenet_dataset [--mask-split train] [--mask-side 64] [--preview] [--job]
    python -m core label export --dataset tex --model cnn [--out labels.csv]
    python -m core label show|agreement|masks --dataset tex --model cnn
    python -m core rank --dataset tex --model cnn --split val
    python -m core gaps --dataset tex --model cnn --split val [--models other1 other2] [--k 50]
    python -m core collisions|crops|sensitivity|report --dataset tex --model cnn [--split val]

Results are persisted through the workspace under ``audits/<dataset>/<model>/`` (written by
`core.audit.pipeline`, named and read by `core.audit.artifacts`); gaps are also recorded as a run with
method ``audit-gaps``. ``audit`` runs `core.report.run_audit` (the audit, then its report).
"""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from core.audit.artifacts import current_verdicts, load_rankings
from core.audit.discover import DiscoveryConfig
from core.audit.coverage import reason_counts, unranked_summary, unranked_table
from core.audit.gaps import GapConfig
from core.audit.label_import import LABEL_FORMATS, LabelImportConfig, preview_label_import, run_label_import
from core.audit.labels import ANSWERS, MaskLabelConfig, add_answers, agreement, labels_to_csv
from core.audit.salient_masks import DEFAULT_SIDE
from core.audit.pipeline import (MASK_SOURCES, how_to_label, run_collisions, run_core_crops, run_discovery,
                                 run_gaps, run_mask_labels, run_rankings, run_sensitivity)
from core.config import config_from_mapping
from core.data import load_manifest
from core.errors import SpurAuditError
from core.jobs import submit
from core.serialize import to_plain
from core.report import run_audit, write_report

def _target(p: argparse.ArgumentParser, *, split: str | None = None, split_required: bool = False) -> None:
    p.add_argument("--dataset", required=True, help="dataset name in the workspace")
    p.add_argument("--model", required=True, help="audited model name in the workspace")
    if split is not None or split_required:
        p.add_argument("--split", default=split, required=split_required and split is None,
                       help=f"split (default {split})" if split else "split, e.g. val or test")


def _command(subparsers: Any, common: argparse.ArgumentParser, name: str, help: str, handler: Any,
             **target: Any) -> argparse.ArgumentParser:
    """A (sub)command ``name`` taking --dataset, --model (and --split per ``target``, see `_target`)."""
    parser = subparsers.add_parser(name, parents=[common], help=help)
    _target(parser, **target)
    parser.set_defaults(handler=handler)
    return parser


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """The commands in the order --help shows them."""
    for add in (_add_audit, _add_discover, _add_label, _add_rank, _add_gaps, _add_collisions, _add_crops,
                _add_sensitivity, _add_report):
        add(subparsers, common)


def _add_audit(subparsers: Any, common: argparse.ArgumentParser) -> None:
    a = _command(subparsers, common, "audit", "run the whole audit (discover, labels, rank, gaps, report)", _audit)
    a.add_argument("--k", type=int, default=5, help="top features per class (5)")
    a.add_argument("--label-source", default="auto", choices=("auto", "masks", "existing", "none"),
                   help="auto: machine labels from object masks when the dataset has them")
    a.add_argument("--eval-split", default=None, help="split for rankings and gaps (default val, else test)")
    a.add_argument("--quorum", type=int, default=None, help="answers needed for a verdict (default: majority)")
    a.add_argument("--device", default="auto")


def _add_discover(subparsers: Any, common: argparse.ArgumentParser) -> None:
    d = _command(subparsers, common, "discover", "top-k features per class", _discover, split="train")
    d.add_argument("--k", type=int, default=5)
    d.add_argument("--group-by", default="prediction", choices=("prediction", "label", "correct"))
    d.add_argument("--device", default="auto")


def _add_label(subparsers: Any, common: argparse.ArgumentParser) -> None:
    lab = subparsers.add_parser("label", parents=[common], help="add, import, export and inspect feature labels")
    lsub = lab.add_subparsers(dest="label_command", metavar="ACTION")
    lab.set_defaults(handler=lambda ctx: lab.print_help() or 2)
    add = _command(lsub, common, "add", "record one answer", _label_add)
    add.add_argument("--class", dest="class_index", type=int, required=True)
    add.add_argument("--feature", type=int, required=True)
    add.add_argument("--answer", choices=ANSWERS, required=True)
    add.add_argument("--annotator", required=True)
    add.add_argument("--note", default="")
    imp = _command(lsub, common, "import", "import answers from a CSV file (and Salient ImageNet masks)",
                   _label_import)
    imp.add_argument("file", type=Path, nargs="?", default=None,
                     help="answers CSV (may be left out with --masks: masks only)")
    imp.add_argument("--format", default="csv", choices=LABEL_FORMATS)
    imp.add_argument("--annotator", default="", help="annotator for rows without one (csv)")
    imp.add_argument("--masks", type=Path, default=None,
                     help="Salient ImageNet masks folder: <wnid>/feature_<idx>/[cams/]<image stem>.png|jpg")
    imp.add_argument("--mask-split", default=None, choices=("train", "val", "test"),
                     help="split of the masks' images (default any; needed when file names repeat across splits)")
    imp.add_argument("--mask-side", type=int, default=DEFAULT_SIDE, help="stored mask side in pixels (64)")
    imp.add_argument("--preview", action="store_true", help="count what would be imported; write nothing")
    imp.add_argument("--job", action="store_true", help="run as a background job (a large masks folder)")
    exp = _command(lsub, common, "export", "export every answer as CSV", _label_export)
    exp.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")
    show = _command(lsub, common, "show", "derived verdicts", _label_show)
    show.add_argument("--quorum", type=int, default=None)
    _command(lsub, common, "agreement", "inter-annotator agreement (Cohen, Fleiss kappa)", _label_agreement)
    msk = _command(lsub, common, "masks", "machine labels from the dataset's object masks", _label_masks,
                   split="train")
    msk.add_argument("--top-n", type=int, default=10)
    msk.add_argument("--device", default="auto")


def _add_rank(subparsers: Any, common: argparse.ArgumentParser) -> None:
    r = _command(subparsers, common, "rank", "spuriosity rankings of a split", _rank, split_required=True)
    r.add_argument("--quorum", type=int, default=None)


def _add_gaps(subparsers: Any, common: argparse.ArgumentParser) -> None:
    g = _command(subparsers, common, "gaps", "spurious gaps (per class, pooled, bootstrap CI)", _gaps,
                 split_required=True)
    g.add_argument("--models", nargs="*", default=[], help="other models to evaluate on the same ranking")
    g.add_argument("--k", type=int, default=None, help="slice size (default min(100, n/4), at most n/2)")
    g.add_argument("--n-boot", type=int, default=1000)
    g.add_argument("--seed", type=int, default=0)


def _add_collisions(subparsers: Any, common: argparse.ArgumentParser) -> None:
    c = _command(subparsers, common, "collisions", "spurious features that are core elsewhere", _collisions)
    c.add_argument("--top-k", type=int, default=5)


def _add_crops(subparsers: Any, common: argparse.ArgumentParser) -> None:
    cr = _command(subparsers, common, "crops", "core crops of the high-spuriosity images", _crops,
                  split_required=True)
    cr.add_argument("--fraction", type=float, default=0.2)
    cr.add_argument("--device", default="auto")


def _add_sensitivity(subparsers: Any, common: argparse.ArgumentParser) -> None:
    s = _command(subparsers, common, "sensitivity", "accuracy drop under masked corruptions", _sensitivity,
                 split_required=True)
    s.add_argument("--mask-from", default="core", choices=MASK_SOURCES,
                   help="core/spurious: feature NAMs; object: dataset masks; salient[_core|_spurious]: the imported "
                        "Salient ImageNet masks (label import --masks)")
    s.add_argument("--image-size", type=int, default=None,
                   help="salient sources on photo datasets: the centre crop the features were extracted at (224)")
    s.add_argument("--max-images", type=int, default=500)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")


def _add_report(subparsers: Any, common: argparse.ArgumentParser) -> None:
    rep = _command(subparsers, common, "report", "self-contained HTML audit report", _report, split_required=True)
    rep.add_argument("--max-classes", type=int, default=50)
    rep.add_argument("--attack-steps", type=int, default=0,
                     help="also show each feature's attack visualisation (e.g. 100 steps; 0 = none)")
    rep.add_argument("--device", default="cpu")


def _emit_table(ctx, key: str, table: pd.DataFrame, empty: str) -> None:
    """Emit ``table`` as {key: rows} (JSON) or as text (``empty`` when it has no rows)."""
    ctx.emit({key: table.to_dict(orient="records")}, table.to_string(index=False) if len(table) else empty)


def _audit(ctx) -> None:
    a = ctx.args
    out = run_audit(ctx.workspace(), a.dataset, a.model, k=a.k, label_source=a.label_source,
                    eval_split=a.eval_split, quorum=a.quorum, device=a.device, progress=ctx.progress("audit"))
    p = out["pooled_gap"]
    if not out.get("ranked_classes", p.get("n_classes", 0)):
        text = (f"audit of {a.dataset}/{a.model} on {out['eval_split']}: features discovered, but no feature is "
                f"labelled spurious yet ({out['n_spurious_pairs']} spurious, {out['n_core_pairs']} core labels), "
                "so no class is ranked and there is no spurious gap to report.\nWays to get labels:\n"
                + "\n".join(f"  - {w}" for w in out.get("next_steps", []))
                + f"\nreport {out.get('report', '-')}")
    else:
        text = (f"audit of {a.dataset}/{a.model} on {out['eval_split']}: pooled spurious gap "
                f"{p['gap']:+.3f} over {p['n_classes']} ranked classes; "
                f"{out['n_spurious_pairs']} spurious, {out['n_core_pairs']} core feature labels; "
                f"report {out.get('report', '-')}")
    ctx.emit(to_plain(out, nan_as_none=True), text)


def _discover(ctx) -> None:
    a = ctx.args
    res = run_discovery(ctx.workspace(), a.dataset, a.model, split=a.split,
                        config=DiscoveryConfig(k=a.k, group_by=a.group_by), device=a.device,
                        progress=ctx.progress("discover"))
    tab = res.table()
    ctx.emit({"top_features": res.top_features.tolist(), "group_by": res.group_by,
              "fallback_classes": res.fallback_classes, "table": tab.to_dict(orient="records")},
             tab.to_string(index=False))


def _label_add(ctx) -> None:
    a = ctx.args
    n = add_answers(ctx.workspace(), a.dataset, a.model, [dict(class_index=a.class_index, feature=a.feature,
                                                             answer=a.answer, annotator=a.annotator, note=a.note)])
    ctx.emit({"written": n}, f"recorded {a.answer} for class {a.class_index} feature {a.feature}")


def _label_import(ctx) -> None:
    a = ctx.args
    config = config_from_mapping(LabelImportConfig, {
        "dataset": a.dataset, "model": a.model, "file": str(a.file) if a.file else None, "format": a.format,
        "annotator": a.annotator, "masks": str(a.masks) if a.masks else None, "mask_split": a.mask_split,
        "mask_side": a.mask_side}, what="label import")
    ws = ctx.workspace()
    if a.preview:
        out = preview_label_import(ws, config, progress=ctx.progress("scan masks"))
        ctx.emit(out, "\n".join(["preview (nothing written):", *out["lines"]]))
        return
    if a.job:
        job_id = submit(ws, "label-import", asdict(config), device="cpu")
        ctx.emit({"job": job_id}, f"label import queued as job {job_id}; follow it with `python -m core job show "
                                  f"{job_id}`")
        return
    out = run_label_import(ws, config, progress=ctx.progress("import"))
    ctx.emit(out, "\n".join(out["lines"]))


def _label_export(ctx) -> None:
    a = ctx.args
    text = labels_to_csv(ctx.workspace().labels(a.dataset, a.model))
    if a.out is None:
        ctx.emit({"csv": text}, text.rstrip("\n"))
    else:
        a.out.write_text(text, encoding="utf-8")        # a user-chosen file outside the workspace
        ctx.emit({"path": str(a.out)}, f"wrote {a.out}")


def _label_show(ctx) -> None:
    a = ctx.args
    verdict_table = current_verdicts(ctx.workspace(), a.dataset, a.model, quorum=a.quorum)
    _emit_table(ctx, "verdicts", verdict_table, "no labels yet")


def _label_agreement(ctx) -> None:
    a = ctx.args
    res = agreement(ctx.workspace().labels(a.dataset, a.model))
    pairs = res["pairs"]
    ctx.emit({**res, "pairs": pairs.to_dict(orient="records")},
             f"Fleiss kappa {res['fleiss_kappa']:.3f} over {res['n_items']} items, {res['n_annotators']} annotators\n"
             + (pairs.to_string(index=False) if len(pairs) else "no annotator pairs"))


def _label_masks(ctx) -> None:
    a = ctx.args
    n = run_mask_labels(ctx.workspace(), a.dataset, a.model, split=a.split, config=MaskLabelConfig(top_n=a.top_n),
                        device=a.device, progress=ctx.progress("mask labels"))
    ctx.emit({"written": n}, f"wrote {n} machine labels (source masks)")


def _rank(ctx) -> None:
    a = ctx.args
    res = run_rankings(ctx.workspace(), a.dataset, a.model, split=a.split, quorum=a.quorum,
                       progress=ctx.progress("rank"))
    ranked = [c for c in range(res.num_classes) if c not in res.classes_without_spurious]
    text = f"ranked {len(ranked)} classes of {a.split}; " + _not_ranked_text(res.classes_without_spurious)
    if not ranked:
        text += ("\nno feature is labelled spurious yet, so no class can be ranked. Ways to get labels:\n"
                 + "\n".join(f"  - {w}" for w in how_to_label(a.dataset, a.model, has_masks=_has_masks(ctx))))
    ctx.emit({"ranked_classes": ranked, "classes_without_spurious": res.classes_without_spurious,
              "n": int(len(res.scores))}, text)


def _not_ranked_text(classes: list[int]) -> str:
    """"3 without a spurious feature (not ranked): [1, 4, 9]" — a count alone when the list is long."""
    if not classes:
        return "every class has a spurious feature"
    head = f"{len(classes)} without a spurious feature (not ranked)"
    return head + (f": {classes}" if len(classes) <= 20 else "; list them with --json")


def _has_masks(ctx) -> bool:
    return "mask_path" in load_manifest(ctx.workspace(), ctx.args.dataset).df.columns


def _gaps(ctx) -> None:
    a = ctx.args
    out = run_gaps(ctx.workspace(), a.dataset, a.model, split=a.split, models=a.models,
                   config=GapConfig(k=a.k, n_boot=a.n_boot, seed=a.seed), progress=ctx.progress("gaps"))
    main = out["gaps"][a.model]
    if not main.pooled.get("n_classes"):
        raise SpurAuditError(
            f"no class of {a.dataset}/{a.model}/{a.split} is ranked (no feature was labelled spurious when it was "
            f"ranked), so there is no spurious gap. Label features (the Features page, `label masks`, "
            f"`concepts sam-labels` / `clip-labels`, `label import`), then rank the split: `python -m core rank "
            f"--dataset {a.dataset} --model {a.model} --split {a.split}`, and run gaps again")
    ranking = load_rankings(ctx.workspace(), a.dataset, a.model, a.split)
    unranked = unranked_table(main.per_class, ranking.classes_without_spurious)
    ranked_rows = main.per_class[main.per_class.ranked.astype(bool)].drop(columns=["reason"], errors="ignore")
    lines = [ranked_rows.to_string(index=False) if len(ranked_rows) else "no class is ranked",
             unranked_summary(unranked, len(main.per_class))
             + (" List them with --json (key unranked)." if len(unranked) else "")]
    for name, r in out["gaps"].items():
        p = r.pooled
        lines.append(f"{name}: pooled gap {p['gap']:+.3f} (95% CI {p.get('ci_low', float('nan')):+.3f} .. "
                     f"{p.get('ci_high', float('nan')):+.3f}), {p['n_negative']} negative classes")
    if len(out["correlation"]) > 1:
        lines.append("correlation of per-class gaps:\n" + out["correlation"].to_string())
    ctx.emit({"pooled": {n: r.pooled for n, r in out["gaps"].items()},
              "per_class": main.per_class.to_dict(orient="records"),
              "unranked": unranked.to_dict(orient="records"), "unranked_counts": reason_counts(unranked),
              "correlation": out["correlation"].to_dict(), "run_id": out["run_id"]}, "\n".join(lines))


def _collisions(ctx) -> None:
    a = ctx.args
    _emit_table(ctx, "collisions", run_collisions(ctx.workspace(), a.dataset, a.model, top_k=a.top_k),
                "no collisions")


def _crops(ctx) -> None:
    a = ctx.args
    out = run_core_crops(ctx.workspace(), a.dataset, a.model, split=a.split, fraction=a.fraction, device=a.device,
                         progress=ctx.progress("core crops"))
    ctx.emit(out, f"core crops on {out['n']} high-spuriosity images: accuracy {out['acc_before']:.3f} -> "
                  f"{out['acc_after']:.3f}")


def _sensitivity(ctx) -> None:
    a = ctx.args
    t = run_sensitivity(ctx.workspace(), a.dataset, a.model, split=a.split, mask_from=a.mask_from,
                        max_images=a.max_images, seed=a.seed, device=a.device, image_size=a.image_size,
                        progress=ctx.progress("sensitivity"))
    s = t[t.class_index == -1]
    ctx.emit({"summary": s.to_dict(orient="records"), "per_class": t.to_dict(orient="records")},
             s.to_string(index=False))


def _report(ctx) -> None:
    a = ctx.args
    path = write_report(ctx.workspace(), a.dataset, a.model, split=a.split, max_classes=a.max_classes,
                        attack_steps=a.attack_steps, device=a.device, progress=ctx.progress("report"))
    ctx.emit({"path": str(path)}, f"wrote {path}")
