"""open_clip image tower as an `AuditModel` encoder (``arch="clip:<model-name>"``).

Features = the CLIP image embedding (``model.visual(x)``, (B, embed_dim), before L2 normalisation);
there is no spatial map (CLIP ResNets pool with attention and ViTs with a class token, so the
embedding is not a global average of any conv map). Inputs in [0, 1] are resized to the tower's
image size and normalised with CLIP's mean/std inside the model. Only the image tower is kept.
Registered on import as the ``clip:`` family; open_clip (a heavy optional backend) is imported inside
the builder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.errors import SpurAuditError
from core.models.audit_model import AuditModel
from core.models.registry import register_model

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class _ClipImageEncoder(nn.Module):
    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.visual(x)
        if isinstance(out, (tuple, list)):  # towers configured to also return tokens
            out = out[0]
        return out  # (B, embed_dim)


def _normalize_from_transform(preprocess: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    for t in getattr(preprocess, "transforms", []) or []:
        if type(t).__name__ == "Normalize":
            return tuple(float(v) for v in t.mean), tuple(float(v) for v in t.std)
    return None


@register_model("clip:")
def build_clip_model(*, name: str, num_classes: int, pretrained: str | Path | None = None,
                     **kwargs: Any) -> AuditModel:
    """Build ``clip:<name>`` with ``open_clip.create_model_and_transforms(name, pretrained=tag_or_path)``.

    Args:
        name: an open_clip model name (``open_clip.list_models()``) or one added with
            ``open_clip.add_model_config``.
        pretrained: an open_clip pretrained tag (needs the weights in the local cache; no downloads
            offline), a local checkpoint path, or None (random init, for tests).
        **kwargs: passed to ``create_model_and_transforms`` (e.g. ``force_image_size``); stored in config.
    """
    try:
        import open_clip
    except ImportError as exc:  # pragma: no cover - open-clip-torch is a dependency
        raise SpurAuditError("arch 'clip:<name>' needs open-clip-torch; pip install open-clip-torch") from exc
    if not name:
        raise SpurAuditError("clip arch needs a model name, e.g. 'clip:ViT-B-32'; see open_clip.list_models()")
    if name not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if name.split("-")[0].lower() in m.lower()][:8]
        raise SpurAuditError(f"unknown open_clip model {name!r}; similar names: {', '.join(close) or '(none)'}; "
                             "see open_clip.list_models()")
    tag = None if pretrained is None else str(Path(pretrained).expanduser()) if isinstance(pretrained, Path) else str(pretrained)
    if tag is not None and ("/" in tag or tag.endswith((".pt", ".pth", ".bin", ".safetensors"))) \
            and not Path(tag).expanduser().is_file():
        raise SpurAuditError(f"CLIP checkpoint {tag!r} not found; pass an existing file or an open_clip tag")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=tag, device="cpu", **kwargs)
    except SpurAuditError:
        raise
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpurAuditError(
            f"could not build open_clip model {name!r} with pretrained={tag!r}: {msg}. Offline, pass a local "
            "checkpoint path (or a tag whose weights are already cached), or pretrained=None for random init") from exc
    visual = model.visual
    norm = _normalize_from_transform(preprocess)
    mean, std = norm if norm is not None else (OPENAI_MEAN, OPENAI_STD)
    size = getattr(visual, "image_size", 224)
    size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    encoder = _ClipImageEncoder(visual)
    encoder.eval()
    feature_dim = getattr(visual, "output_dim", None)
    if not isinstance(feature_dim, int) or feature_dim < 1:
        with torch.no_grad():
            feature_dim = int(encoder(torch.zeros(1, 3, *size)).shape[-1])
    del model  # drop the text tower
    return AuditModel(arch=f"clip:{name}", config=dict(kwargs), encoder=encoder, feature_dim=feature_dim,
                      num_classes=num_classes, mean=mean, std=std, has_spatial_map=False, resize=size)
