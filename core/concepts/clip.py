"""CLIP concept scores: how strongly a concept a person names ("water", "grass") is present in an image.

Seed 002 §1.3(b): the cosine similarity between an image's CLIP embedding and a concept text's
embedding measures that concept's presence directly, so it can serve as a spuriosity score (higher =
more of the spurious concept) and as a machine suggestion for a feature's label.

The backend is `open_clip`, imported only when a scorer is built. Weights come from
``pretrained=`` (an open_clip tag such as ``"openai"`` when online or cached, or a local ``.pt`` /
``.safetensors`` file); ``pretrained=None`` builds a random-init model, which exercises every code path
but gives meaningless scores (tests use it that way, and say so).
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.device import resolve_device
from core.errors import SpurAuditError
from core.progress import ProgressFn, null_progress

DEFAULT_TEMPLATES = ("a photo of {}.", "a photo containing {}.", "{}")


@dataclass
class ClipConfig:
    """Which CLIP to build. ``model_name`` is an open_clip architecture (``ViT-B-32``, ``RN50``...)."""

    model_name: str = "ViT-B-32"
    pretrained: str | None = "openai"
    batch_size: int = 64
    templates: tuple[str, ...] = DEFAULT_TEMPLATES


def _weights_error(pretrained: str | None, model_name: str, exc: BaseException) -> str:
    """The message for CLIP weights that would not load: a file that is no checkpoint, a checkpoint of
    another architecture (the first of its key mismatches, not the whole list), or a tag not cached."""
    detail = " ".join(str(exc).split())
    if pretrained and Path(pretrained).is_file():
        name = Path(pretrained).name
        if "state_dict" in detail:
            return (f"CLIP weights file {name} does not fit the architecture {model_name}: {detail[:300]}...; pick the "
                    "CLIP model the file was saved from (its open_clip name)")
        # (torch's own text for an unreadable file suggests weights_only=False, which this code never does)
        return (f"CLIP weights file {name} is not a readable PyTorch / safetensors checkpoint "
                f"({type(exc).__name__}); give the weights file of an open_clip model")
    return (f"could not load CLIP weights {pretrained!r} for {model_name}: {detail[:300]}. Without internet, pass a "
            "local weights file with --clip-weights PATH (or pretrained=None for a random-init test model)")


class ClipScorer:
    """Embeds images and texts with one open_clip model and scores concepts.

    Images enter as float tensors (N, 3, H, W) in [0, 1]; they are resized to the model's input size
    and normalised with the model's own mean/std.
    """

    def __init__(self, config: ClipConfig | None = None, *, device: "str | torch.device" = "auto") -> None:
        self.config = config or ClipConfig()
        self.device = resolve_device(device)
        try:
            import open_clip
        except ImportError as exc:  # pragma: no cover - exercised only without the optional backend
            raise SpurAuditError("CLIP concepts need open_clip: pip install open-clip-torch") from exc
        pretrained = self.config.pretrained
        if pretrained and (Path(pretrained).suffix in {".pt", ".bin", ".safetensors", ".pth"}) and not Path(pretrained).exists():
            raise SpurAuditError(f"CLIP weights file {pretrained} does not exist; pass an existing file or an open_clip tag")
        if self.config.model_name not in open_clip.list_models():
            raise SpurAuditError(f"unknown CLIP architecture {self.config.model_name!r}; "
                                 f"known: {', '.join(open_clip.list_models()[:12])}, ...")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                self.config.model_name, pretrained=pretrained or None, device=self.device)
        except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, KeyError, OSError) as exc:
            raise SpurAuditError(_weights_error(pretrained, self.config.model_name, exc)) from exc
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(self.config.model_name)
        visual = model.visual
        size = getattr(visual, "image_size", 224)
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        mean = getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
        std = getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
        self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)

    @torch.inference_mode()
    def embed_images(self, images: torch.Tensor, *, progress: ProgressFn | None = None) -> torch.Tensor:
        """L2-normalised image embeddings (N, E) float32 for images (N, 3, H, W) in [0, 1]."""
        progress = progress or null_progress
        if images.ndim != 4 or images.shape[1] != 3:
            raise SpurAuditError(f"images must be (N, 3, H, W) RGB in [0, 1], got {tuple(images.shape)}")
        out = []
        bs = self.config.batch_size
        for start in range(0, len(images), bs):
            x = images[start:start + bs].to(self.device, torch.float32)
            x = F.interpolate(x, size=self.image_size, mode="bicubic", align_corners=False).clamp(0, 1)
            x = (x - self._mean) / self._std
            out.append(F.normalize(self.model.encode_image(x).float(), dim=-1).cpu())
            progress(min(1.0, (start + bs) / len(images)), "CLIP image embeddings")
        return torch.cat(out) if out else torch.empty(0, 0)

    @torch.inference_mode()
    def embed_texts(self, concepts: Sequence[str]) -> torch.Tensor:
        """L2-normalised concept embeddings (T, E): each concept averaged over the prompt templates."""
        if not concepts or any(not str(c).strip() for c in concepts):
            raise SpurAuditError("concept texts must be non-empty strings, e.g. 'water' or 'a grassy background'")
        templates = self.config.templates
        prompts = [t.format(concept) for concept in concepts for t in templates]      # (T * P,) concept-major
        # batched: a per-class run embeds one core text per class (1,000 classes = 1,000+ texts)
        step = max(1, self.config.batch_size)
        emb = torch.cat([F.normalize(self.model.encode_text(self.tokenizer(prompts[i:i + step]).to(self.device)).float(),
                                     dim=-1).cpu() for i in range(0, len(prompts), step)])    # (T * P, E)
        emb = emb.view(len(concepts), len(templates), -1).mean(1)                       # (T, E) template mean
        return F.normalize(emb, dim=-1)

    def concept_scores(self, images: torch.Tensor, concepts: Sequence[str], *,
                       progress: ProgressFn | None = None) -> np.ndarray:
        """Cosine similarity (N, T) float32 between each image and each concept (higher = more present)."""
        img = self.embed_images(images, progress=progress)
        txt = self.embed_texts(concepts)
        return (img @ txt.T).numpy().astype(np.float32)


def concept_spuriosity(scores: np.ndarray, labels: np.ndarray, *, spurious: Sequence[int],
                       core: Sequence[int] = ()) -> np.ndarray:
    """Spuriosity from CLIP concept scores with the same concept columns for every class, z-scored
    within each class (`class_concept_spuriosity` with one column list shared by all classes).

    Args:
        scores: (N, T) concept similarities from `ClipScorer.concept_scores`.
        labels: (N,) class of each image.
        spurious: columns of ``scores`` holding spurious concepts (averaged).
        core: optional columns of core concepts, subtracted (presence of the object lowers spuriosity).

    Returns (N,) float32: higher = stronger spurious concept relative to the rest of its class.
    """
    if not spurious:
        raise SpurAuditError("name at least one spurious concept column")
    classes = np.unique(np.asarray(labels))
    return class_concept_spuriosity(scores, labels, spurious={c: spurious for c in classes},
                                    core={c: core for c in classes})


def class_concept_spuriosity(scores: np.ndarray, labels: np.ndarray, *, spurious: Mapping[int, Sequence[int]],
                             core: Mapping[int, Sequence[int]] | None = None) -> np.ndarray:
    """Per-class concept spuriosity: each class is measured with its own spurious and core concepts.

    For an image i of class c:  raw_i = mean_{t in spurious[c]} scores[i, t] − mean_{t in core[c]} scores[i, t]
    (the core term is 0 when ``core[c]`` is empty or absent), then z-scored among the images of class c
    (a class whose raw values are all equal gets 0s, not a division by zero).

    Args:
        scores: (N, T) concept similarities (e.g. `ClipScorer.concept_scores` over the union of every
            class's concept texts).
        labels: (N,) class of each image.
        spurious: class -> columns of ``scores`` with that class's spurious concepts. A class of
            ``labels`` missing here (or with no columns) is not ranked: NaN for its images.
        core: class -> columns of that class's core concepts, subtracted (more of the object = less spurious).

    Returns (N,) float32: higher = more of the class's spurious concepts, less of its core ones,
    relative to the rest of the class; NaN for the images of classes without spurious columns.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 2 or len(scores) != len(labels):
        raise SpurAuditError(f"scores must be (N, T) with N = len(labels); got {scores.shape} and {len(labels)}")
    core = core or {}
    n_cols = scores.shape[1]
    for kind, table in (("spurious", spurious), ("core", core)):
        for c, cols in table.items():
            bad = [int(t) for t in cols if not 0 <= int(t) < n_cols]
            if bad:
                raise SpurAuditError(f"class {c}: {kind} concept columns {bad} are outside the {n_cols} score columns")
    out = np.full(len(labels), np.nan)
    for c in np.unique(labels):
        cols = list(spurious.get(c, ()))
        if not cols:
            continue
        sel = labels == c
        raw = scores[np.ix_(sel, cols)].mean(1)                     # (n_c,)
        core_cols = list(core.get(c, ()))
        if core_cols:
            raw = raw - scores[np.ix_(sel, core_cols)].mean(1)
        std = raw.std()
        out[sel] = (raw - raw.mean()) / (std if std > 0 else 1.0)
    return out.astype(np.float32)


def suggest_feature_labels(scorer: ClipScorer, feature_images: dict[tuple[int, int], torch.Tensor], *,
                           class_names: Sequence[str], concepts: Sequence[str],
                           progress: ProgressFn | None = None) -> list[dict]:
    """Machine suggestions (source ``clip``) for (class, feature) pairs.

    For each pair, the images that most activate the feature (typically masked by its activation map)
    are compared with the class name and with each spurious concept. The suggestion is
    ``spurious_background`` when the best concept beats the class name on average, else ``core``; the
    score is the margin (concept − class similarity; > 0 leans spurious).

    Returns rows ready for `Workspace.add_labels` minus dataset/model.
    """
    progress = progress or null_progress
    concept_emb = scorer.embed_texts(list(concepts))
    class_emb = scorer.embed_texts([str(n) for n in class_names])
    rows = []
    for i, ((c, j), images) in enumerate(sorted(feature_images.items())):
        if not 0 <= c < len(class_names):
            raise SpurAuditError(f"class index {c} out of range for {len(class_names)} classes")
        emb = scorer.embed_images(images)
        class_sim = float((emb @ class_emb[c]).mean())
        concept_sim = (emb @ concept_emb.T).mean(0)
        best = int(concept_sim.argmax())
        margin = float(concept_sim[best]) - class_sim
        rows.append({"class_index": int(c), "feature": int(j),
                     "answer": "spurious_background" if margin > 0 else "core",
                     "annotator": f"clip:{scorer.config.model_name}", "source": "clip", "score": margin,
                     "note": f"closest concept: {concepts[best]}"})
        progress((i + 1) / len(feature_images), f"CLIP suggestions {i + 1}/{len(feature_images)}")
    return rows
