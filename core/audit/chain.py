"""The audit chain: one job that runs every step of an audit in order, records each step's state, and
reuses the steps that finished when it is run again (as the demo does).

Steps (`CHAIN_STEPS`): ``extract`` (features of every split) → ``discover`` (top-k features per class
on train) → ``labels`` (machine labels: the dataset's object masks when it has them; CLIP / SAM-IoU
when the layer above passes their labeller) → ``rank`` (train and the eval split) → ``gaps`` (+
collisions) → ``report`` (when the layer above passes the report step). The state lives in
``chain.json`` of the audit folder (`core.audit.artifacts.AuditFiles.chain`, read back with
`core.audit.artifacts.load_chain_state`): per step its status (pending, running, done, reused,
failed, cancelled), seconds, a small result and, for a failed step, its error.

Reuse: a step is skipped when its last record is done with the same fingerprint (its inputs: options,
the model's record, the labels' count) and no step before it ran again. So a chain that failed at
``rank`` restarts at ``rank``; after a person labels a feature, ``rank`` and what follows run again.

The chain never imports the report or the concept backends (layers above / peers): `core.concepts.jobs`
(the job kind ``audit-chain``) passes them in as callables.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from core.audit.artifacts import audit_files, current_verdicts, has_discovery
from core.audit.discover import DiscoveryConfig
from core.audit.gaps import GapConfig
from core.audit.pipeline import (ReportStep, _pick_eval_split, how_to_label, run_collisions, run_discovery,
                                 run_gaps, run_mask_labels, run_rankings)
from core.data import load_manifest
from core.errors import SpurAuditError, check_choice
from core.features.extract import extract_splits
from core.progress import ProgressFn, null_progress, sub_progress
from core.serialize import to_plain
from core.workspace import Workspace

CHAIN_STEPS = ("extract", "discover", "labels", "rank", "gaps", "report")
#: share of the job's progress bar per step (extract and labels are the long ones)
_WEIGHTS = {"extract": 0.3, "discover": 0.1, "labels": 0.3, "rank": 0.1, "gaps": 0.1, "report": 0.1}
LABEL_SOURCES = ("auto", "masks", "none")

#: a machine labeller the layer above passes in: ``(progress) -> labels written``; (name, fn, fingerprint)
Labeller = tuple[str, Callable[[ProgressFn], int], dict]


@dataclass(kw_only=True)
class AuditChainConfig:
    """Options of the audit chain. ``label_source``: ``auto`` (object-mask labels when the dataset
    has masks), ``masks`` (require them), ``none`` (no mask labels). CLIP labels run when
    ``clip_weights`` is given (a local weights file or an open_clip tag; ``concepts`` are the spurious
    concept texts, default from the vocabulary), SAM-IoU labels when ``sam_checkpoint`` is given."""

    dataset: str = ""
    model: str = ""
    k: int = 5
    eval_split: str | None = None
    label_source: str = "auto"
    clip_model: str = "ViT-B-32"
    clip_weights: str | None = None
    concepts: list[str] | None = None
    sam_type: str = "vit_b"
    sam_checkpoint: str | None = None
    report: bool = True
    device: str = "auto"

    def validate(self) -> None:
        if not self.dataset or not self.model:
            raise SpurAuditError("the audit chain needs a dataset and a model")
        if self.k < 1:
            raise SpurAuditError(f"k (top features per class) must be at least 1, got {self.k}")
        check_choice("label source", self.label_source, LABEL_SOURCES)


@dataclass
class ChainStep:
    """One step: its name, its fingerprint (inputs; a change reruns it) and the call doing it."""

    name: str
    fingerprint: dict
    run: Callable[[ProgressFn], dict]
    state: dict = field(default_factory=dict)


def _labels_stamp(ws: Workspace, dataset: str, model: str) -> dict:
    table = ws.labels(dataset, model)
    return {"n_labels": int(len(table)), "last_label": int(table["id"].max()) if len(table) else 0}


def audit_chain_steps(ws: Workspace, config: AuditChainConfig, *, labellers: list[Labeller] = (),
                      report: ReportStep | None = None) -> list[ChainStep]:
    """The steps of the chain for ``config``; ``labellers`` (CLIP / SAM-IoU) and ``report`` come from
    the layer above. Reads the workspace only to fingerprint (nothing runs here)."""
    ds, mdl = config.dataset, config.model
    model_rec = ws.get_model(mdl)
    data_rec = ws.get_dataset(ds)
    base = {"model": model_rec.created, "dataset": data_rec.created}
    manifest = load_manifest(ws, ds)
    has_masks = "mask_path" in manifest.df.columns
    if config.label_source == "masks" and not has_masks:
        raise SpurAuditError(f"dataset {ds!r} has no object masks; pick another label source (auto or none), "
                             "or re-import it with its mask column / mask folder")
    eval_split = _pick_eval_split(ws, ds, mdl, config.eval_split)
    dev = config.device
    summary: dict[str, Any] = {"dataset": ds, "model": mdl, "eval_split": eval_split, "k": config.k}

    def extract(p: ProgressFn) -> dict:
        recs = extract_splits(ws, ds, mdl, "all", device=dev, progress=p)
        return {"splits": [r.split for r in recs]}

    def discover(p: ProgressFn) -> dict:
        res = run_discovery(ws, ds, mdl, split="train", config=DiscoveryConfig(k=config.k), device=dev, progress=p)
        return {"fallback_classes": res.fallback_classes}

    def labels(p: ProgressFn) -> dict:
        out: dict[str, Any] = {}
        jobs: list[Labeller] = []
        if has_masks and config.label_source in ("auto", "masks"):
            jobs.append(("masks", lambda q: run_mask_labels(ws, ds, mdl, split="train", device=dev, progress=q), {}))
        jobs += list(labellers)
        for i, (name, fn, _) in enumerate(jobs):
            out[name] = int(fn(sub_progress(p, i / len(jobs), (i + 1) / len(jobs))))
        if not jobs:
            out["note"] = "no machine labeller applies (no object masks, no CLIP or SAM weights given)"
        p(1.0, "labels ready")
        return out

    def rank(p: ProgressFn) -> dict:
        run_rankings(ws, ds, mdl, split="train", device=dev, progress=sub_progress(p, 0, 0.5))
        res = run_rankings(ws, ds, mdl, split=eval_split, device=dev, progress=sub_progress(p, 0.5, 1.0))
        return {"classes_without_spurious": res.classes_without_spurious}

    def gaps(p: ProgressFn) -> dict:
        g = run_gaps(ws, ds, mdl, split=eval_split, config=GapConfig(), progress=sub_progress(p, 0, 0.9))
        collisions = run_collisions(ws, ds, mdl, top_k=config.k)
        pooled = g["gaps"][mdl].pooled
        vt = current_verdicts(ws, ds, mdl)
        summary.update({"n_spurious_pairs": int((vt.verdict == "spurious").sum()) if len(vt) else 0,
                        "n_core_pairs": int((vt.verdict == "core").sum()) if len(vt) else 0,
                        "ranked_classes": int(pooled.get("n_classes", 0)), "gaps_run_id": g["run_id"],
                        "n_collisions": int(len(collisions)), "pooled_gap": pooled})
        if not summary["ranked_classes"]:
            summary["pooled_gap"] = {"n_classes": 0, "total_k": 0}
            summary["next_steps"] = how_to_label(ds, mdl, has_masks=has_masks)
        return {"ranked_classes": summary["ranked_classes"], "pooled_gap": pooled.get("gap")}

    def write_report(p: ProgressFn) -> dict:
        path = report(ws, ds, mdl, split=eval_split, progress=p)
        summary["report"] = str(path)
        return {"report": ws.rel(path)}

    lab_print = {"source": config.label_source, "masks": has_masks,
                 "machine": [(name, fp) for name, _, fp in labellers]}
    steps = [ChainStep("extract", base, extract),
             ChainStep("discover", {**base, "k": config.k}, discover),
             ChainStep("labels", {**base, "k": config.k, **lab_print}, labels),
             ChainStep("rank", {**base, "eval_split": eval_split, "labels": "volatile"}, rank),
             ChainStep("gaps", {**base, "eval_split": eval_split}, gaps)]
    if report is not None and config.report:
        steps.append(ChainStep("report", {**base, "eval_split": eval_split}, write_report))
    for s in steps:
        s.state = summary
    return steps


def _save(ws: Workspace, dataset: str, model: str, state: dict) -> None:
    ws.write_json(audit_files(dataset, model).chain, to_plain(state, nan_as_none=True))


def run_audit_chain(ws: Workspace, config: AuditChainConfig, steps: list[ChainStep], *,
                    progress: ProgressFn | None = None) -> dict:
    """Run ``steps`` in order (see the module docstring for reuse); returns the audit summary (also
    written as ``summary.json``, like `core.audit.pipeline.run_audit`, so the pages see a finished audit).
    A failing step is recorded as failed with its error and re-raised."""
    progress = progress or null_progress
    ds, mdl = config.dataset, config.model
    files = audit_files(ds, mdl)
    old = {s["step"]: s for s in (ws.read_json(files.chain) or {}).get("steps", [])}
    if not has_discovery(ws, ds, mdl):
        old = {}        # the audit folder was cleared: nothing to reuse
    state = {"dataset": ds, "model": mdl, "config": asdict(config), "status": "running", "current": None,
             "steps": [{"step": s.name, "status": "pending"} for s in steps]}
    _save(ws, ds, mdl, state)
    total = sum(_WEIGHTS[s.name] for s in steps)
    at = 0.0
    rerun_before = False
    summary = steps[0].state if steps else {}
    for i, s in enumerate(steps):
        lo, hi = at / total, (at + _WEIGHTS[s.name]) / total
        at += _WEIGHTS[s.name]
        prev = old.get(s.name)
        if s.fingerprint.get("labels") == "volatile":   # the labels as they are now (earlier steps may add some)
            s.fingerprint = {**s.fingerprint, "labels": _labels_stamp(ws, ds, mdl)}
        fingerprint = to_plain(s.fingerprint, nan_as_none=True)
        record = state["steps"][i]
        if not rerun_before and prev and prev.get("status") in ("done", "reused") \
                and prev.get("fingerprint") == fingerprint:
            record.update(status="reused", fingerprint=fingerprint, result=prev.get("result", {}),
                          seconds=prev.get("seconds"))
            summary.update(prev.get("summary", {}))
            progress(hi, f"[{i + 1}/{len(steps)}] {s.name}: finished before, reused")
            _save(ws, ds, mdl, state)
            continue
        rerun_before = True
        state["current"] = s.name
        record.update(status="running", fingerprint=fingerprint)
        _save(ws, ds, mdl, state)
        t0 = time.perf_counter()
        label = f"[{i + 1}/{len(steps)}] {s.name}"
        part = sub_progress(progress, lo, hi)
        try:
            part(0.0, f"{label}: started")
            result = s.run(lambda f, m="", _p=part, _l=label: _p(f, f"{_l}: {m}" if m else _l))
        except BaseException as exc:   # recorded, then re-raised (a cancelled job is "cancelled")
            status = "failed" if isinstance(exc, Exception) else "cancelled"
            record.update(status=status, seconds=round(time.perf_counter() - t0, 2),
                          error=f"{type(exc).__name__}: {exc}",
                          trace="".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-3000:])
            state.update(status=status, failed_step=s.name)
            _save(ws, ds, mdl, state)
            raise
        keys = {"extract": (), "discover": (), "labels": (), "rank": (),
                "gaps": ("n_spurious_pairs", "n_core_pairs", "ranked_classes", "gaps_run_id", "n_collisions",
                         "pooled_gap", "next_steps"), "report": ("report",)}[s.name]
        record.update(status="done", seconds=round(time.perf_counter() - t0, 2), result=to_plain(result, nan_as_none=True),
                      summary=to_plain({k: summary[k] for k in keys if k in summary}, nan_as_none=True))
        _save(ws, ds, mdl, state)
    state.update(status="done", current=None)
    _save(ws, ds, mdl, state)
    summary = to_plain(summary, nan_as_none=True)
    ws.write_json(files.summary, summary)
    progress(1.0, "audit done")
    return summary


__all__ = ["CHAIN_STEPS", "AuditChainConfig", "ChainStep", "audit_chain_steps", "run_audit_chain", "Labeller"]
