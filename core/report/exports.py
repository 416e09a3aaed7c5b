"""CSV and JSON exports of an audit's labels, verdicts, rankings and gaps, next to its report."""
from __future__ import annotations

import json
from pathlib import Path

from core.audit.artifacts import audit_files, current_verdicts, load_gaps_table, load_ranking_table
from core.audit.labels import labels_to_csv
from core.workspace import Workspace

__all__ = ["export_tables"]


def export_tables(ws: Workspace, dataset: str, model: str, *, split: str) -> dict[str, Path]:
    """CSV and JSON exports of rankings, gaps and labels under ``reports/<dataset>__<model>/``.

    Files: labels.csv/.json (every answer), verdicts.csv, rankings_<split>.csv/.json and
    gaps_<split>.csv/.json (when the audit saved them). Returns name -> absolute path."""
    out_base = audit_files(dataset, model).exports
    paths: dict[str, Path] = {}
    labels = ws.labels(dataset, model)
    paths["labels_csv"] = ws.write_text(f"{out_base}/labels.csv", labels_to_csv(labels))
    paths["labels_json"] = ws.write_json(f"{out_base}/labels.json", json.loads(labels.to_json(orient="records")))
    vt = current_verdicts(ws, dataset, model)
    paths["verdicts_csv"] = ws.write_text(f"{out_base}/verdicts.csv", vt.to_csv(index=False))
    for kind, load in (("rankings", load_ranking_table), ("gaps", load_gaps_table)):
        df = load(ws, dataset, model, split)
        if df is not None:
            paths[f"{kind}_csv"] = ws.write_text(f"{out_base}/{kind}_{split}.csv", df.to_csv(index=False))
            paths[f"{kind}_json"] = ws.write_json(f"{out_base}/{kind}_{split}.json",
                                                  json.loads(df.to_json(orient="records")))
    return paths
