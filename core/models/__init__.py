"""Models: `AuditModel` (encoder + spatial feature map + linear head), the registry and its builders,
checkpoints, training.

Importing this package registers every architecture: the registry (`core.models.registry`) is a leaf
and each builder module registers itself when imported below (the order is the order
`available_models` lists). timm and open_clip are imported only inside the builders that need them.
"""
from core.models.audit_model import AuditModel, Normalize, set_head
from core.models.registry import MODEL_REGISTRY, available_models, build_model, register_model
from core.models import small_nets, resnet, robust, demo_encoder, timm_models, clip_tower, clip_zeroshot  # noqa: F401,E501  (register)
from core.models.attacks import l2_pgd_attack
from core.models.batches import evaluate_accuracy, predict_logits
from core.models.checkpoints import (load_model, load_workspace_model, model_checkpoint, model_checkpoint_rel,
                                     model_from_checkpoint, save_model, save_workspace_model)
from core.models.linear import ProbeConfig, train_linear_probe
from core.models.losses import gce_loss
from core.models.train import TrainConfig, TrainResult, train_model
from core.models.workspace_models import train_workspace_model

__all__ = [
    "AuditModel", "Normalize", "set_head", "gce_loss", "MODEL_REGISTRY", "available_models", "build_model",
    "load_model", "save_model", "load_workspace_model", "save_workspace_model", "model_checkpoint_rel",
    "model_checkpoint", "model_from_checkpoint", "register_model",
    "ProbeConfig", "TrainConfig", "TrainResult", "evaluate_accuracy", "l2_pgd_attack", "predict_logits",
    "train_linear_probe", "train_model", "train_workspace_model",
]
