"""Benchmark: audit quality on the digits-on-textures demo, where the ground truth is known.

    python benchmarks/audit_quality.py [--quick] [--json] [--encoder DIR] [--threads 1] [--out FILE]
    python benchmarks/audit_quality.py --train-encoder DIR [--epochs 20] [--threads 1]   # rebuild the encoder

Protocol (seed 002's robust-backbone + linear-head setting):
1. The demo encoder (`core.models.demo_encoder`; shipped in ``assets/demo_encoder/``), adversarially
   trained (L2-PGD) on unbiased digits-on-textures with a digit head and a texture head, is frozen.
   ``digit_accuracy`` = its digit head on the val digits composited on uniform textures (rho = 0.1).
2. digits-on-textures is generated in memory (`generate_digits_on_textures`, the builder's pixels):
   train rho = 0.95, val rho_eval = 0.5; plus the same training digits with rho = 0.1.
3. A linear head (`train_linear_probe`, SGD lr 1e-3 momentum 0.9, 20 epochs, batch 128, no val
   selection; `HEAD`) is fitted on the frozen features of the biased train split (the audited model) and one on
   the rho = 0.1 train split (the control).
4. `discover_features` (group by prediction) gives the top-5 features per class of the biased model.
   Ground truth by intervention (`intervention_labels`): spurious when swapping the texture moves the
   feature more than removing the digit. ``core_fraction`` / ``spurious_fraction`` of the 50.
5. Labels from masks: `auto_labels_from_masks` (IoU of the binarised activation map with the object
   mask, on the top-10 activating val images of the class); their agreement with the intervention truth.
6. Spuriosity of val images from the mask-labelled spurious features (`compute_spuriosity`);
   ``auroc`` = AUROC of the score for bias-aligned vs bias-conflicting val images (pooled; per-class mean
   also reported). Spurious gaps (`spurious_gaps`, k = n/4 per class) of the biased model
   (``gap_biased``) and of the control (``gap_unbiased``), mean over classes, in points.

Targets (issue): digit_accuracy >= 0.90, core and spurious each >= 20 % of the top-50, auroc >= 0.9,
gap_biased >= 30, gap_unbiased <= 10. ``--quick``: 2,000 training digits, same val (well under a minute).

Measured 2026-11-22 (2 shared CPU cores, shipped encoder, seed 0; k = 12 of 50 val images per class):

    run     digit  core  spur  auroc  gap_biased (95% CI)  gap_unbiased  | lr 1e-2 head: biased / unbiased
    full    0.962  0.24  0.76  0.969  70.8 (56.6..83.4)    -0.8          |               17.5 / 0.0
    quick   0.962  0.22  0.78  0.969  79.2                  0.8          |               34.2 / 0.0
    seed 1  (full)     0.20  0.80  0.971  75.8               2.5          |               21.7
    seed 2  (full)     0.26  0.74  1.000  69.8               3.1          |               15.6

(seeds 1/2 re-split the 5,000 digits, so some of their val digits were encoder training digits.)
Mask-IoU labels agree with the intervention truth on 92.5 % of the 40 decided (class, feature) pairs
(12 core, 28 spurious, 10 unsure). The reference head recipe (lr 1e-2) on 4,000 images gives a less
biased model (conflicting val accuracy 0.85 vs 0.44 at lr 1e-3) whose gap, 17.5, misses the 30 bar.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

#: The audited heads' recipe: SGD momentum 0.9, batch 128, 20 epochs at lr 1e-3 (the seed's head-tuning
#: learning rate). With the reference head recipe's lr 1e-2 (HEAD_REFERENCE, also reported) the 4,000-image
#: head trains long enough to pick up the digit features from the 5 % conflicting images and is less
#: biased; the audit itself is unchanged (see the report keys ``*_lr0.01``).
from core.models.demo_encoder import DEMO_HEAD as HEAD  # noqa: E402  {"lr": 1e-3, "epochs": 20}
HEAD_REFERENCE = {"lr": 1e-2, "epochs": 20}
TARGETS = {"digit_accuracy": (">=", 0.90), "core_fraction": (">=", 0.20), "spurious_fraction": (">=", 0.20),
           "auroc": (">=", 0.90), "gap_biased": (">=", 30.0), "gap_unbiased": ("<=", 10.0)}


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


@torch.no_grad()
def _features(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    xt = torch.from_numpy(x)
    return torch.cat([model.features(xt[i:i + batch_size]) for i in range(0, len(xt), batch_size)]).numpy()


def _group_acc(pred: np.ndarray, labels: np.ndarray, aligned: np.ndarray) -> dict:
    ok = pred == labels
    return {"accuracy": float(ok.mean()), "aligned_accuracy": float(ok[aligned].mean()),
            "conflicting_accuracy": float(ok[~aligned].mean())}


def run(*, quick: bool, encoder_dir: Path | None, seed: int = 0, quiet: bool = False) -> dict:
    from sklearn.metrics import roc_auc_score

    from core.audit.discover import DiscoveryConfig, discover_features
    from core.audit.gaps import GapConfig, spurious_gaps
    from core.audit.labels import MaskLabelConfig, auto_labels_from_masks
    from core.audit.spuriosity import compute_spuriosity
    from core.data.synthetic.textures import TextureComposer, generate_digits_on_textures
    from core.models.demo_encoder import (ASSET_DIR, as_audit_model, evaluate_encoder, intervention_effects,
                                          intervention_labels, load_demo_encoder, unbiased_eval_set)
    from core.models.linear import ProbeConfig, train_linear_probe

    t0 = time.time()
    encoder, meta = load_demo_encoder(encoder_dir or ASSET_DIR)
    composer = TextureComposer()
    ex, ey, et, _ = unbiased_eval_set(n=meta["metrics"].get("eval_n", 500), seed=meta["config"]["seed"],
                                      composer=composer)
    enc_metrics = evaluate_encoder(encoder, ex, ey, et)
    _log(f"encoder: digit {enc_metrics['digit_accuracy']:.3f} texture {enc_metrics['texture_accuracy']:.3f}", quiet)

    n_train = 2000 if quick else None
    biased = generate_digits_on_textures(seed=seed, rho=0.95, rho_eval=0.5, n_train=n_train,
                                         splits=("train", "val"), composer=composer)
    control = generate_digits_on_textures(seed=seed, rho=0.1, n_train=n_train, splits=("train",),
                                          composer=composer)
    tr, va, tr0 = biased["train"], biased["val"], control["train"]
    model = as_audit_model(encoder).eval()
    f_tr, f_va, f_tr0 = _features(model, tr.images), _features(model, va.images), _features(model, tr0.images)
    _log(f"features {f_tr.shape} ({time.time() - t0:.0f}s)", quiet)

    probe = ProbeConfig(seed=seed, **HEAD)
    head_b = train_linear_probe(f_tr, tr.labels, num_classes=10, config=probe, device="cpu")
    head_u = train_linear_probe(f_tr0, tr0.labels, num_classes=10, config=probe, device="cpu")
    ref = ProbeConfig(seed=seed, **HEAD_REFERENCE)
    head_b_ref = train_linear_probe(f_tr, tr.labels, num_classes=10, config=ref, device="cpu")
    head_u_ref = train_linear_probe(f_tr0, tr0.labels, num_classes=10, config=ref, device="cpu")
    with torch.no_grad():
        logit_tr = head_b(torch.from_numpy(f_tr)).numpy()
        pred_va_b = head_b(torch.from_numpy(f_va)).argmax(1).numpy()
        pred_va_u = head_u(torch.from_numpy(f_va)).argmax(1).numpy()
        pred_va_b_ref = head_b_ref(torch.from_numpy(f_va)).argmax(1).numpy()
        pred_va_u_ref = head_u_ref(torch.from_numpy(f_va)).argmax(1).numpy()
    model.set_head(head_b)

    disc = discover_features(f_tr, tr.labels, head_b.weight.detach().numpy(),
                             predictions=logit_tr.argmax(1), config=DiscoveryConfig(k=5))
    top = disc.top_features                                                    # (10, 5)
    va_digits = _val_digits(seed)
    truth = intervention_labels(intervention_effects(model, va_digits[0], va_digits[1], seed=seed,
                                                     composer=composer), top)
    truth_kind = {(r["class_index"], r["feature"]): r["answer"] for r in truth}
    n_pairs = len(truth)
    core_fraction = sum(r["answer"] == "core" for r in truth) / n_pairs
    spurious_fraction = 1.0 - core_fraction

    class_rows = {c: np.flatnonzero(va.labels == c) for c in range(10)}
    mask_rows = auto_labels_from_masks(model, torch.from_numpy(va.images), va.masks, class_rows, top, f_va,
                                       config=MaskLabelConfig(), device="cpu")
    decided = [r for r in mask_rows if r["answer"] != "unsure"]
    agree = [r for r in decided if (r["answer"] == "core") == (truth_kind[(r["class_index"], r["feature"])] == "core")]
    spurious = {c: [r["feature"] for r in mask_rows if r["class_index"] == c and r["answer"] == "spurious_background"]
                for c in range(10)}
    ranking = compute_spuriosity(f_va, va.labels, spurious, num_classes=10)
    scored = np.isfinite(ranking.scores)
    auroc = float(roc_auc_score(va.aligned[scored], ranking.scores[scored])) if scored.any() else float("nan")
    per_class_auc = [float(roc_auc_score(va.aligned[va.labels == c], ranking.scores[va.labels == c]))
                     for c in range(10) if np.isfinite(ranking.scores[va.labels == c]).all()
                     and 0 < va.aligned[va.labels == c].sum() < (va.labels == c).sum()]
    gcfg = GapConfig(n_boot=200, seed=seed)
    gb = spurious_gaps(ranking, pred_va_b, config=gcfg)
    gu = spurious_gaps(ranking, pred_va_u, config=gcfg)
    gb_ref = spurious_gaps(ranking, pred_va_b_ref, config=gcfg)
    gu_ref = spurious_gaps(ranking, pred_va_u_ref, config=gcfg)
    result = {
        "auroc": auroc,
        "auroc_per_class_mean": float(np.mean(per_class_auc)) if per_class_auc else float("nan"),
        "gap_biased": 100.0 * float(gb.pooled["mean_class_gap"]),
        "gap_unbiased": 100.0 * float(gu.pooled["mean_class_gap"]),
        "gap_biased_ci": [100.0 * float(gb.pooled["ci_low"]), 100.0 * float(gb.pooled["ci_high"])],
        "gap_k": int(gb.per_class.k.max()),
        "head": dict(HEAD),
        "gap_biased_lr0.01": 100.0 * float(gb_ref.pooled["mean_class_gap"]),
        "gap_unbiased_lr0.01": 100.0 * float(gu_ref.pooled["mean_class_gap"]),
        "biased_head_val_lr0.01": _group_acc(pred_va_b_ref, va.labels, va.aligned),
        "core_fraction": float(core_fraction),
        "spurious_fraction": float(spurious_fraction),
        "digit_accuracy": float(enc_metrics["digit_accuracy"]),
        "texture_accuracy": float(enc_metrics["texture_accuracy"]),
        "recorded_digit_accuracy": float(meta["metrics"]["digit_accuracy"]),
        "mask_labels": {a: sum(r["answer"] == a for r in mask_rows) for a in ("core", "spurious_background", "unsure")},
        "mask_label_agreement": float(len(agree) / len(decided)) if decided else float("nan"),
        "classes_with_spurious": int(sum(bool(v) for v in spurious.values())),
        "biased_head_val": _group_acc(pred_va_b, va.labels, va.aligned),
        "unbiased_head_val": _group_acc(pred_va_u, va.labels, va.aligned),
        "n_train": int(len(tr.labels)), "n_val": int(len(va.labels)),
        "quick": bool(quick), "seconds": round(time.time() - t0, 1),
    }
    result["targets_met"] = {k: (result[k] >= v if op == ">=" else result[k] <= v) for k, (op, v) in TARGETS.items()}
    return result


def _val_digits(seed: int) -> tuple[np.ndarray, np.ndarray]:
    from core.data.mnist_source import load_mnist_digits

    d = load_mnist_digits(seed=seed)
    return d.images["val"], d.labels["val"]


def table(res: dict) -> str:
    lines = [f"{'metric':<24}{'value':>10}   target", "-" * 48]
    for k, (op, v) in TARGETS.items():
        mark = "ok" if res["targets_met"][k] else "MISS"
        lines.append(f"{k:<24}{res[k]:>10.3f}   {op} {v}  {mark}")
    lines.append("-" * 48)
    lines.append(f"{'gap_biased 95% CI':<24}{res['gap_biased_ci'][0]:>10.1f} .. {res['gap_biased_ci'][1]:.1f}")
    lines.append(f"{'gap_biased_lr0.01':<24}{res['gap_biased_lr0.01']:>10.3f}   (reference head lr)")
    lines.append(f"{'gap_unbiased_lr0.01':<24}{res['gap_unbiased_lr0.01']:>10.3f}")
    for k in ("auroc_per_class_mean", "texture_accuracy", "recorded_digit_accuracy", "mask_label_agreement",
              "classes_with_spurious", "gap_k"):
        lines.append(f"{k:<24}{res[k]:>10.3f}" if isinstance(res[k], float) else f"{k:<24}{res[k]:>10}")
    lines.append(f"mask labels: {res['mask_labels']}")
    for name in ("biased_head_val", "unbiased_head_val", "biased_head_val_lr0.01"):
        g = res[name]
        lines.append(f"{name}: acc {g['accuracy']:.3f} aligned {g['aligned_accuracy']:.3f} "
                     f"conflicting {g['conflicting_accuracy']:.3f}")
    lines.append(f"n_train {res['n_train']}  n_val {res['n_val']}  quick {res['quick']}  {res['seconds']} s")
    return "\n".join(lines)


def train_encoder(out: Path, *, epochs: int | None, seed: int, quiet: bool, argv: list[str]) -> dict:
    from core.models.demo_encoder import DemoEncoderConfig, save_demo_encoder, train_demo_encoder

    cfg = DemoEncoderConfig(seed=seed) if epochs is None else DemoEncoderConfig(seed=seed, epochs=epochs)
    t0 = time.time()

    def progress(frac: float, msg: str) -> None:
        if ":" in msg:  # end-of-epoch messages
            _log(f"{time.time() - t0:6.0f}s {msg}", quiet)

    model, metrics = train_demo_encoder(cfg, device="cpu", progress=progress)
    metrics["train_seconds"] = round(time.time() - t0, 1)
    command = "python benchmarks/audit_quality.py " + " ".join(shlex.quote(a) for a in argv)
    save_demo_encoder(model, out, metrics=metrics, command=command)
    return {k: v for k, v in metrics.items() if k != "history"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2,000 training digits (well under a minute)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--encoder", type=Path, default=None, help="encoder folder (default assets/demo_encoder)")
    p.add_argument("--train-encoder", type=Path, default=None, metavar="DIR",
                   help="train the demo encoder from scratch and write it to DIR, then exit")
    p.add_argument("--epochs", type=int, default=None, help="encoder epochs with --train-encoder")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.train_encoder is not None:
        res = train_encoder(a.train_encoder, epochs=a.epochs, seed=a.seed, quiet=a.json, argv=argv)
        print(json.dumps(res) if a.json else "\n".join(f"{k:<20}{v}" for k, v in res.items()))
        return 0
    res = run(quick=a.quick, encoder_dir=a.encoder, seed=a.seed, quiet=a.json)
    text = json.dumps(res, indent=None if a.json else 2)
    if a.out:
        a.out.write_text(text)
    print(text if a.json else table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
