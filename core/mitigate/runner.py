"""Mitigation on a workspace: load (dataset, model), run a method, record a run with its artifacts.

`run_mitigation` is what the CLI (`python -m core mitigate`), the dashboard and the ``mitigate`` job
kind call. It

1. checks the dataset and model exist, records a run (``ws.add_run``, status "running");
2. loads every split into memory (`MitigationData.from_manifest` with ``extra_bias=True``: further bias
   columns of the manifest, e.g. multi-color-mnist's ``bias_right``, become ``data.extra_bias`` =
   {column: {split: (N,) int64}}, which FFW hides too) and the model checkpoint;
3. when the audit saved spuriosity rankings of train and val (`core.audit.artifacts.load_rankings`),
   passes them to head tuning / error tuning as their spuriosity arrays (unless the config gives some);
4. runs the method (`core.mitigate.registry.get_method`), saves ``runs/<id>/model.pt``
   (`core.models.checkpoints.export_masked_model`: weights with pruned entries zeroed + binary masks), ``metrics.json``,
   ``history.json``, ``config.json``, and — when a ranking of the test (else val) split exists —
   per-class spurious gaps of the model before and after (``gaps.json``; pooled gaps in the metrics);
5. marks the run "done" with its metrics and artifacts, or "failed" with the error (then re-raises);
   while it works the run is owned and beats (`core.runs.track_run`), so a killed process leaves a run
   that `core.runs.reconcile_runs` marks failed.

`run_comparison` does the same for `core.mitigate.compare.compare` / `sweep` (one run of method
"compare" or "sweep" with the table, Markdown and figure as artifacts).

Job kinds (`core.mitigate.jobs`): ``"mitigate"`` with params {dataset, model, method, config, seed, device}
and ``"compare"`` with params {dataset, model, methods, seeds, configs, sweep, device}.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from core.audit.gaps import GapConfig, spurious_gaps
from core.audit.artifacts import load_rankings
from core.data import load_manifest
from core.device import resolve_device
from core.errors import SpurAuditError
from core.mitigate.compare import compare, parse_sweep
from core.mitigate.compare import sweep as run_sweep
from core.mitigate.data import MitigationData
from core.mitigate.metrics import model_outputs
from core.mitigate.registry import check_config, get_method
from core.models.checkpoints import export_masked_model, load_model
from core.progress import ProgressFn, null_progress, sub_progress
from core.runs import track_run
from core.serialize import to_plain

# run records store strict JSON (NaN -> null) and summarise large arrays instead of listing them
_RUN_JSON = dict(nan_as_none=True, summarize_over=64)

__all__ = ["run_mitigation", "run_comparison", "load_data", "load_ranking"]


def load_data(ws, dataset: str, *, progress: ProgressFn | None = None) -> MitigationData:
    """`MitigationData` of a workspace dataset; extra bias columns go to ``data.extra_bias``."""
    return MitigationData.from_manifest(load_manifest(ws, dataset), extra_bias=True, progress=progress)


def load_ranking(ws, dataset: str, model: str, split: str):
    """The saved spuriosity ranking of (dataset, model, split), or None when the audit has none."""
    try:
        return load_rankings(ws, dataset, model, split)
    except (SpurAuditError, FileNotFoundError, KeyError):
        return None


def _audit_spuriosity(ws, dataset: str, model: str, config: dict) -> str:
    """Fill head / error tuning's ``spuriosity`` and ``val_spuriosity`` (in place) from the audit's saved
    rankings of train and val when there are both; returns the note saying where the scores came from."""
    tr, va = load_ranking(ws, dataset, model, "train"), load_ranking(ws, dataset, model, "val")
    if tr is None or va is None:
        return "no saved rankings of train and val; derived by the method"
    config.setdefault("spuriosity", np.nan_to_num(tr.scores, nan=0.0))
    config.setdefault("val_spuriosity", np.nan_to_num(va.scores, nan=0.0))
    config.setdefault("spuriosity_source", "given")
    return "audit rankings (train, val)"


def _gap_table(ranking, model, x, device) -> tuple[list[dict], dict]:
    logits, _ = model_outputs(model, x, device=device)
    res = spurious_gaps(ranking, logits.argmax(1), config=GapConfig(n_boot=200, seed=0))
    per = res.per_class[["class_index", "n", "k", "acc_high", "acc_low", "gap", "ci_low", "ci_high"]]
    return per.to_dict(orient="records"), {k: (float(v) if isinstance(v, (int, float, np.floating)) else v)
                                           for k, v in res.pooled.items()}


def run_mitigation(ws, *, dataset: str, model: str, method: str, config: Mapping[str, Any] | None = None,
                   seed: int = 0, device: str = "auto", progress: ProgressFn | None = None) -> int:
    """Run ``method`` on workspace ``dataset`` from workspace ``model``; returns the run id.

    Artifacts under ``runs/<id>/``: model.pt, metrics.json, history.json, config.json, gaps.json
    (when a ranking exists). The run record's metrics hold val/test metrics, sparsity, the pooled
    spurious gaps before/after (``gaps``) and the wall time. Raises `SpurAuditError` for unknown
    names and invalid options (before any data is loaded or run recorded); a method failing later marks
    the run "failed" and re-raises.
    """
    progress = progress or null_progress
    config = dict(config or {})
    ws.get_dataset(dataset)            # SpurAuditError listing known datasets
    model_rec = ws.get_model(model)    # SpurAuditError listing known models
    fn = get_method(method)            # SpurAuditError listing methods
    check_config(method, config)       # bad options fail here, before the run is recorded
    dev = resolve_device(device)
    run_id = ws.add_run(method=method, dataset=dataset, model=model,
                        params={"config": to_plain(config, **_RUN_JSON), "seed": int(seed), "device": str(device)})
    rel = ws.run_dir(run_id) if hasattr(ws, "run_dir") else f"runs/{run_id}"
    with track_run(ws, run_id):  # owner + heartbeat; an exception marks the run failed/cancelled, re-raised
        progress(0.0, "loading data")
        data = load_data(ws, dataset, progress=sub_progress(progress, 0.0, 0.1))
        base = load_model(model_rec.checkpoint, device="cpu").eval()
        notes = {}
        if method in ("head-tuning", "error-tuning") and config.get("spuriosity") is None:
            notes["spuriosity"] = _audit_spuriosity(ws, dataset, model, config)
        result = fn(data, base_model=base, config=config, seed=int(seed), device=dev,
                    progress=sub_progress(progress, 0.1, 0.9))
        progress(0.9, "saving")
        artifacts = {"model": f"{rel}/model.pt", "metrics": f"{rel}/metrics.json",
                     "history": f"{rel}/history.json", "config": f"{rel}/config.json"}
        ws.save_torch(artifacts["model"], export_masked_model(result.model.cpu()))
        metrics = to_plain(result.metrics, **_RUN_JSON)
        gap_split = next((s for s in ("test", "val") if data.has_split(s)
                          and load_ranking(ws, dataset, model, s) is not None), None)
        if gap_split is not None:
            ranking = load_ranking(ws, dataset, model, gap_split)
            x = data.split(gap_split).x
            if len(ranking.labels) == len(x):
                before, pooled_before = _gap_table(ranking, base, x, dev)
                after, pooled_after = _gap_table(ranking, result.model, x, dev)
                artifacts["gaps"] = f"{rel}/gaps.json"
                ws.write_json(artifacts["gaps"], to_plain({"split": gap_split, "before": before, "after": after,
                                                            "pooled_before": pooled_before,
                                                            "pooled_after": pooled_after}, **_RUN_JSON))
                metrics["gaps"] = to_plain({"split": gap_split, "before": pooled_before.get("gap"),
                                             "after": pooled_after.get("gap")}, **_RUN_JSON)
        if notes:
            metrics["notes"] = notes
        ws.write_json(artifacts["metrics"], metrics)
        ws.write_json(artifacts["history"], to_plain(result.history, **_RUN_JSON))
        ws.write_json(artifacts["config"], to_plain(result.params, **_RUN_JSON))
        ws.update_run(run_id, status="done", metrics=metrics, artifacts=artifacts)
        progress(1.0, f"run {run_id} done")
        return run_id


def run_comparison(ws, *, dataset: str, model: str, methods: Sequence[str] = (), seeds: Sequence[int] = (0,),
                   configs: Mapping[str, Mapping[str, Any]] | None = None, sweep: str | None = None,
                   device: str = "auto", progress: ProgressFn | None = None) -> int:
    """`compare` (``methods``) or, with ``sweep="param=v1,v2"``, `sweep` of the single method in
    ``methods``; recorded as one run (method "compare" or "sweep"); returns its id. Artifacts:
    comparison.json/.md + figure.json (or sweep.json/.md + sweep_figure.json)."""
    progress = progress or null_progress
    methods = [m for m in methods]
    if not methods:
        raise SpurAuditError("give at least one method, e.g. --methods erm,head-tuning,ffw")
    for m in methods:
        check_config(m, (configs or {}).get(m))
    if sweep and len(methods) != 1:
        raise SpurAuditError("a sweep varies one parameter of one method: give exactly one method with --sweep")
    sweep_spec = parse_sweep(sweep) if sweep else None
    if sweep_spec:  # each swept value is an option value too: refused before anything is recorded
        for value in sweep_spec[1]:
            check_config(methods[0], {**dict((configs or {}).get(methods[0]) or {}), sweep_spec[0]: value})
    ws.get_dataset(dataset)
    model_rec = ws.get_model(model)
    dev = resolve_device(device)
    kind = "sweep" if sweep_spec else "compare"
    run_id = ws.add_run(method=kind, dataset=dataset, model=model,
                        params=to_plain({"methods": methods, "seeds": list(seeds), "configs": dict(configs or {}),
                                          "sweep": sweep, "device": str(device)}, **_RUN_JSON))
    rel = f"runs/{run_id}"
    with track_run(ws, run_id):  # owner + heartbeat; an exception marks the run failed/cancelled, re-raised
        data = load_data(ws, dataset, progress=sub_progress(progress, 0.0, 0.1))
        base = load_model(model_rec.checkpoint, device="cpu").eval()
        if sweep_spec:
            param, values = sweep_spec
            res = run_sweep(data, base, methods[0], param, values, seeds=seeds,
                            config=(configs or {}).get(methods[0]), device=dev, progress=sub_progress(progress, 0.1, 0.95))
            artifacts = res.save(ws, rel)
            metrics = {"summary": to_plain(res.to_dict()["summary"], **_RUN_JSON)}
        else:
            ranking = load_ranking(ws, dataset, model, "test")
            configs = {m: dict((configs or {}).get(m) or {}) for m in methods}
            for m in methods:   # as run_mitigation: head / error tuning rank by the audit's saved spuriosity
                if m in ("head-tuning", "error-tuning") and configs[m].get("spuriosity") is None:
                    _audit_spuriosity(ws, dataset, model, configs[m])
            res = compare(data, base, methods, seeds=seeds, configs=configs, ranking=ranking, device=dev,
                          progress=sub_progress(progress, 0.1, 0.95))
            artifacts = res.save(ws, rel)
            metrics = {"summary": to_plain(res.to_dict()["summary"], **_RUN_JSON), "pooled_gaps": to_plain(res.pooled_gaps, **_RUN_JSON)}
        ws.update_run(run_id, status="done", metrics=metrics, artifacts=artifacts)
        progress(1.0, f"run {run_id} done")
        return run_id
