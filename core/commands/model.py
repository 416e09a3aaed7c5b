"""`python -m core model ...`: train, register, list and show models.

    python -m core model train NAME --dataset D --arch small_cnn [--loss ce|gce] [--adv-eps 0.5]
        [--epochs 10] [--lr 1e-3] [--batch-size 128] [--seed 0] [--device auto] [--replace]
    python -m core model register NAME --arch robust-resnet50 --pretrained imagenet_l2_3_0.pt --num-classes 1000
    python -m core model list [--dataset D]
    python -m core model show NAME

Training reads the dataset's train split (and val, for model selection), evaluates on test
(accuracy; aligned/conflicting/unbiased accuracy when the manifest has bias labels) and stores the
checkpoint as ``models/<NAME>/model.pt`` through the workspace
(`core.models.workspace_models.train_workspace_model`).
"""
from __future__ import annotations

import argparse
from typing import Any

from core.errors import SpurAuditError
from core.models.checkpoints import torch_load
from core.models.optim import OPTIMIZERS
from core.models.train import LOSSES, SCHEDULES, TrainConfig
from core.models.workspace_models import register_checkpoint, train_workspace_model


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("model", parents=[common], help="train, register, list and show models",
                                   description="Train models on workspace datasets, register checkpoints, "
                                               "list and show them.")
    sub = parser.add_subparsers(dest="model_command", metavar="ACTION")
    parser.set_defaults(handler=lambda ctx: _help(parser))

    t = sub.add_parser("train", parents=[common], help="train a model on a workspace dataset")
    t.add_argument("name", help="model name in the workspace")
    t.add_argument("--dataset", required=True, help="workspace dataset to train on (train split; val selects)")
    t.add_argument("--arch", default="small_cnn",
                   help="small_cnn, mlp, resnet18, resnet50, robust-resnet50, timm:<name>, clip:<name>")
    t.add_argument("--pretrained", default=None, help="local checkpoint path (or library weights tag)")
    t.add_argument("--image-size", type=int, default=None,
                   help="resize images to SIZE x SIZE when loading (needed when image sizes differ)")
    t.add_argument("--widths", default=None, help="small_cnn widths, comma-separated (default 64,128,256)")
    t.add_argument("--hidden", default=None, help="mlp hidden sizes, comma-separated (default 100,100,100)")
    t.add_argument("--loss", choices=LOSSES, default="ce", help="ce (ERM) or gce (bias-capturing)")
    t.add_argument("--gce-q", type=float, default=0.7)
    t.add_argument("--adv-eps", type=float, default=0.0, help="L2-PGD adversarial training radius (0 = off)")
    t.add_argument("--adv-steps", type=int, default=3)
    t.add_argument("--adv-step-size", type=float, default=None, help="default 2.5 * eps / steps")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    t.add_argument("--momentum", type=float, default=0.9)
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--schedule", choices=SCHEDULES, default="none")
    t.add_argument("--patience", type=int, default=None, help="early-stopping patience in epochs (needs val)")
    t.add_argument("--max-iters", type=int, default=None, help="cap on optimizer steps")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    t.add_argument("--replace", action="store_true", help="overwrite a model of the same name")
    t.set_defaults(handler=_train)

    r = sub.add_parser("register", parents=[common], help="register an existing checkpoint as a model")
    r.add_argument("name", help="model name in the workspace")
    r.add_argument("--arch", required=True, help="registry arch, e.g. robust-resnet50, resnet50, timm:<name>")
    r.add_argument("--pretrained", default=None, help="checkpoint path (or library weights tag)")
    r.add_argument("--num-classes", type=int, default=None, help="head size (default: the dataset's classes)")
    r.add_argument("--dataset", default=None, help="dataset the model belongs to (optional)")
    r.add_argument("--head-classes", default=None, metavar="FILE",
                   help="the checkpoint's outputs in order, one class id per line (e.g. ImageNet's "
                        "LOC_synset_mapping.txt): keep its head, restricted to the dataset's classes by name")
    r.add_argument("--replace", action="store_true", help="overwrite a model of the same name")
    r.set_defaults(handler=_register)

    ls = sub.add_parser("list", parents=[common], help="list the workspace's models")
    ls.add_argument("--dataset", default=None, help="only models trained on this dataset")
    ls.set_defaults(handler=_list)

    s = sub.add_parser("show", parents=[common], help="show one model's record and checkpoint summary")
    s.add_argument("name")
    s.set_defaults(handler=_show)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def _ints(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError as exc:
        raise SpurAuditError(f"{option} must be comma-separated integers such as 64,128,256; got {text!r}") from exc
    if not values or min(values) < 1:
        raise SpurAuditError(f"{option} must be positive integers; got {text!r}")
    return values


def _model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    widths, hidden = _ints(args.widths, "--widths"), _ints(args.hidden, "--hidden")
    if widths:
        if args.arch != "small_cnn":
            raise SpurAuditError("--widths only applies to --arch small_cnn")
        kwargs["widths"] = widths
    if hidden:
        if args.arch != "mlp":
            raise SpurAuditError("--hidden only applies to --arch mlp")
        kwargs["hidden"] = hidden
    return kwargs


def _train(ctx: Any) -> int:
    args = ctx.args
    ws = ctx.workspace()
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                         momentum=args.momentum, weight_decay=args.weight_decay, schedule=args.schedule,
                         loss=args.loss, gce_q=args.gce_q, adv_eps=args.adv_eps, adv_steps=args.adv_steps,
                         adv_step_size=args.adv_step_size, seed=args.seed,
                         early_stopping_patience=args.patience, max_iters=args.max_iters).validate()
    kwargs = _model_kwargs(args)
    out = train_workspace_model(ws, args.name, dataset=args.dataset, arch=args.arch, config=config,
                                pretrained=args.pretrained, model_kwargs=kwargs, image_size=args.image_size,
                                device=args.device, replace=args.replace,
                                progress=ctx.progress(f"training {args.name}"))
    m = out["metrics"]
    text = (f"trained {args.arch} {args.name!r} on {args.dataset!r} in {m['wall_time']:.1f}s "
            f"({m['epochs_run']} epochs)")
    if m.get("best_val_accuracy") is not None:
        text += f"; val acc {m['best_val_accuracy']:.3f} (epoch {m['best_epoch']})"
    for key in ("test_accuracy", "test_aligned_accuracy", "test_conflicting_accuracy", "test_unbiased_accuracy"):
        if m.get(key) is not None:
            text += f"; {key[5:]} {m[key]:.3f}"
    ctx.emit(out, text + f"\ncheckpoint: {out['checkpoint']}")
    return 0


def _register(ctx: Any) -> int:
    args = ctx.args
    out = register_checkpoint(ctx.workspace(), args.name, dataset=args.dataset, arch=args.arch,
                              checkpoint=args.pretrained, num_classes=args.num_classes,
                              head_classes=args.head_classes, replace=args.replace)
    subset = f"; head restricted to {out['num_classes']} of the checkpoint's classes" if out["head_rows"] else ""
    ctx.emit(out, f"registered {args.arch} {out['model']!r} ({out['feature_dim']} features, "
                  f"{out['num_classes']} classes{subset})")
    return 0


def _record_dict(rec: Any) -> dict[str, Any]:
    return {"name": rec.name, "dataset": rec.dataset, "arch": rec.arch, "checkpoint": str(rec.checkpoint),
            "config": rec.config, "metrics": rec.metrics, "created": rec.created}


def _list(ctx: Any) -> int:
    ws = ctx.workspace()
    records = ws.list_models(ctx.args.dataset)
    rows = [_record_dict(r) for r in records]
    if not rows:
        text = "no models yet; train one with `python -m core model train NAME --dataset D --arch small_cnn`"
    else:
        lines = [f"{'name':<20} {'arch':<18} {'dataset':<16} {'test acc':>8} {'conflict':>8}"]
        for r in records:
            acc, conf = r.metrics.get("test_accuracy"), r.metrics.get("test_conflicting_accuracy")
            lines.append(f"{r.name:<20} {r.arch:<18} {str(r.dataset or '-'):<16} "
                         f"{(f'{acc:.3f}' if isinstance(acc, (int, float)) else '-'):>8} "
                         f"{(f'{conf:.3f}' if isinstance(conf, (int, float)) else '-'):>8}")
        text = "\n".join(lines)
    ctx.emit({"models": rows}, text)
    return 0


def _show(ctx: Any) -> int:
    ws = ctx.workspace()
    rec = ws.get_model(ctx.args.name)
    info = _record_dict(rec)
    ckpt = torch_load(ws.path(rec.checkpoint_rel or ws.rel(rec.checkpoint)))
    if isinstance(ckpt, dict):
        state = ckpt.get("state_dict") or {}
        info["checkpoint_info"] = {
            "format": ckpt.get("format"), "num_classes": ckpt.get("num_classes"),
            "feature_dim": ckpt.get("feature_dim"), "has_spatial_map": ckpt.get("has_spatial_map"),
            "model_config": ckpt.get("config"),
            "parameters": int(sum(v.numel() for k, v in state.items() if hasattr(v, "numel")
                                  and not k.endswith(("running_mean", "running_var", "num_batches_tracked")))),
        }
    lines = [f"model {rec.name!r}: {rec.arch} on {rec.dataset or '-'}", f"checkpoint: {rec.checkpoint}"]
    ci = info.get("checkpoint_info") or {}
    if ci:
        lines.append(f"features: {ci.get('feature_dim')}, classes: {ci.get('num_classes')}, "
                     f"spatial map: {ci.get('has_spatial_map')}, parameters: {ci.get('parameters'):,}")
    for k, v in sorted(rec.metrics.items()):
        if isinstance(v, float):
            lines.append(f"  {k}: {v:.4f}")
        elif isinstance(v, (int, str, bool)) or v is None:
            lines.append(f"  {k}: {v}")
    ctx.emit(info, "\n".join(lines))
    return 0
