"""Importing feature labels (and Salient ImageNet's masks) into an audit: one config, a preview, the import.

The CLI (`label import`), the ``label-import`` job (`core.audit.jobs`) and the Features page's *Import
labels* form share `LabelImportConfig`:

- ``format="csv"``: SpurAudit's own labels CSV (`core.audit.labels.read_labels_csv`);
- ``format="salient-imagenet"``: Salient ImageNet's MTurk answers CSV
  (`core.audit.labels.read_salient_imagenet_csv`: the released file or the raw MTurk form; classes by
  ``Input.wordnet_id`` when the dataset's classes are wnids) and/or its masks folder ``masks``
  (`core.audit.salient_masks`: scanned, matched to the dataset, stored as the audit's masks artifact).

`preview_label_import` parses and scans without writing anything (counts for a person to check);
`run_label_import` writes the answers (one transaction) and the masks. Answers naming a class outside the
dataset are refused (the message gives the count and an example); answers or masks naming a feature that
is not among the class's discovered top features are imported and counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.audit.artifacts import has_discovery, load_discovery
from core.audit.labels import add_answers, read_labels_csv, read_salient_imagenet_csv
from core.audit.salient_masks import DEFAULT_SIDE, MaskScan, import_salient_masks, scan_salient_masks
from core.data import load_manifest
from core.data.manifest import SPLIT_NAMES, Manifest
from core.errors import SpurAuditError, check_choice
from core.progress import ProgressFn, null_progress, sub_progress
from core.workspace import Workspace

__all__ = ["LABEL_FORMATS", "LabelImportConfig", "preview_label_import", "run_label_import"]

LABEL_FORMATS = ("csv", "salient-imagenet")


@dataclass(kw_only=True)
class LabelImportConfig:
    """file: the answers CSV (None: masks only, salient-imagenet); format: one of `LABEL_FORMATS`;
    annotator: for csv rows without one; masks: Salient ImageNet masks folder (salient-imagenet only);
    mask_split: the split the masks' images are in (None = any; needed when stems repeat across splits);
    mask_side: stored mask side in pixels. device: the job's device (`core.jobs.submit` records one;
    the import itself reads files on the CPU)."""

    dataset: str = ""
    model: str = ""
    file: str | None = None
    format: str = "csv"
    annotator: str = ""
    masks: str | None = None
    mask_split: str | None = None
    mask_side: int = DEFAULT_SIDE
    device: str = "cpu"

    def validate(self) -> None:
        if not self.dataset or not self.model:
            raise SpurAuditError("label import needs a dataset and a model")
        check_choice("label format", self.format, LABEL_FORMATS)
        if self.masks and self.format != "salient-imagenet":
            raise SpurAuditError("a masks folder comes with the salient-imagenet format; pass --format "
                                 "salient-imagenet")
        if not self.file and not self.masks:
            raise SpurAuditError("nothing to import: give the answers CSV file (and, for Salient ImageNet, "
                                 "optionally its masks folder)")
        if self.mask_split is not None and self.mask_split not in SPLIT_NAMES:
            raise SpurAuditError(f"unknown mask split {self.mask_split!r}; valid choices: {', '.join(SPLIT_NAMES)}")
        if not 8 <= int(self.mask_side) <= 512:
            raise SpurAuditError(f"mask side must be in 8..512 pixels (got {self.mask_side})")


def _answer_rows(config: LabelImportConfig, class_names: list[str]) -> tuple[list[dict], dict]:
    """(answer rows, how classes were mapped: {"mapped_by", "skipped_answers", "skipped_classes",
    "skipped_examples"})."""
    path = Path(str(config.file)).expanduser()
    if not path.is_file():
        raise SpurAuditError(f"labels file {path} does not exist (or is a folder); check the path")
    try:
        with path.open(encoding="utf-8") as fh:
            if config.format == "salient-imagenet":
                res = read_salient_imagenet_csv(fh, class_names=class_names)
                return res.rows, {"mapped_by": res.mapped_by, "skipped_answers": sum(res.skipped.values()),
                                  "skipped_classes": len(res.skipped), "skipped_examples": sorted(res.skipped)[:5]}
            return read_labels_csv(fh, default_annotator=config.annotator), {"mapped_by": "class_index"}
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SpurAuditError(f"{path.name} is not a readable CSV file ({type(exc).__name__}: {exc}); "
                             f"give the {'Salient ImageNet answers' if config.format != 'csv' else 'labels'} CSV") from None


def _discovered(ws: Workspace, dataset: str, model: str) -> dict[int, list[int]] | None:
    if not has_discovery(ws, dataset, model):
        return None
    top = load_discovery(ws, dataset, model).top_features
    return {c: [int(j) for j in top[c]] for c in range(top.shape[0])}


def _answers_summary(rows: list[dict], num_classes: int, discovered: dict[int, list[int]] | None) -> dict:
    pairs = {(int(r["class_index"]), int(r["feature"])) for r in rows}
    outside = sorted({c for c, _ in pairs if not 0 <= c < num_classes})
    not_disc = None if discovered is None else sorted(p for p in pairs if p[1] not in discovered.get(p[0], ()))
    answers = pd.Series([r["answer"] for r in rows]).value_counts().to_dict() if rows else {}
    return {"answers": len(rows), "pairs": len(pairs), "classes": len({c for c, _ in pairs}),
            "annotators": len({r.get("annotator") for r in rows}), "by_answer": answers,
            "classes_outside_dataset": len(outside), "classes_outside_examples": outside[:5],
            "pairs_not_discovered": None if not_disc is None else len(not_disc),
            "not_discovered_examples": [list(p) for p in (not_disc or [])[:5]]}


def _answers(ws: Workspace, config: LabelImportConfig, discovered: dict[int, list[int]] | None) -> tuple[list[dict], dict]:
    """(answer rows of ``config.file``, their counts and class mapping) — what preview and import both report."""
    class_names = ws.get_dataset(config.dataset).class_names
    rows, mapping = _answer_rows(config, class_names)
    return rows, {**_answers_summary(rows, len(class_names), discovered), **mapping}


def _answer_lines(s: dict) -> list[str]:
    out = [f"{s['answers']:,} answers from {s['annotators']:,} annotators on {s['pairs']:,} (class, feature) pairs "
           f"of {s['classes']:,} classes ({', '.join(f'{k} {v:,}' for k, v in s['by_answer'].items())})"]
    if s.get("mapped_by") == "wordnet_id":
        out.append("classes taken from Input.wordnet_id (the dataset's class of each wnid)"
                   + (f"; {s['skipped_answers']:,} answers on {s['skipped_classes']:,} wnids that are not classes of "
                      f"the dataset skipped (e.g. {', '.join(s['skipped_examples'])})" if s.get("skipped_answers") else ""))
    if s["classes_outside_dataset"]:
        out.append(f"{s['classes_outside_dataset']:,} class indices are outside the dataset (e.g. "
                   f"{s['classes_outside_examples']}): refused")
    if s["pairs_not_discovered"] is None:
        out.append("features not checked against the discovered ones (no discovery yet)")
    elif s["pairs_not_discovered"]:
        out.append(f"{s['pairs_not_discovered']:,} pairs name a feature that is not among the class's discovered "
                   f"top features (imported anyway; e.g. {[tuple(p) for p in s['not_discovered_examples']]})")
    return out


def _scan(ws: Workspace, config: LabelImportConfig, discovered: dict[int, list[int]] | None,
          progress: ProgressFn | None) -> tuple[MaskScan, Manifest]:
    manifest = load_manifest(ws, config.dataset)
    splits = [config.mask_split] if config.mask_split else None
    return scan_salient_masks(config.masks, manifest, splits=splits, discovered=discovered,
                              progress=progress), manifest


def preview_label_import(ws: Workspace, config: LabelImportConfig, *, progress: ProgressFn | None = None) -> dict:
    """What `run_label_import` would write, nothing written: {"answers": counts | None, "masks": scan
    summary | None, "lines": sentences, "ok": False when the import would be refused}."""
    config.validate()
    ws.get_model(config.model)                       # an unknown model: the error lists the known ones
    discovered = _discovered(ws, config.dataset, config.model)
    out: dict = {"answers": None, "masks": None, "lines": [], "ok": True}
    if config.file:
        _, s = _answers(ws, config, discovered)
        out["answers"] = s
        out["lines"] += _answer_lines(s)
        out["ok"] = s["classes_outside_dataset"] == 0
    if config.masks:
        scan, _ = _scan(ws, config, discovered, progress)
        out["masks"] = scan.summary()
        out["lines"] += scan.lines()
        out["ok"] = out["ok"] and len(scan.matched) > 0
        if not len(scan.matched):
            out["lines"].append("no mask matches an image of the dataset: nothing to import")
    return out


def run_label_import(ws: Workspace, config: LabelImportConfig, *, progress: ProgressFn | None = None) -> dict:
    """Write the answers and/or the masks (see the module docstring); returns {"written": answers written,
    "answers": counts | None, "masks": import summary | None, "lines": sentences}."""
    config.validate()
    progress = progress or null_progress
    ws.get_model(config.model)                       # an unknown model: the error lists the known ones
    discovered = _discovered(ws, config.dataset, config.model)
    num_classes = len(ws.get_dataset(config.dataset).class_names)
    out: dict = {"written": 0, "answers": None, "masks": None, "lines": []}
    rows = None
    if config.file:
        rows, s = _answers(ws, config, discovered)
        if s["classes_outside_dataset"]:
            raise SpurAuditError(
                f"{s['classes_outside_dataset']} class indices of {Path(str(config.file)).name} are outside the "
                f"dataset's {num_classes} classes (e.g. {s['classes_outside_examples']}); the CSV must use the "
                "dataset's class indices (a Salient ImageNet CSV with Input.wordnet_id is mapped by wnid when the "
                "dataset's classes are wnid folders)")
        out["answers"] = s
        out["lines"] += _answer_lines(s)
    if config.masks:                     # masks first: a layout error leaves the answers unwritten too
        scan, manifest = _scan(ws, config, discovered, sub_progress(progress, 0.0, 0.1))
        if not len(scan.matched):
            raise SpurAuditError("no mask of " + str(config.masks) + " matches an image of dataset "
                                 f"{config.dataset!r}: " + "; ".join(scan.lines()))
        res = import_salient_masks(ws, config.dataset, config.model, scan, manifest.root, side=config.mask_side,
                                   progress=sub_progress(progress, 0.1, 0.95))
        out["masks"] = res
        out["lines"] += scan.lines() + [f"stored {res['stored']:,} masks at {res['side']} px"]
        if res["unreadable"]:
            out["lines"].append(f"{res['unreadable']:,} mask files could not be read, skipped (e.g. "
                                f"{'; '.join(res['unreadable_examples'])})")
        if res["mismatched"]:
            out["lines"].append(f"{res['mismatched']:,} masks fit neither their image nor its centre square, "
                                f"skipped (e.g. {'; '.join(res['mismatched_examples'])})")
    if rows is not None:
        out["written"] = add_answers(ws, config.dataset, config.model, rows)
        out["lines"].append(f"imported {out['written']:,} answers")
    progress(1.0, "labels imported")
    return out
