"""The embedded demo: two complete audits built from data that ships inside Python packages.

1. ``textures``: digits-on-textures (digit = object/class, real texture = background/bias, ρ = 0.95,
   exact object masks). The audited model mirrors seed 002's setting: a robust (L2-PGD) encoder
   trained on an unbiased pool with digit and texture labels (shipped in ``assets/demo_encoder/``),
   frozen, with a linear head trained on the biased training split. The audit discovers the top
   features per class, labels them automatically from the object masks, ranks images by spuriosity,
   measures spurious gaps, and the demo compares low-spuriosity head tuning with error tuning.
2. ``cmnist``: Colored MNIST with 1 % bias-conflicting training images, a small CNN adversarially
   trained on it (robust features), its features, top features per class, and a debiasing comparison
   (ERM vs DCWP).

Every step is idempotent: what already exists in the workspace is reused, so running the demo twice
costs seconds. ``quick=True`` shrinks every size and budget to a seconds-scale run (tests use it).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from core.audit.artifacts import has_discovery, load_summary
from core.audit.pipeline import run_discovery
from core.data import build_dataset, load_manifest
from core.features.extract import extract_splits
from core.metrics import evaluate_predictions
from core.mitigate.metrics import model_outputs
from core.mitigate.presets import load_preset
from core.mitigate.runner import run_comparison, run_mitigation
from core.models import ProbeConfig, TrainConfig, build_model, save_workspace_model, train_linear_probe
from core.models.demo_encoder import DEMO_HEAD
from core.models.workspace_models import train_workspace_model
from core.progress import ProgressFn, null_progress, sub_progress
from core.report import run_audit

TEXTURES_DATASET = "textures"
TEXTURES_MODEL = "textures-robust"
CMNIST_DATASET = "cmnist-1pct"
CMNIST_MODEL = "cmnist-robust"


def demo_settings(quick: bool) -> dict[str, Any]:
    """The demo's sizes and budgets (``assets/presets/demo.json``, its "quick" or "full" entry):
    ``textures_sizes`` / ``cmnist_sizes`` (builder options), ``textures_probe`` (head options over the
    shipped recipe), ``cmnist_epochs``, ``comparison_methods`` and ``method_configs`` (per method)."""
    return load_preset("demo")["quick" if quick else "full"]


@dataclass
class DemoConfig:
    """Sizes and budgets (`demo_settings`); `quick` shrinks them all."""

    quick: bool = False
    seed: int = 0

    @property
    def settings(self) -> dict[str, Any]:
        return demo_settings(self.quick)

    @property
    def textures_sizes(self) -> dict[str, int]:
        return dict(self.settings["textures_sizes"])

    @property
    def textures_probe(self) -> dict[str, Any]:
        return dict(self.settings["textures_probe"])

    @property
    def cmnist_sizes(self) -> dict[str, int]:
        return dict(self.settings["cmnist_sizes"])

    @property
    def cmnist_epochs(self) -> int:
        return int(self.settings["cmnist_epochs"])

    @property
    def comparison_methods(self) -> list[str]:
        return list(self.settings["comparison_methods"])

    @property
    def method_configs(self) -> dict[str, dict[str, Any]]:
        """Budgets per compared method."""
        configs = self.settings["method_configs"]
        return {m: c for m, c in configs.items() if m in self.comparison_methods}


def _train_cmnist_model(ws, cfg: DemoConfig, *, device: str, progress: ProgressFn) -> None:
    # L2-PGD adversarial training (ε = 0.5 in [0, 1] pixel space) makes the features "robust", as the
    # spuriosity method wants; the biased training data still makes the model lean on colour.
    train_cfg = TrainConfig(epochs=cfg.cmnist_epochs, lr=1e-3, adv_eps=0.5, adv_steps=3, seed=cfg.seed)
    train_workspace_model(ws, CMNIST_MODEL, dataset=CMNIST_DATASET, arch="small_cnn", config=train_cfg,
                          device=device, progress=progress)


def _train_textures_model(ws, cfg: DemoConfig, *, device: str, progress: ProgressFn) -> None:
    manifest = load_manifest(ws, TEXTURES_DATASET)
    model = build_model("demo_cnn", num_classes=len(manifest.class_names), pretrained="shipped").eval()
    x, y = manifest.split("train").load_tensors()
    vx, vy = manifest.split("val").load_tensors()
    _, feats = model_outputs(model, x, device=device)
    # The seed paper's head recipe (SGD lr 1e-3, 20 epochs, no validation selection): trained on the
    # biased split it leans on the texture, which is the model the audit is meant to catch.
    probe_cfg = ProbeConfig(**{**DEMO_HEAD, **cfg.textures_probe}, seed=cfg.seed)
    head = train_linear_probe(feats, y, num_classes=len(manifest.class_names), config=probe_cfg,
                              device=device, progress=progress)
    model.set_head(head)
    val = manifest.split("val")
    logits, _ = model_outputs(model, vx, device=device)
    metrics = evaluate_predictions(logits.argmax(1), vy, bias=val.bias, aligned=val.aligned)
    save_workspace_model(ws, TEXTURES_MODEL, model.cpu(), dataset=TEXTURES_DATASET,
                         config={"encoder": "assets/demo_encoder (frozen)", "probe": probe_cfg, "demo": True},
                         metrics={f"val_{k}": v for k, v in metrics.items()})


def run_demo(ws, *, quick: bool = False, device: str = "auto", progress: ProgressFn | None = None) -> dict:
    """Build both demo audits in ``ws``; returns a summary with the numbers and where things are."""
    cfg = DemoConfig(quick=quick)
    progress = progress or null_progress
    start = time.perf_counter()
    summary: dict[str, Any] = {"workspace": str(ws.root), "quick": quick, "steps": []}

    def step(name: str, lo: float, hi: float, done: bool, fn) -> None:
        part = sub_progress(progress, lo, hi)
        if done:
            summary["steps"].append({"step": name, "status": "reused"})
            part(1.0, f"{name}: already there")
            return
        t0 = time.perf_counter()
        part(0.0, name)
        fn(part)
        summary["steps"].append({"step": name, "status": "done", "seconds": round(time.perf_counter() - t0, 1)})

    # --- digits on textures: the full audit ----------------------------------------------------------
    step("build dataset textures", 0.00, 0.05, ws.has_dataset(TEXTURES_DATASET),
         lambda p: build_dataset(ws, "digits-on-textures", TEXTURES_DATASET, seed=cfg.seed, rho=0.95,
                                 progress=p, **cfg.textures_sizes))
    step("train textures head on the shipped robust encoder", 0.05, 0.12, ws.has_model(TEXTURES_MODEL),
         lambda p: _train_textures_model(ws, cfg, device=device, progress=p))
    have = {(f.dataset, f.model, f.split) for f in ws.list_feature_sets()}
    step("extract textures features", 0.12, 0.2,
         all((TEXTURES_DATASET, TEXTURES_MODEL, s) in have for s in ("train", "val", "test")),
         lambda p: extract_splits(ws, TEXTURES_DATASET, TEXTURES_MODEL, "all", device=device, progress=p))
    audit_done = load_summary(ws, TEXTURES_DATASET, TEXTURES_MODEL) is not None
    step("audit textures (discover, mask labels, rank, gaps, report)", 0.2, 0.45, audit_done,
         lambda p: summary.__setitem__("textures_audit", run_audit(ws, TEXTURES_DATASET, TEXTURES_MODEL,
                                                                   device=device, progress=p)))
    if "textures_audit" not in summary:
        summary["textures_audit"] = load_summary(ws, TEXTURES_DATASET, TEXTURES_MODEL) or {}
    done_methods = {r.method for r in ws.list_runs(dataset=TEXTURES_DATASET, model=TEXTURES_MODEL)
                    if r.status == "done"}
    for i, method in enumerate(("head-tuning", "error-tuning")):
        step(f"{method} on textures", 0.45 + 0.03 * i, 0.48 + 0.03 * i, method in done_methods,
             lambda p, m=method: run_mitigation(ws, dataset=TEXTURES_DATASET, model=TEXTURES_MODEL, method=m,
                                                seed=cfg.seed, device=device, progress=p))

    # --- colored MNIST: robust small CNN and a debiasing comparison ----------------------------------
    step("build dataset cmnist-1pct", 0.51, 0.55, ws.has_dataset(CMNIST_DATASET),
         lambda p: build_dataset(ws, "colored-mnist", CMNIST_DATASET, seed=cfg.seed, conflict=0.01, progress=p,
                                 **cfg.cmnist_sizes))
    step("adversarially train small_cnn on cmnist-1pct", 0.55, 0.72, ws.has_model(CMNIST_MODEL),
         lambda p: _train_cmnist_model(ws, cfg, device=device, progress=p))
    have = {(f.dataset, f.model, f.split) for f in ws.list_feature_sets()}
    step("extract cmnist features", 0.72, 0.75,
         all((CMNIST_DATASET, CMNIST_MODEL, s) in have for s in ("train", "val", "test")),
         lambda p: extract_splits(ws, CMNIST_DATASET, CMNIST_MODEL, "all", device=device, progress=p))
    step("discover cmnist features", 0.75, 0.78,
         has_discovery(ws, CMNIST_DATASET, CMNIST_MODEL),
         lambda p: run_discovery(ws, CMNIST_DATASET, CMNIST_MODEL, device=device, progress=p))
    compared = any(r.method == "compare" and r.status == "done"
                   for r in ws.list_runs(dataset=CMNIST_DATASET, model=CMNIST_MODEL))
    step("compare " + ", ".join(cfg.comparison_methods) + " on cmnist-1pct", 0.78, 1.0, compared,
         lambda p: run_comparison(ws, dataset=CMNIST_DATASET, model=CMNIST_MODEL, methods=cfg.comparison_methods,
                                  seeds=(cfg.seed,), configs=cfg.method_configs, device=device, progress=p))

    summary["runs"] = [{"id": r.id, "method": r.method, "dataset": r.dataset, "status": r.status,
                        "metrics": _headline(r.metrics)} for r in ws.list_runs()]
    summary["wall_time_s"] = round(time.perf_counter() - start, 1)
    summary["report"] = summary.get("textures_audit", {}).get("report")
    summary["dashboard"] = f"python -m streamlit run dashboard/app.py -- --workspace {ws.root}"
    progress(1.0, "demo ready")
    return summary


def _headline(metrics: dict) -> dict:
    """The few numbers worth printing for a run."""
    out = {}
    for split in ("val", "test"):
        block = metrics.get(split) or {}
        for key in ("accuracy", "unbiased_accuracy", "conflicting_accuracy"):
            if isinstance(block.get(key), (int, float)):
                out[f"{split}_{key}"] = round(float(block[key]), 4)
    gaps = metrics.get("gaps") or {}
    for key in ("before", "after"):
        if isinstance(gaps.get(key), (int, float)):
            out[f"gap_{key}"] = round(float(gaps[key]), 4)
    return out


__all__ = ["DemoConfig", "demo_settings", "run_demo"]
