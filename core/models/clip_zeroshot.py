"""``clip-zeroshot:<name>``: a zero-shot CLIP classifier as an `AuditModel` (issue 14's model families).

The head is built from text, not trained: for each class name, the prompts ``template.format(name)`` of a
template ensemble are encoded with the CLIP text tower, L2-normalised, averaged and re-normalised (CLIP's
prompt ensembling); the head weight is ``logit_scale × those class embeddings`` (K, E) with zero bias.
The encoder is the open_clip image tower followed by L2 normalisation, so
``logits = logit_scale · cos(image, class prompt)``. Features are the normalised image embeddings (no
spatial map). Only the image tower is kept after the head is built.

open_clip is a heavy optional backend, imported inside the builder. Weights: an open_clip tag whose files
are already cached, a local checkpoint path, or None (random init — for tests only; then the "zero-shot"
head is random too).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import SpurAuditError
from core.models.audit_model import AuditModel
from core.models.clip_tower import OPENAI_MEAN, OPENAI_STD
from core.models.registry import register_model

#: a short ensemble drawn from CLIP's 80 ImageNet templates (Radford et al. 2021, "prompt engineering")
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.", "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
    "a rendering of a {}.", "a cropped photo of the {}.", "a photo of the large {}.", "a photo of the small {}.",
    "a bright photo of a {}.", "a blurry photo of a {}.", "itap of a {}.", "art of the {}.",
)


class _NormalizedImageEncoder(nn.Module):
    """open_clip image tower -> L2-normalised embedding (B, E)."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.visual(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return F.normalize(out.float(), dim=-1)


@torch.no_grad()
def class_prompt_embeddings(model: Any, tokenizer: Any, class_names: Sequence[str],
                            templates: Sequence[str]) -> torch.Tensor:
    """(K, E) float32 unit vectors: per class, the mean of its normalised prompt embeddings, re-normalised."""
    rows = []
    for name in class_names:
        prompts = [t.format(str(name).replace("_", " ")) for t in templates]
        emb = F.normalize(model.encode_text(tokenizer(prompts)).float(), dim=-1).mean(0)
        rows.append(F.normalize(emb, dim=-1))
    return torch.stack(rows)


def _check_templates(templates: Sequence[str]) -> list[str]:
    out = [str(t) for t in templates]
    if not out or any("{}" not in t for t in out):
        raise SpurAuditError("zero-shot templates must be a non-empty list of strings that each contain '{}' "
                             "(where the class name goes), e.g. 'a photo of a {}.'")
    return out


@register_model("clip-zeroshot:")
def build_clip_zeroshot(*, name: str, num_classes: int, pretrained: str | Path | None = None,
                        class_names: Sequence[str] | None = None, templates: Sequence[str] | None = None,
                        **kwargs: Any) -> AuditModel:
    """Zero-shot classifier over ``class_names`` (K = ``num_classes`` of them) with open_clip model ``name``.

    ``pretrained``: an open_clip tag (cached weights), a local checkpoint path, or None (random init, tests).
    ``templates``: prompt templates with ``{}`` (default `DEFAULT_TEMPLATES`). ``kwargs`` go to
    ``open_clip.create_model_and_transforms``. ``class_names`` and ``templates`` are stored in the config,
    so a saved model rebuilds with the same head (the head is also in the state dict).
    """
    try:
        import open_clip
    except ImportError as exc:  # pragma: no cover - open-clip-torch is a dependency
        raise SpurAuditError("arch 'clip-zeroshot:<name>' needs open-clip-torch; pip install open-clip-torch") from exc
    if not name or name not in open_clip.list_models():
        raise SpurAuditError(f"unknown open_clip model {name!r} for clip-zeroshot; see open_clip.list_models() "
                             "(e.g. clip-zeroshot:ViT-B-32)")
    names = [str(c) for c in (class_names or [])]
    if len(names) != int(num_classes) or any(not c.strip() for c in names):
        raise SpurAuditError(f"clip-zeroshot needs one non-empty class name per class: got {len(names)} names for "
                             f"{num_classes} classes; register the dataset with its class names")
    temps = _check_templates(templates if templates is not None else DEFAULT_TEMPLATES)
    tag = None if pretrained is None else str(pretrained)
    if tag is not None and ("/" in tag or tag.endswith((".pt", ".pth", ".bin", ".safetensors"))) \
            and not Path(tag).expanduser().is_file():
        raise SpurAuditError(f"CLIP checkpoint {tag!r} not found; pass an existing file or an open_clip tag")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=tag, device="cpu", **kwargs)
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpurAuditError(f"could not build open_clip model {name!r} with pretrained={tag!r}: {msg}. Offline, "
                             "pass a local checkpoint path or a tag whose weights are cached") from exc
    model.eval()
    text = class_prompt_embeddings(model, open_clip.get_tokenizer(name), names, temps)     # (K, E)
    scale = float(model.logit_scale.detach().exp().clamp(max=100.0)) if hasattr(model, "logit_scale") else 100.0
    visual = model.visual
    norm = None
    for t in getattr(preprocess, "transforms", []) or []:
        if type(t).__name__ == "Normalize":
            norm = (tuple(float(v) for v in t.mean), tuple(float(v) for v in t.std))
    mean, std = norm if norm is not None else (OPENAI_MEAN, OPENAI_STD)
    size = getattr(visual, "image_size", 224)
    size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    out = AuditModel(arch=f"clip-zeroshot:{name}", config={"class_names": names, "templates": temps, **kwargs},
                     encoder=_NormalizedImageEncoder(visual), feature_dim=int(text.shape[1]),
                     num_classes=int(num_classes), mean=mean, std=std, has_spatial_map=False, resize=size)
    with torch.no_grad():
        out.head.weight.copy_(text * scale)
        out.head.bias.zero_()
    out.eval()
    del model  # drop the text tower
    return out


__all__ = ["DEFAULT_TEMPLATES", "build_clip_zeroshot", "class_prompt_embeddings"]
