"""A checkpoint's classifier restricted to a dataset's classes (an ImageNet-1k model on a few ImageNet classes).

A robust ResNet-50 from the robustness library has 1,000 outputs in ImageNet's class order; a dataset of a
few ImageNet classes (wnid folders such as ``n01440764/``) has K of them. Evaluating such a model on the
subset means reading the K logits of those classes: the head's rows are selected, not re-initialised.

``head classes file``: the checkpoint's outputs in order, one per line, the first token of each line being
the class id (``n01440764 tench, Tinca tinca`` — ImageNet's ``LOC_synset_mapping.txt`` — or a bare id per
line). Dataset class ``c`` (its name) takes row ``index(name)``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from core.errors import SpurAuditError
from core.models.audit_model import AuditModel

__all__ = ["read_head_classes", "head_rows_for", "restrict_head"]


def read_head_classes(path: "str | Path") -> list[str]:
    """The class ids of a head classes file (see the module docstring), in output order."""
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise SpurAuditError(f"head classes file {p} does not exist; give the checkpoint's class list "
                             "(e.g. ImageNet's LOC_synset_mapping.txt: one class per line, its id first)")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise SpurAuditError(f"head classes file {p} is not text (UTF-8); give a list with one class id per line") from exc
    ids = [re.split(r"[\s,]+", line.strip(), maxsplit=1)[0] for line in lines if line.strip()]
    if not ids:
        raise SpurAuditError(f"head classes file {p} is empty; it needs one line per output of the checkpoint")
    seen: dict[str, int] = {}
    for i, cid in enumerate(ids):
        if cid in seen:
            raise SpurAuditError(f"head classes file {p}: class {cid!r} is listed twice (outputs {seen[cid]} and {i})")
        seen[cid] = i
    return ids


def head_rows_for(class_names: Sequence[str], head_classes: Sequence[str]) -> list[int]:
    """Row of ``head_classes`` for each dataset class name, (K,) ints in dataset class order."""
    where = {cid: i for i, cid in enumerate(head_classes)}
    missing = [name for name in class_names if name not in where]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise SpurAuditError(f"{len(missing)} dataset class(es) are not among the checkpoint's {len(head_classes)} "
                             f"head classes: {shown}; the dataset's class names must be the ids of the head "
                             "classes file (e.g. ImageNet wnids as folder names)")
    return [where[name] for name in class_names]


def restrict_head(model: AuditModel, rows: Sequence[int]) -> AuditModel:
    """Keep only the head outputs ``rows`` (in that order): logits (B, K) = full logits (B, N)[:, rows].

    In place; ``model.num_classes`` becomes K. The encoder is untouched."""
    rows = [int(r) for r in rows]
    n = model.num_classes
    if not rows:
        raise SpurAuditError("restrict_head needs at least one class row")
    bad = [r for r in rows if not 0 <= r < n]
    if bad:
        raise SpurAuditError(f"head rows {bad[:5]} are outside the checkpoint's {n} outputs")
    old = model.head
    new = nn.Linear(model.feature_dim, len(rows)).to(old.weight.device, old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(old.weight[rows])
        new.bias.copy_(old.bias[rows])
    model.head = new
    model.num_classes = len(rows)
    return model
