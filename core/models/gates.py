"""Learned weight masks (gates) for pruning-based debiasing: DCWP and FFW.

A gate is a `torch.nn.utils.parametrize` parametrization on a layer's ``weight``: the model code
stays unchanged, ``layer.weight`` simply becomes ``original_weight * gate``. One module serves both
methods:

* ``kind="dcwp"`` (Park et al., CVPR 2023): one logit ``m`` per weight, initialised to 1.5. In
  training the gate is a Gumbel-sigmoid sample ``s = sigmoid((m + log u - log(1-u)) / tau)``,
  ``u ~ U(0, 1)``, hardened to ``1[s > 0.5]`` with a straight-through gradient (forward hard,
  backward through ``s``). The sparsity regulariser is ``sum(m)``. Final mask: ``m >= 0``.
* ``kind="ffw"`` (Nahon et al., ECCV 2024): one real gate ``m`` per weight (or per output channel
  when ``structured=True``), initialised to 0. The effective multiplier is
  ``min(1, 2 sigmoid(m / T))``; the backward pass uses the derivative of the *unclamped*
  ``2 sigmoid(m / T)`` (straight-through past the clamp), so gates above 0 still receive gradient.
  ``T`` is annealed towards 0 by the caller. Final mask: ``m >= 0``.

Only ``nn.Conv2d`` and ``nn.Linear`` weights are gated (never BatchNorm, never biases). The pretrained
weights are frozen; only gate parameters train. `GatedModel` wraps the model and, like captum's
stochastic gates, returns ``(output, reg)`` from ``forward`` and exposes ``mask()``.

In ``eval()`` mode every gate is the hard, deterministic final mask (``m >= 0``), so evaluation
always sees the model that would be exported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from core.errors import SpurAuditError, check_choice

GATE_KINDS = ("dcwp", "ffw")
GATEABLE = (nn.Conv2d, nn.Linear)
GUMBEL_INPUTS = ("score", "sigmoid")


@dataclass
class GateConfig:
    """How gates are attached.

    kind: "dcwp" (Gumbel-sigmoid logits) or "ffw" (clamped 2·sigmoid(m/T)).
    init: initial gate value; None = the method's default (1.5 for dcwp, 0.0 for ffw).
    tau: Gumbel temperature (dcwp). temperature: T (ffw), changed during training by the caller.
    structured: one gate per output channel/neuron instead of per weight.
    """

    kind: str = "dcwp"
    init: float | None = None
    tau: float = 1.0
    temperature: float = 1.0
    structured: bool = False
    gumbel_input: str = "score"

    def __post_init__(self) -> None:
        check_choice("gate kind", self.kind, GATE_KINDS)
        check_choice("gumbel_input", self.gumbel_input, GUMBEL_INPUTS)
        if self.tau <= 0 or self.temperature <= 0:
            raise SpurAuditError("gate temperatures must be > 0 (tau, temperature)")
        if self.init is None:
            self.init = 1.5 if self.kind == "dcwp" else 0.0


class WeightGate(nn.Module):
    """Parametrization ``weight -> weight * gate(m)`` for one layer.

    ``scores`` has the weight's shape, or ``(out, 1, ...)`` when structured (broadcast over fan-in).
    """

    def __init__(self, weight_shape: torch.Size, config: GateConfig) -> None:
        super().__init__()
        self.kind = config.kind
        self.tau = float(config.tau)
        self.gumbel_input = config.gumbel_input
        self.temperature = float(config.temperature)
        shape = (weight_shape[0],) + (1,) * (len(weight_shape) - 1) if config.structured else tuple(weight_shape)
        self.scores = nn.Parameter(torch.full(shape, float(config.init)))

    def hard_mask(self) -> torch.Tensor:
        """The final binary mask (float 0/1): kept where the score is >= 0."""
        return (self.scores >= 0).to(self.scores.dtype)

    def gate(self) -> torch.Tensor:
        """The multiplier applied to the weight in the current mode (train or eval)."""
        if not self.training:
            return self.hard_mask()
        if self.kind == "dcwp":
            # Gumbel-sigmoid: logistic noise log u - log(1-u), u ~ U(0,1), with hard straight-through.
            u = torch.rand_like(self.scores).clamp_(1e-6, 1 - 1e-6)
            logit = self.scores if self.gumbel_input == "score" else torch.sigmoid(self.scores)
            soft = torch.sigmoid((logit + torch.log(u) - torch.log1p(-u)) / self.tau)
            hard = (soft > 0.5).to(soft.dtype)
            return hard + soft - soft.detach()
        # FFW: forward min(1, 2σ(m/T)); backward through the unclamped 2σ(m/T).
        unclamped = 2.0 * torch.sigmoid(self.scores / self.temperature)
        return unclamped + (unclamped.clamp(max=1.0) - unclamped).detach()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.gate()


class FixedMask(nn.Module):
    """Parametrization ``weight -> weight * mask`` with a fixed binary mask (a pruned model).

    Used to fine-tune only the surviving weights (DCWP stage 3) and to load a pruned model: the
    pruned weights receive zero gradient through the product and stay exactly zero in the output.
    """

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.detach().to(torch.float32).clone())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask.to(weight.dtype)


def gateable_layers(model: nn.Module, *, exclude: Iterable[nn.Module] = ()) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every Conv2d/Linear in ``model`` whose weight can be gated, minus ``exclude``."""
    excluded = set()
    for module in exclude:
        excluded.update(id(m) for m in module.modules())
    return [(name, m) for name, m in model.named_modules() if isinstance(m, GATEABLE) and id(m) not in excluded]


class GatedModel(nn.Module):
    """A model whose Conv2d/Linear weights are gated; ``forward(x) -> (output, reg)``.

    Attaching gates freezes every parameter of ``model`` (the pretrained weights stay fixed); only
    ``gate_parameters()`` are trainable. At init the gated model computes exactly what the original
    did in eval mode (dcwp: all logits 1.5 >= 0; ffw: min(1, 2σ(0)) = 1).

    ``reg`` is the sparsity regulariser: the sum of all gate scores for dcwp (the paper's
    λ_sparse·Σm term; minimising it pushes scores down), and 0 for ffw (FFW has no sparsity term).
    """

    def __init__(self, model: nn.Module, config: GateConfig | None = None, *,
                 exclude: Iterable[nn.Module] = ()) -> None:
        super().__init__()
        self.config = config or GateConfig()
        self.model = model
        for p in model.parameters():
            p.requires_grad_(False)
        self._gated: dict[str, nn.Module] = {}
        layers = gateable_layers(model, exclude=exclude)
        if not layers:
            raise SpurAuditError("the model has no Conv2d/Linear layers to gate")
        for name, layer in layers:
            if parametrize.is_parametrized(layer, "weight"):
                raise SpurAuditError(f"layer {name!r} is already gated or masked; remove its parametrization first")
            parametrize.register_parametrization(layer, "weight", WeightGate(layer.weight.shape, self.config))
            self._gated[name] = layer

    def gates(self) -> Iterator[tuple[str, WeightGate]]:
        for name, layer in self._gated.items():
            yield name, layer.parametrizations.weight[0]

    def gate_parameters(self) -> list[nn.Parameter]:
        return [gate.scores for _, gate in self.gates()]

    def set_temperature(self, temperature: float) -> None:
        """Set T for every FFW gate (annealing)."""
        if temperature <= 0:
            raise SpurAuditError("temperature must be > 0")
        for _, gate in self.gates():
            gate.temperature = float(temperature)

    def regularizer(self) -> torch.Tensor:
        if self.config.kind == "dcwp":
            return torch.stack([gate.scores.sum() for _, gate in self.gates()]).sum()
        return torch.zeros((), device=next(iter(self.gate_parameters())).device)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(x), self.regularizer()

    def mask(self) -> dict[str, torch.Tensor]:
        """Final binary masks (bool, the weight's shape) keyed by layer name."""
        masks = {}
        for name, layer in self._gated.items():
            gate = layer.parametrizations.weight[0]
            masks[name] = (gate.hard_mask().bool()).expand_as(layer.parametrizations.weight.original).clone()
        return masks

    def sparsity(self) -> float:
        """Fraction of gated weights pruned by the final mask."""
        masks = self.mask()
        total = sum(m.numel() for m in masks.values())
        kept = sum(int(m.sum()) for m in masks.values())
        return 1.0 - kept / max(total, 1)

    def release(self, *, trainable: bool = True) -> nn.Module:
        """Remove the gates and put fixed binary masks (`FixedMask`) in their place.

        Returns the underlying model with its original weights (not reset) and the final masks;
        with ``trainable=True`` its parameters are unfrozen for fine-tuning the surviving weights.
        """
        masks = self.mask()
        for name, layer in self._gated.items():
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
        self._gated = {}
        apply_masks(self.model, masks)
        for p in self.model.parameters():
            p.requires_grad_(trainable)
        return self.model


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Attach fixed binary masks (layer name -> bool tensor of the weight's shape) to ``model``.

    Raises `SpurAuditError` naming the layers that do not exist or whose shapes differ.
    """
    modules = dict(model.named_modules())
    missing = [n for n in masks if n not in modules]
    if missing:
        raise SpurAuditError(f"masks name layers the model does not have: {missing[:5]}; "
                             "were they saved from a different architecture?")
    for name, mask in masks.items():
        layer = modules[name]
        weight = layer.parametrizations.weight.original if parametrize.is_parametrized(layer, "weight") else layer.weight
        if tuple(mask.shape) != tuple(weight.shape):
            raise SpurAuditError(f"mask for {name!r} has shape {tuple(mask.shape)}, weight has {tuple(weight.shape)}")
        if parametrize.is_parametrized(layer, "weight"):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
        parametrize.register_parametrization(layer, "weight", FixedMask(mask.to(weight.device)))
    return model


def masks_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The fixed binary masks attached to ``model`` by `apply_masks` (bool tensors)."""
    out = {}
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            for p in module.parametrizations.weight:
                if isinstance(p, FixedMask):
                    out[name] = p.mask.bool().clone()
    return out


def masked_state(model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """``{"state_dict": plain weights with pruned entries zeroed, "masks": {...}}`` for saving.

    The plain state dict loads into an unmasked model of the same architecture; the masks let
    `apply_masks` restore the pruning structure for further fine-tuning.
    """
    masks = masks_of(model)
    with torch.no_grad():
        state = {}
        for key, value in model.state_dict().items():
            if ".parametrizations.weight.original" in key:
                layer = key.replace(".parametrizations.weight.original", "")
                state[f"{layer}.weight"] = value * masks[layer].to(value.dtype) if layer in masks else value
            elif key.endswith(".parametrizations.weight.0.mask"):
                continue
            else:
                state[key] = value
    return {"state_dict": state, "masks": masks}


def sparsity_of_masks(masks: dict[str, torch.Tensor]) -> float:
    """Fraction of zeros over all masks (0 = nothing pruned)."""
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    return 1.0 - kept / max(total, 1)
