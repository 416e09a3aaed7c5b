"""The labelling-assets step: for the top-k discovered features of every class (or the chosen ones),
render the activation-map overlays of each feature's top-activating images and the feature attacks
of the first few into the workspace cache, batched, resumable (files that exist are kept) and on the
chosen device, so the Features page (and the report) only read thumbnails (issue 12).

Reads the audit's discovery through `core.audit.artifacts`, renders with `core.features.assets`
(the same files `core.features.maps.cached_overlay` / `cached_attack` give), and follows the Features
page's choices (`N_IMAGES` overlays and `N_ATTACK` attacks per feature, 100 attack steps, 128 px).
"""
from __future__ import annotations

from dataclasses import dataclass

from core.audit.artifacts import load_discovery
from core.errors import SpurAuditError
from core.features.assets import plan_pairs, render_attacks, render_overlays
from core.features.store import load_features
from core.models.checkpoints import load_workspace_model
from core.progress import ProgressFn, null_progress, sub_progress
from core.workspace import Workspace

__all__ = ["LabellingAssetsConfig", "render_labelling_assets", "N_IMAGES", "N_ATTACK", "ATTACK_STEPS", "ASSET_SIZE"]

N_IMAGES = 6          # overlays per feature (the Features page's top-activating images)
N_ATTACK = 3          # feature attacks per feature (the first images of those)
ATTACK_STEPS = 100
ASSET_SIZE = 128


@dataclass
class LabellingAssetsConfig:
    """classes: class indices (None = every class); k: top features per class (<= the discovery's k);
    split: the images shown (the Features page uses train); overlays / attacks: what to render;
    batch_size: images per forward pass (attacks: pairs per ascent loop); device."""

    classes: list[int] | None = None
    k: int = 5
    split: str = "train"
    n_images: int = N_IMAGES
    n_attack: int = N_ATTACK
    attack_steps: int = ATTACK_STEPS
    size: int = ASSET_SIZE
    overlays: bool = True
    attacks: bool = True
    batch_size: int = 32
    device: str = "auto"

    def validate(self) -> None:
        for name in ("k", "n_images", "size", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise SpurAuditError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.n_attack < 0 or self.attack_steps < 1:
            raise SpurAuditError("n_attack must be >= 0 and attack_steps >= 1")
        if not (self.overlays or self.attacks):
            raise SpurAuditError("nothing to render: turn on overlays or attacks")


def render_labelling_assets(ws: Workspace, dataset: str, model: str, config: LabellingAssetsConfig | None = None, *,
                            progress: ProgressFn | None = None) -> dict:
    """Render the assets; returns counts {classes, pairs, overlays, attacks, planned_overlays,
    planned_attacks} (overlays / attacks: files present at the end, cached before or rendered now)."""
    config = config or LabellingAssetsConfig()
    config.validate()
    progress = progress or null_progress
    disc = load_discovery(ws, dataset, model)
    K, kk = disc.top_features.shape
    classes = list(range(K)) if config.classes is None else [int(c) for c in config.classes]
    bad = [c for c in classes if not 0 <= c < K]
    if bad:
        raise SpurAuditError(f"classes {bad[:10]} are out of range: the discovery has classes 0..{K - 1}")
    k = min(int(config.k), kk)
    fs = load_features(ws, dataset, model, config.split)
    net = load_workspace_model(ws, model, device="cpu")
    if not getattr(net, "has_spatial_map", True):
        raise SpurAuditError(f"model {model!r} has no spatial feature map, so it has no activation maps or attacks")
    manifest = fs.manifest
    pairs = [(c, int(j)) for c in classes for j in disc.top_features[c, :k]]
    plan = plan_pairs(fs, pairs, n_images=config.n_images if config.overlays else 0,
                      n_attack=config.n_attack if config.attacks else 0)
    progress(0.01, f"{len(plan.overlays):,} overlays and {len(plan.attacks):,} attacks planned")
    split_at = 0.2 if plan.attacks else 1.0
    ov = render_overlays(ws, dataset, model, net, manifest, plan.overlays, size=config.size, device=config.device,
                         batch_size=config.batch_size, progress=sub_progress(progress, 0.01, split_at)) \
        if plan.overlays else {}
    at = render_attacks(ws, dataset, model, net, manifest, plan.attacks, size=config.size, steps=config.attack_steps,
                        device=config.device, batch_size=max(1, config.batch_size // 2),
                        progress=sub_progress(progress, split_at, 1.0)) if plan.attacks else {}
    progress(1.0, "labelling assets rendered")
    return {"classes": len(classes), "pairs": len(pairs), "overlays": len(ov), "attacks": len(at),
            "planned_overlays": len(plan.overlays), "planned_attacks": len(plan.attacks)}
