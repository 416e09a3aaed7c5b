"""Where the rare-pattern toolkit keeps its files in a workspace, and how they are read back.

Layout (workspace-relative; every write goes through `core.workspace.Workspace`):

* ``runs/<id>/config.json``: the sweep's (or canary audit's) full config and fingerprint;
* ``runs/<id>/cells/<key>.json``: one finished training cell (written atomically when the cell ends;
  a resumed sweep skips every cell whose file exists);
* ``runs/<id>/shadow/<key>.in.npy`` / ``.out.npy``: softmax outputs of a membership shadow model;
* ``runs/<id>/table.json``: the tidy table (one row per pattern × n × optimizer × regulariser × seed);
* ``runs/<id>/summary.json``: the statistics (`core.rare.stats.summarise`) and, for a canary audit,
  its verdict;
* ``rare/patches/<name>.png``: user patch images uploaded through the dashboard (or saved by
  `save_patch`).

The dashboard, the CLI and the benchmark read results only through `load_rare_run` / `list_rare_runs`.
"""
from __future__ import annotations

import json
import re
from io import BytesIO
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from core.errors import SpurAuditError, check_choice
from core.rare.inject import load_patch_png
from core.rare.stats import canary_verdict, summarise

SWEEP_METHOD = "rare-sweep"
CANARY_METHOD = "rare-canary"
METHODS = (SWEEP_METHOD, CANARY_METHOD)
PATCH_DIR = "rare/patches"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def run_rel(run_id: int) -> str:
    return f"runs/{int(run_id)}"


def cell_rel(run_id: int, key: str) -> str:
    return f"{run_rel(run_id)}/cells/{key}.json"


def shadow_rel(run_id: int, key: str, side: str) -> str:
    check_choice("shadow side", side, ("in", "out"))
    return f"{run_rel(run_id)}/shadow/{key}.{side}.npy"


def finished_cells(ws: Any, run_id: int) -> dict[str, dict]:
    """{cell key: cell record} of the cells saved so far (unreadable files are skipped: re-run)."""
    folder = ws.path(f"{run_rel(run_id)}/cells")
    out: dict[str, dict] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return out


@dataclass
class RareRun:
    """A rare-pattern run read back from the workspace.

    ``table``: the tidy per-seed table (empty while nothing finished). ``summary``: the statistics
    (``cells``, ``patterns``, ``norm_vs_n``, ``regularisers``, ``deletion``, ``membership``; a canary
    audit adds ``canary``). ``progress``: (finished cells, total cells).
    """

    id: int
    method: str
    status: str
    config: dict
    table: pd.DataFrame
    summary: dict
    progress: tuple[int, int]
    created: str = ""
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def is_canary(self) -> bool:
        return self.method == CANARY_METHOD

    def frame(self, part: str) -> pd.DataFrame:
        """One part of the summary (e.g. ``"cells"``, ``"regularisers"``) as a DataFrame."""
        rows = self.summary.get(part) or []
        return pd.DataFrame(rows) if isinstance(rows, list) else pd.DataFrame([rows])


def _table_from_cells(cells: dict[str, dict]) -> pd.DataFrame:
    rows = [row for cell in cells.values() for row in cell.get("rows", [])]
    return pd.DataFrame(rows)


def load_rare_run(ws: Any, run_id: int) -> RareRun:
    """The run ``run_id`` (a sweep or a canary audit): config, tidy table and statistics. A run still
    going (or stopped) is read from its finished cells, its statistics recomputed from them."""
    run = ws.get_run(int(run_id))
    if run.method not in METHODS:
        raise SpurAuditError(f"run {run_id} is a {run.method!r} run, not a rare-pattern sweep or canary audit")
    rel = run_rel(run.id)
    config = ws.read_json(f"{rel}/config.json", default=None) or dict(run.params.get("config") or {})
    summary = ws.read_json(f"{rel}/summary.json", default=None)
    table_rows = ws.read_json(f"{rel}/table.json", default=None)
    cells = finished_cells(ws, run.id)
    if table_rows is not None and run.status == "done":
        table = pd.DataFrame(table_rows)
    else:
        table = _table_from_cells(cells)
    if summary is None or run.status != "done":
        norms = (ws.read_json(f"{rel}/norms.json", default=None) or {})
        summary = summarise(table, norms=norms, alpha=float(config.get("alpha", 0.05)),
                            level=float(config.get("level", 0.1))) if len(table) else {}
    if run.method == CANARY_METHOD and summary and "canary" not in summary:
        patterns = config.get("patterns") or [""]
        summary = {**summary, "canary": canary_verdict(summary, pattern=patterns[0])}
    total = int((run.metrics or {}).get("cells_total") or len(cells))
    return RareRun(id=run.id, method=run.method, status=run.status, config=config, table=table, summary=summary,
                   progress=(len(cells), max(total, len(cells))), created=run.created, error=run.error,
                   notes=list((run.metrics or {}).get("notes") or []))


def list_rare_runs(ws: Any, *, method: str | None = None) -> list[dict]:
    """Newest first: ``{id, method, status, data, patterns, counts, cells_done, cells_total, created}``."""
    if method is not None:
        check_choice("rare run kind", method, METHODS)
    out = []
    for m in ([method] if method else list(METHODS)):
        for run in ws.list_runs(method=m):
            cfg = run.params.get("config") or {}
            metrics = run.metrics or {}
            out.append({"id": run.id, "method": run.method, "status": run.status,
                        "data": run.dataset, "arch": run.model,
                        "patterns": ",".join(map(str, cfg.get("patterns") or [cfg.get("pattern", "")])),
                        "counts": ",".join(map(str, cfg.get("counts") or [])),
                        "cells_done": metrics.get("cells_done"), "cells_total": metrics.get("cells_total"),
                        "created": run.created})
    return sorted(out, key=lambda r: -r["id"])


def save_patch(ws: Any, name: str, data: bytes) -> str:
    """Store an uploaded patch image as ``rare/patches/<name>.png``; returns that workspace-relative
    path (what `core.rare.inject.PatchSpec.path` takes). The bytes must be an image PIL can read."""
    stem = _SAFE.sub("_", Path(str(name)).stem).strip("._") or "patch"
    try:
        with Image.open(BytesIO(data)) as im:
            im.load()
            png = BytesIO()
            im.convert("RGBA").save(png, format="PNG")
    except (UnidentifiedImageError, OSError) as exc:
        raise SpurAuditError(f"the uploaded patch {name!r} is not an image PIL can read ({exc}); upload a PNG") from None
    rel = f"{PATCH_DIR}/{stem}.png"
    ws.write_bytes(rel, png.getvalue())
    return rel


def list_patches(ws: Any) -> list[str]:
    """Workspace-relative paths of the stored patch images."""
    folder = ws.path(PATCH_DIR)
    return [f"{PATCH_DIR}/{p.name}" for p in sorted(folder.glob("*.png"))] if folder.is_dir() else []


def patch_preview(ws: Any, rel: str) -> np.ndarray:
    """A stored patch as uint8 (h, w, 4) RGBA (for showing it)."""
    return np.clip(np.rint(load_patch_png(rel, root=ws.root) * 255), 0, 255).astype(np.uint8)


__all__ = ["SWEEP_METHOD", "CANARY_METHOD", "RareRun", "load_rare_run", "list_rare_runs", "finished_cells",
           "save_patch", "list_patches", "patch_preview", "run_rel", "cell_rel", "shadow_rel"]
