"""`python -m core audit|discover|label|rank|gaps|collisions|crops|sensitivity|report ...`.

    python -m core audit --dataset tex --model cnn [--k 5] [--label-source auto] [--eval-split val]
    python -m core discover --dataset tex --model cnn [--split train] [--k 5] [--group-by prediction]
    python -m core label add --dataset tex --model cnn --class 3 --feature 17 --answer spurious_background --annotator ana
    python -m core label import --dataset imnet --model r50 answers.csv [--format salient-imagenet]
    python -m core label export --dataset tex --model cnn [--out labels.csv]
    python -m core label show|agreement|masks --dataset tex --model cnn
    python -m core rank --dataset tex --model cnn --split val
    python -m core gaps --dataset tex --model cnn --split val [--models other1 other2] [--k 50]
    python -m core collisions|crops|sensitivity|report --dataset tex --model cnn [--split val]

Results are persisted through the workspace under ``audits/<dataset>/<model>/`` (see
`core.audit.pipeline`); gaps are also recorded as a run with method ``audit-gaps``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

ANSWERS = ("core", "spurious_object", "spurious_background", "unsure")


def _target(p: argparse.ArgumentParser, *, split: str | None = None, split_required: bool = False) -> None:
    p.add_argument("--dataset", required=True, help="dataset name in the workspace")
    p.add_argument("--model", required=True, help="audited model name in the workspace")
    if split is not None or split_required:
        p.add_argument("--split", default=split, required=split_required and split is None,
                       help=f"split (default {split})" if split else "split, e.g. val or test")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    a = subparsers.add_parser("audit", parents=[common], help="run the whole audit (discover, labels, rank, gaps, report)")
    _target(a)
    a.add_argument("--k", type=int, default=5, help="top features per class (5)")
    a.add_argument("--label-source", default="auto", choices=("auto", "masks", "existing", "none"),
                   help="auto: machine labels from object masks when the dataset has them")
    a.add_argument("--eval-split", default=None, help="split for rankings and gaps (default val, else test)")
    a.add_argument("--quorum", type=int, default=None, help="answers needed for a verdict (default: majority)")
    a.add_argument("--device", default="auto")
    a.set_defaults(handler=_audit)

    d = subparsers.add_parser("discover", parents=[common], help="top-k features per class")
    _target(d, split="train")
    d.add_argument("--k", type=int, default=5)
    d.add_argument("--group-by", default="prediction", choices=("prediction", "label", "correct"))
    d.add_argument("--device", default="auto")
    d.set_defaults(handler=_discover)

    lab = subparsers.add_parser("label", parents=[common], help="add, import, export and inspect feature labels")
    lsub = lab.add_subparsers(dest="label_command", metavar="ACTION")
    lab.set_defaults(handler=lambda ctx: lab.print_help() or 2)
    add = lsub.add_parser("add", parents=[common], help="record one answer")
    _target(add)
    add.add_argument("--class", dest="class_index", type=int, required=True)
    add.add_argument("--feature", type=int, required=True)
    add.add_argument("--answer", choices=ANSWERS, required=True)
    add.add_argument("--annotator", required=True)
    add.add_argument("--note", default="")
    add.set_defaults(handler=_label_add)
    imp = lsub.add_parser("import", parents=[common], help="import answers from a CSV file")
    _target(imp)
    imp.add_argument("file", type=Path)
    imp.add_argument("--format", default="csv", choices=("csv", "salient-imagenet"))
    imp.add_argument("--annotator", default="", help="annotator for rows without one (csv)")
    imp.set_defaults(handler=_label_import)
    exp = lsub.add_parser("export", parents=[common], help="export every answer as CSV")
    _target(exp)
    exp.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")
    exp.set_defaults(handler=_label_export)
    show = lsub.add_parser("show", parents=[common], help="derived verdicts")
    _target(show)
    show.add_argument("--quorum", type=int, default=None)
    show.set_defaults(handler=_label_show)
    agr = lsub.add_parser("agreement", parents=[common], help="inter-annotator agreement (Cohen, Fleiss kappa)")
    _target(agr)
    agr.set_defaults(handler=_label_agreement)
    msk = lsub.add_parser("masks", parents=[common], help="machine labels from the dataset's object masks")
    _target(msk, split="train")
    msk.add_argument("--top-n", type=int, default=10)
    msk.add_argument("--device", default="auto")
    msk.set_defaults(handler=_label_masks)

    r = subparsers.add_parser("rank", parents=[common], help="spuriosity rankings of a split")
    _target(r, split_required=True)
    r.add_argument("--quorum", type=int, default=None)
    r.set_defaults(handler=_rank)

    g = subparsers.add_parser("gaps", parents=[common], help="spurious gaps (per class, pooled, bootstrap CI)")
    _target(g, split_required=True)
    g.add_argument("--models", nargs="*", default=[], help="other models to evaluate on the same ranking")
    g.add_argument("--k", type=int, default=None, help="slice size (default min(100, n/4), at most n/2)")
    g.add_argument("--n-boot", type=int, default=1000)
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(handler=_gaps)

    c = subparsers.add_parser("collisions", parents=[common], help="spurious features that are core elsewhere")
    _target(c)
    c.add_argument("--top-k", type=int, default=5)
    c.set_defaults(handler=_collisions)

    cr = subparsers.add_parser("crops", parents=[common], help="core crops of the high-spuriosity images")
    _target(cr, split_required=True)
    cr.add_argument("--fraction", type=float, default=0.2)
    cr.add_argument("--device", default="auto")
    cr.set_defaults(handler=_crops)

    s = subparsers.add_parser("sensitivity", parents=[common], help="accuracy drop under masked corruptions")
    _target(s, split_required=True)
    s.add_argument("--mask-from", default="core", choices=("core", "spurious", "object"))
    s.add_argument("--max-images", type=int, default=500)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.set_defaults(handler=_sensitivity)

    rep = subparsers.add_parser("report", parents=[common], help="self-contained HTML audit report")
    _target(rep, split_required=True)
    rep.add_argument("--max-classes", type=int, default=50)
    rep.add_argument("--attack-steps", type=int, default=0,
                     help="also show each feature's attack visualisation (e.g. 100 steps; 0 = none)")
    rep.add_argument("--device", default="cpu")
    rep.set_defaults(handler=_report)


def _audit(ctx) -> None:
    from core.audit.pipeline import run_audit

    a = ctx.args
    out = run_audit(ctx.workspace(), a.dataset, a.model, k=a.k, label_source=a.label_source,
                    eval_split=a.eval_split, quorum=a.quorum, device=a.device, progress=ctx.progress("audit"))
    p = out["pooled_gap"]
    ctx.emit(out, f"audit of {a.dataset}/{a.model} on {out['eval_split']}: pooled spurious gap "
                  f"{p.get('gap', float('nan')):+.3f} over {p.get('n_classes', 0)} ranked classes; "
                  f"{out['n_spurious_pairs']} spurious, {out['n_core_pairs']} core feature labels; "
                  f"report {out.get('report', '-')}")


def _discover(ctx) -> None:
    from core.audit.discover import DiscoveryConfig
    from core.audit.pipeline import run_discovery

    a = ctx.args
    res = run_discovery(ctx.workspace(), a.dataset, a.model, split=a.split,
                        config=DiscoveryConfig(k=a.k, group_by=a.group_by), device=a.device,
                        progress=ctx.progress("discover"))
    tab = res.table()
    ctx.emit({"top_features": res.top_features.tolist(), "group_by": res.group_by,
              "fallback_classes": res.fallback_classes, "table": tab.to_dict(orient="records")},
             tab.to_string(index=False))


def _label_add(ctx) -> None:
    from core.audit.labels import add_answers

    a = ctx.args
    n = add_answers(ctx.workspace(), a.dataset, a.model, [dict(class_index=a.class_index, feature=a.feature,
                                                             answer=a.answer, annotator=a.annotator, note=a.note)])
    ctx.emit({"written": n}, f"recorded {a.answer} for class {a.class_index} feature {a.feature}")


def _label_import(ctx) -> None:
    from core.audit.labels import import_labels_csv, import_salient_imagenet
    from core.errors import SpurAuditError

    a = ctx.args
    if not a.file.exists():
        raise SpurAuditError(f"file {a.file} does not exist")
    ws = ctx.workspace()
    if a.format == "salient-imagenet":
        n = import_salient_imagenet(ws, a.dataset, a.model, str(a.file))
    else:
        n = import_labels_csv(ws, a.dataset, a.model, str(a.file), default_annotator=a.annotator)
    ctx.emit({"written": n}, f"imported {n} answers")


def _label_export(ctx) -> None:
    from core.audit.labels import labels_to_csv

    a = ctx.args
    text = labels_to_csv(ctx.workspace().labels(a.dataset, a.model))
    if a.out is None:
        ctx.emit({"csv": text}, text.rstrip("\n"))
    else:
        a.out.write_text(text, encoding="utf-8")        # a user-chosen file outside the workspace
        ctx.emit({"path": str(a.out)}, f"wrote {a.out}")


def _label_show(ctx) -> None:
    from core.audit.pipeline import current_verdicts

    a = ctx.args
    vt = current_verdicts(ctx.workspace(), a.dataset, a.model, quorum=a.quorum)
    ctx.emit({"verdicts": vt.to_dict(orient="records")}, vt.to_string(index=False) if len(vt) else "no labels yet")


def _label_agreement(ctx) -> None:
    from core.audit.labels import agreement

    a = ctx.args
    res = agreement(ctx.workspace().labels(a.dataset, a.model))
    pairs = res["pairs"]
    ctx.emit({**res, "pairs": pairs.to_dict(orient="records")},
             f"Fleiss kappa {res['fleiss_kappa']:.3f} over {res['n_items']} items, {res['n_annotators']} annotators\n"
             + (pairs.to_string(index=False) if len(pairs) else "no annotator pairs"))


def _label_masks(ctx) -> None:
    from core.audit.labels import MaskLabelConfig
    from core.audit.pipeline import run_mask_labels

    a = ctx.args
    n = run_mask_labels(ctx.workspace(), a.dataset, a.model, split=a.split, config=MaskLabelConfig(top_n=a.top_n),
                        device=a.device, progress=ctx.progress("mask labels"))
    ctx.emit({"written": n}, f"wrote {n} machine labels (source masks)")


def _rank(ctx) -> None:
    from core.audit.pipeline import run_rankings

    a = ctx.args
    res = run_rankings(ctx.workspace(), a.dataset, a.model, split=a.split, quorum=a.quorum,
                       progress=ctx.progress("rank"))
    ranked = [c for c in range(res.num_classes) if c not in res.classes_without_spurious]
    ctx.emit({"ranked_classes": ranked, "classes_without_spurious": res.classes_without_spurious,
              "n": int(len(res.scores))},
             f"ranked {len(ranked)} classes of {a.split}; without spurious features (not ranked): "
             f"{res.classes_without_spurious or 'none'}")


def _gaps(ctx) -> None:
    from core.audit.gaps import GapConfig
    from core.audit.pipeline import run_gaps

    a = ctx.args
    out = run_gaps(ctx.workspace(), a.dataset, a.model, split=a.split, models=a.models,
                   config=GapConfig(k=a.k, n_boot=a.n_boot, seed=a.seed), progress=ctx.progress("gaps"))
    main = out["gaps"][a.model]
    lines = [main.per_class.to_string(index=False)]
    for name, r in out["gaps"].items():
        p = r.pooled
        lines.append(f"{name}: pooled gap {p['gap']:+.3f} (95% CI {p.get('ci_low', float('nan')):+.3f} .. "
                     f"{p.get('ci_high', float('nan')):+.3f}), {p['n_negative']} negative classes")
    if len(out["correlation"]) > 1:
        lines.append("correlation of per-class gaps:\n" + out["correlation"].to_string())
    ctx.emit({"pooled": {n: r.pooled for n, r in out["gaps"].items()},
              "per_class": main.per_class.to_dict(orient="records"),
              "correlation": out["correlation"].to_dict(), "run_id": out["run_id"]}, "\n".join(lines))


def _collisions(ctx) -> None:
    from core.audit.pipeline import run_collisions

    a = ctx.args
    df = run_collisions(ctx.workspace(), a.dataset, a.model, top_k=a.top_k)
    ctx.emit({"collisions": df.to_dict(orient="records")}, df.to_string(index=False) if len(df) else "no collisions")


def _crops(ctx) -> None:
    from core.audit.pipeline import run_core_crops

    a = ctx.args
    out = run_core_crops(ctx.workspace(), a.dataset, a.model, split=a.split, fraction=a.fraction, device=a.device,
                         progress=ctx.progress("core crops"))
    ctx.emit(out, f"core crops on {out['n']} high-spuriosity images: accuracy {out['acc_before']:.3f} -> "
                  f"{out['acc_after']:.3f}")


def _sensitivity(ctx) -> None:
    from core.audit.pipeline import run_sensitivity

    a = ctx.args
    t = run_sensitivity(ctx.workspace(), a.dataset, a.model, split=a.split, mask_from=a.mask_from,
                        max_images=a.max_images, seed=a.seed, device=a.device, progress=ctx.progress("sensitivity"))
    s = t[t.class_index == -1]
    ctx.emit({"summary": s.to_dict(orient="records"), "per_class": t.to_dict(orient="records")},
             s.to_string(index=False))


def _report(ctx) -> None:
    from core.report import write_report

    a = ctx.args
    path = write_report(ctx.workspace(), a.dataset, a.model, split=a.split, max_classes=a.max_classes,
                        attack_steps=a.attack_steps, device=a.device, progress=ctx.progress("report"))
    ctx.emit({"path": str(path)}, f"wrote {path}")
