"""`python -m core concepts ...`: CLIP concept spuriosity and CLIP / SAM-IoU feature labels."""
from __future__ import annotations

import argparse
from typing import Any

from core.concepts.clip import ClipConfig
from core.concepts.pipeline import run_clip_labels, run_clip_spuriosity, run_sam_labels
from core.concepts.sam import SamConfig
from core.concepts.vocabulary import load_per_class_file


def _clip_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clip-model", default="ViT-B-32", help="open_clip architecture (ViT-B-32, RN50, ...)")
    parser.add_argument("--clip-weights", default="openai",
                        help="open_clip pretrained tag (needs the weights cached or internet) or a local weights file")
    parser.add_argument("--concept", action="append", default=[], required=True,
                        help="a spurious concept, repeatable (e.g. --concept water --concept 'a beach')")
    parser.add_argument("--device", default="auto")


def _action(sub: Any, common: argparse.ArgumentParser, name: str, help: str, *,
            model: bool = False) -> argparse.ArgumentParser:
    """An action of ``concepts`` taking ``--dataset`` (and ``--model`` when ``model``)."""
    parser = sub.add_parser(name, parents=[common], help=help)
    parser.add_argument("--dataset", required=True)
    if model:
        parser.add_argument("--model", required=True)
    return parser


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    concepts = subparsers.add_parser("concepts", parents=[common],
                                     help="CLIP concept spuriosity, CLIP and SAM-IoU feature labels")
    sub = concepts.add_subparsers(dest="concepts_command", metavar="ACTION")

    score = _action(sub, common, "clip-rank", "spuriosity of every image of a split from CLIP similarity to "
                    "concept texts")
    score.add_argument("--split", default="val")
    score.add_argument("--core-concept", action="append", default=None,
                       help="a core concept whose presence lowers spuriosity, repeatable; used for every class "
                            "(default: each class's own name)")
    score.add_argument("--per-class", metavar="FILE", default=None,
                       help="CSV of per-class overrides with the header class,kind,text (one concept per row; "
                            "class = name or index, kind = spurious or core; a kind a class leaves out keeps "
                            "its default)")
    score.add_argument("--name", default=None, help="the ranking's name (default: from the concepts)")
    _clip_options(score)
    score.set_defaults(handler=_clip_rank)

    labels = _action(sub, common, "clip-labels", "CLIP suggestions (source clip) for the discovered (class, "
                     "feature) pairs", model=True)
    labels.add_argument("--top-n", type=int, default=5, help="top-activating images per feature")
    _clip_options(labels)
    labels.set_defaults(handler=_clip_labels)

    sam = _action(sub, common, "sam-labels", "label discovered features by IoU with SAM object masks (source "
                  "sam_iou)", model=True)
    sam.add_argument("--sam-type", default="vit_b", help="vit_b, vit_l or vit_h (matching the checkpoint)")
    sam.add_argument("--sam-checkpoint", required=True, help="path to sam_vit_*.pth")
    sam.add_argument("--split", default="train")
    sam.add_argument("--device", default="auto")
    sam.set_defaults(handler=_sam_labels)
    concepts.set_defaults(handler=lambda ctx: (concepts.print_help(), 0)[1])


def _clip_config(args: argparse.Namespace) -> ClipConfig:
    return ClipConfig(model_name=args.clip_model, pretrained=args.clip_weights or None)


def _clip_rank(ctx: Any) -> int:
    a = ctx.args
    per_class = load_per_class_file(a.per_class) if a.per_class else None
    out = run_clip_spuriosity(ctx.workspace(), a.dataset, concepts=a.concept, core_concepts=a.core_concept,
                              per_class=per_class, clip=_clip_config(a), split=a.split, name=a.name,
                              device=a.device,
                              progress=ctx.progress("CLIP concepts"))
    text = f"CLIP spuriosity of {out['n']} {a.split} images saved to {out['spuriosity']}"
    if out["per_class"]:
        text += f" ({len(out['per_class'])} class(es) with their own concepts)"
    if "auroc_aligned_vs_conflicting" in out:
        text += f"; AUROC aligned vs conflicting {out['auroc_aligned_vs_conflicting']:.3f}"
    ctx.emit(out, text)
    return 0


def _clip_labels(ctx: Any) -> int:
    a = ctx.args
    n = run_clip_labels(ctx.workspace(), a.dataset, a.model, concepts=a.concept, clip=_clip_config(a),
                        top_n=a.top_n, device=a.device, progress=ctx.progress("CLIP labels"))
    ctx.emit({"labels_written": n, "source": "clip"}, f"{n} CLIP suggestions written (source clip)")
    return 0


def _sam_labels(ctx: Any) -> int:
    a = ctx.args
    n = run_sam_labels(ctx.workspace(), a.dataset, a.model, sam=SamConfig(model_type=a.sam_type,
                                                                          checkpoint=a.sam_checkpoint),
                       split=a.split, device=a.device, progress=ctx.progress("SAM labels"))
    ctx.emit({"labels_written": n, "source": "sam_iou"}, f"{n} SAM-IoU labels written (source sam_iou)")
    return 0
