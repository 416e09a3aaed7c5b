"""Object masks from Segment Anything (SAM), for IoU-based feature labels.

Seed 002 §1.3(a): the IoU between an object segmentation and a feature's soft activation mask tells
core from spurious automatically — a feature firing outside the object (low IoU) is spurious.

SAM is prompted with a box (by default the whole image minus a small margin, i.e. "the main object")
and returns three candidate masks with predicted quality; the best-scoring one is kept. The backend
`segment_anything` is imported only when a segmenter is built. Weights are loaded from a local
checkpoint path with ``torch.load(weights_only=True)``; ``checkpoint=None`` gives a random-init model
that exercises the code path (tests do that, and say so) but does not segment anything meaningful.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from core.audit.labels import mask_iou as batched_iou
from core.device import resolve_device
from core.errors import SpurAuditError, check_choice
from core.progress import ProgressFn, null_progress


def _build_tiny(checkpoint: None = None):
    """A small SAM for tests: SAM's own image encoder, prompt encoder and mask decoder classes at toy
    sizes (1 ViT block on 256-pixel inputs, 32-d prompts): ~0.1 s an image on this CPU, where the
    1,024-pixel encoder made the audit chain's SAM step of a 40-image test take ~70 s. ``checkpoint`` is unused (weights load in `SamSegmenter`)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    image_size, patch, dim = 256, 16, 32
    grid = image_size // patch                                   # 16 x 16 image embedding
    return Sam(
        image_encoder=ImageEncoderViT(img_size=image_size, patch_size=patch, embed_dim=64, depth=1, num_heads=2,
                                      mlp_ratio=4, out_chans=dim, qkv_bias=True, use_rel_pos=True, window_size=8,
                                      global_attn_indexes=(0,), norm_layer=partial(torch.nn.LayerNorm, eps=1e-6)),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(grid, grid),
                                     input_image_size=(image_size, image_size), mask_in_chans=8),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer_dim=dim, iou_head_depth=2,
                                 iou_head_hidden_dim=32,
                                 transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2)),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375]).eval()


def _registry() -> dict[str, Callable]:
    try:
        from segment_anything import sam_model_registry
    except ImportError as exc:  # pragma: no cover - exercised only without the optional backend
        raise SpurAuditError("SAM masks need segment-anything: pip install segment-anything") from exc
    return {"vit_b": sam_model_registry["vit_b"], "vit_l": sam_model_registry["vit_l"],
            "vit_h": sam_model_registry["vit_h"], "vit_tiny_test": _build_tiny}


SAM_MODEL_TYPES = ("vit_b", "vit_l", "vit_h", "vit_tiny_test")


@dataclass
class SamConfig:
    """``model_type`` names a SAM size; ``checkpoint`` a local ``sam_vit_*.pth`` (None = random init).

    ``box_margin`` is the fraction of each side left out of the default box prompt.
    """

    model_type: str = "vit_b"
    checkpoint: str | None = None
    box_margin: float = 0.05

    def __post_init__(self) -> None:
        check_choice("SAM model type", self.model_type, SAM_MODEL_TYPES)
        if not 0 <= self.box_margin < 0.5:
            raise SpurAuditError("box_margin must be in [0, 0.5)")


class SamSegmenter:
    """Segments the main object of RGB images (H, W, 3) uint8 into bool masks (H, W)."""

    def __init__(self, config: SamConfig | None = None, *, device: "str | torch.device" = "auto") -> None:
        self.config = config or SamConfig()
        self.device = resolve_device(device)
        builder = _registry()[self.config.model_type]
        model = builder(checkpoint=None)
        if self.config.checkpoint is not None:
            path = Path(self.config.checkpoint)
            if not path.is_file():
                raise SpurAuditError(f"SAM checkpoint {path} does not exist; download sam_vit_b_01ec64.pth "
                                     "(or the one matching --sam-type) and pass its path")
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as exc:
                raise SpurAuditError(f"SAM checkpoint {path.name} is not a readable PyTorch checkpoint "
                                     f"({type(exc).__name__}); give a sam_vit_*.pth file") from exc
            if not isinstance(state, dict):
                raise SpurAuditError(f"SAM checkpoint {path.name} holds a {type(state).__name__}, not a state dict; "
                                     "give a sam_vit_*.pth file")
            missing, unexpected = model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise SpurAuditError(
                    f"SAM checkpoint {path.name} does not match model type {self.config.model_type}: "
                    f"missing keys {list(missing)[:5]}, unexpected keys {list(unexpected)[:5]}; "
                    "pick the --sam-type that matches the file (vit_b, vit_l or vit_h)")
        from segment_anything import SamPredictor

        self.model = model.to(self.device).eval()
        self.predictor = SamPredictor(self.model)

    @torch.inference_mode()
    def object_mask(self, image: np.ndarray, *, box: "tuple[int, int, int, int] | None" = None) -> tuple[np.ndarray, float]:
        """The best of SAM's three masks for a box prompt, and its predicted IoU.

        Args:
            image: (H, W, 3) uint8 RGB.
            box: (x0, y0, x1, y1) in pixels; default the image minus ``box_margin`` on every side.
        Returns:
            (mask (H, W) bool, score float).
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise SpurAuditError(f"SAM needs (H, W, 3) uint8 RGB images, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        if box is None:
            mx, my = int(round(w * self.config.box_margin)), int(round(h * self.config.box_margin))
            box = (mx, my, w - 1 - mx, h - 1 - my)
        self.predictor.set_image(image)
        masks, scores, _ = self.predictor.predict(box=np.asarray(box, dtype=np.float32), multimask_output=True)
        best = int(np.argmax(scores))
        return masks[best].astype(bool), float(scores[best])

    def segment(self, images: Iterable[np.ndarray], *, progress: ProgressFn | None = None,
                total: int | None = None) -> list[np.ndarray]:
        """Object masks for many images (each (H, W, 3) uint8)."""
        progress = progress or null_progress
        out = []
        for i, image in enumerate(images):
            out.append(self.object_mask(image)[0])
            if total:
                progress((i + 1) / total, f"SAM masks {i + 1}/{total}")
        return out


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks of the same shape (1.0 when both are empty: they agree exactly).

    A scalar, shape-checked front to `core.audit.labels.mask_iou`, which computes it.
    """
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise SpurAuditError(f"masks differ in shape: {a.shape} vs {b.shape}")
    return 1.0 if not (a | b).any() else float(batched_iou(a, b))


__all__ = ["SamConfig", "SamSegmenter", "mask_iou", "SAM_MODEL_TYPES"]
