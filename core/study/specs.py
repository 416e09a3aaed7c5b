"""Which models a study evaluates, written as short strings (the CLI's ``--models a,b,c`` or one per
line of ``--models-file``):

- ``NAME`` — a model registered in the workspace (any registry architecture, trained or imported);
- ``<arch>@<checkpoint>`` — any registry architecture with a weights file, e.g.
  ``robust-resnet50@/ckpt/imagenet_l2_3_0.pt`` or ``resnet50@/ckpt/resnet50.pth``;
- ``timm:<name>@<checkpoint>`` — a timm model with a local state dict (its classifier must have the
  dataset's number of classes, e.g. 1000 for ImageNet);
- ``clip-zeroshot:<name>[@<tag or file>]`` — zero-shot open_clip (`core.models.clip_zeroshot`) over the
  dataset's class names; without ``@`` the model is random-init (tests only).

A line may start with ``LABEL=`` to name the model in the tables (default: the spec without its path).
Foreign models are assumed to use the dataset's class order (ImageNet ImageFolders list wnids sorted,
which is the standard order of ImageNet classifiers). Blank lines and ``#`` comments are skipped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from core.errors import SpurAuditError
from core.models.registry import MODEL_REGISTRY

_LABEL_RE = re.compile(r"^[A-Za-z0-9_.\-:+]+$")


@dataclass(frozen=True)
class ModelSpec:
    """One model of a study. ``source`` is "workspace" (``name`` = the workspace model) or "arch"
    (``arch`` built with ``checkpoint``, None = random init, allowed only for clip-zeroshot)."""

    label: str
    source: str
    name: str | None = None
    arch: str | None = None
    checkpoint: str | None = None
    text: str = ""

    def identity(self) -> str:
        """What the cached predictions depend on (the spec and the checkpoint file's size and mtime)."""
        stamp = ""
        if self.checkpoint and Path(self.checkpoint).expanduser().is_file():
            st = Path(self.checkpoint).expanduser().stat()
            stamp = f":{st.st_size}:{st.st_mtime_ns}"
        return f"{self.source}|{self.name or ''}|{self.arch or ''}|{self.checkpoint or ''}{stamp}"


def _arch_known(arch: str) -> bool:
    if arch in MODEL_REGISTRY and not arch.endswith(":"):
        return True
    family = arch.split(":", 1)[0] + ":" if ":" in arch else None
    return family in MODEL_REGISTRY and len(arch) > len(family)


def parse_model_spec(text: str, *, workspace_models: Iterable[str] = ()) -> ModelSpec:
    """One spec string -> `ModelSpec` (`SpurAuditError` naming the accepted forms when it is none of them)."""
    raw = str(text).strip()
    label = None
    if "=" in raw.split("@", 1)[0]:
        label, raw = (s.strip() for s in raw.split("=", 1))
        if not label or not _LABEL_RE.match(label):
            raise SpurAuditError(f"model label {label!r} in {text!r}: use letters, digits and _ . - : + only")
    if not raw:
        raise SpurAuditError(f"empty model spec {text!r}")
    known = set(workspace_models)
    if raw in known and "@" not in raw:
        return ModelSpec(label=label or raw, source="workspace", name=raw, text=str(text).strip())
    arch, _, ckpt = raw.partition("@")
    arch, ckpt = arch.strip(), ckpt.strip() or None
    if not _arch_known(arch):
        raise SpurAuditError(
            f"model {raw!r} is neither a workspace model ({', '.join(sorted(known)) or 'none yet'}) nor "
            "<arch>@<checkpoint> (arch one of the registry: python -m core model archs), timm:<name>@<checkpoint> "
            "or clip-zeroshot:<name>[@<tag or file>]")
    if ckpt is None and not arch.startswith("clip-zeroshot:"):
        raise SpurAuditError(f"model {raw!r} has no weights: write {arch}@/path/to/checkpoint (a random-init "
                             "classifier says nothing about spurious gaps); only clip-zeroshot may omit them")
    if ckpt is not None and ("/" in ckpt or ckpt.endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt"))) \
            and not Path(ckpt).expanduser().is_file():
        raise SpurAuditError(f"checkpoint {ckpt!r} of model {raw!r} does not exist; give an existing file")
    return ModelSpec(label=label or arch, source="arch", arch=arch, checkpoint=ckpt, text=str(text).strip())


def parse_model_specs(texts: Iterable[str], *, workspace_models: Iterable[str] = ()) -> list[ModelSpec]:
    """Several specs; labels made unique (``label``, ``label#2``, ...) in order."""
    known = list(workspace_models)
    out, seen = [], {}
    for t in texts:
        if not str(t).strip() or str(t).strip().startswith("#"):
            continue
        spec = parse_model_spec(t, workspace_models=known)
        n = seen.get(spec.label, 0) + 1
        seen[spec.label] = n
        if n > 1:
            spec = ModelSpec(**{**spec.__dict__, "label": f"{spec.label}#{n}"})
        out.append(spec)
    if not out:
        raise SpurAuditError("the study needs at least one model: --models a,b,c or --models-file FILE")
    return out


def read_models_file(path: str | Path) -> list[str]:
    """The spec lines of a models file (one per line; blank lines and ``#`` comments skipped)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise SpurAuditError(f"models file {str(p)!r} not found; write one model spec per line")
    lines = [ln.split(" #", 1)[0].strip() for ln in p.read_text(encoding="utf-8").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


__all__ = ["ModelSpec", "parse_model_spec", "parse_model_specs", "read_models_file"]
