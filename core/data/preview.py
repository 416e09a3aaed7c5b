"""What an import would bring in, before anything is written: the New audit page's preview.

`preview_source(source, path, **options)` runs the same loader `core.data.add_dataset_from` runs
(`core.data.loaders.LOADERS`), with ``skip_bad=True`` so every bad row is listed with its reason
instead of stopping at the first five, and returns a `DatasetPreview`: the first rows, class counts per
split, split sizes, the (class × bias) groups, the rows with an object mask, and the bad rows. Nothing is
written to any workspace. `csv_columns(path)` reads a CSV's header (the column pickers' choices).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image, ImageDraw

from core.data import SKIPPED_NAME, dataset_dir
from core.data.loaders import get_loader
from core.data.manifest import Manifest
from core.errors import SpurAuditError, check_call_options
from core.progress import ProgressFn

#: the loader arguments a preview fills itself
_FILLED_IN = ("path", "skip_bad", "progress")


@dataclass
class DatasetPreview:
    """A loaded-but-not-saved dataset. ``head``: its first rows (path, class, split, bias, mask);
    ``class_counts``: one row per class, one column per split; ``split_sizes``: {split: n};
    ``groups``: (class × bias value) counts of the train split, or None without bias labels;
    ``conflict_fraction``: {split: fraction of bias-conflicting rows}; ``with_mask``: rows with an
    object mask; ``bad_rows``: the rows an import would refuse (``path``, ``reason``), which an import
    with "skip bad rows" leaves out (listed in the dataset's skipped rows)."""

    source: str
    n: int
    class_names: list[str]
    head: pd.DataFrame
    class_counts: pd.DataFrame
    split_sizes: dict[str, int]
    groups: pd.DataFrame | None
    conflict_fraction: dict[str, float]
    with_mask: int
    bad_rows: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def n_bad(self) -> int:
        return int(len(self.bad_rows))


def csv_columns(path: str | Path) -> list[str]:
    """The header of the CSV at ``path`` (`SpurAuditError` naming the problem when it is not one)."""
    p = Path(str(path)).expanduser()
    if not str(path).strip():
        raise SpurAuditError("type the path of the CSV file that lists the images")
    if not p.is_file():
        raise SpurAuditError(f"CSV file {p} does not exist; type the path of the CSV that lists the images")
    try:
        return [str(c) for c in pd.read_csv(p, nrows=0).columns]
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise SpurAuditError(f"cannot read {p} as CSV ({exc}); give a comma-separated file with a header row") from exc


def group_table(manifest: Manifest, split: str = "train") -> pd.DataFrame | None:
    """(class × bias value) image counts of ``split`` (rows = class names, columns = bias values), or
    None when the manifest has no bias labels."""
    if "bias" not in manifest.df.columns:
        return None
    sub = manifest.df[(manifest.df["split"] == split) & (manifest.df["bias"] >= 0)]
    if len(sub) == 0:
        return None
    names = list(manifest.attrs.get("bias_names") or [])
    table = pd.crosstab(sub["label"], sub["bias"]).reindex(range(manifest.num_classes), fill_value=0)
    table.index = [manifest.class_names[i] for i in table.index]
    table.columns = [names[b] if 0 <= int(b) < len(names) else f"bias {int(b)}" for b in table.columns]
    table.index.name = "class"
    return table


def manifest_overview(manifest: Manifest) -> dict[str, Any]:
    """Class counts per split, split sizes, groups, conflicting fractions and mask count of a manifest
    (what the preview and the Dataset page show)."""
    df = manifest.df
    splits = manifest.splits()
    counts = pd.DataFrame({s: df.loc[df["split"] == s, "label"].value_counts() for s in splits})
    counts = counts.reindex(range(manifest.num_classes), fill_value=0).fillna(0).astype(int)
    counts.index = manifest.class_names
    counts.index.name = "class"
    conflict = {}
    if "aligned" in df.columns:
        for s in splits:
            known = df.loc[df["split"] == s, "aligned"].dropna()
            if len(known):
                conflict[s] = float((~known.astype(bool)).mean())
    with_mask = 0
    if "mask_path" in df.columns:
        with_mask = int(df["mask_path"].fillna("").astype(str).str.strip().ne("").sum())
    return {"class_counts": counts, "split_sizes": {s: int((df["split"] == s).sum()) for s in splits},
            "groups": group_table(manifest), "conflict_fraction": conflict, "with_mask": with_mask}


def preview_source(source: str, path: str | Path, *, head: int = 8, progress: ProgressFn | None = None,
                   **options: Any) -> DatasetPreview:
    """Load ``path`` with loader ``source`` and ``options`` (as `core.data.add_dataset_from` would,
    e.g. ``label_col=``, ``mask_col=``, ``mask_dir=``) keeping bad rows aside; write nothing."""
    loader = get_loader(source)
    check_call_options(f"loader {source!r}", loader, options, unlisted=_FILLED_IN)
    if not str(path).strip():
        raise SpurAuditError("type the dataset's path (a folder, or the CSV file for a CSV dataset)")
    manifest = loader(Path(str(path)).expanduser(), skip_bad=True, progress=progress, **options)
    df = manifest.df
    cols = [c for c in ("path", "class_name", "split", "bias", "aligned", "mask_path") if c in df.columns]
    shown = df[cols].head(head).copy()
    if "class_name" not in shown.columns:
        shown.insert(1, "class_name", [manifest.class_names[int(l)] for l in df["label"].head(head)])
    bad = pd.DataFrame(manifest.skipped, columns=["sample_id", "path", "label", "reason"])[["path", "reason"]]
    notes = [str(manifest.attrs[k]) for k in ("split_note", "aligned_rule") if k in manifest.attrs]
    over = manifest_overview(manifest)
    return DatasetPreview(source=source, n=len(manifest), class_names=list(manifest.class_names), head=shown,
                          class_counts=over["class_counts"], split_sizes=over["split_sizes"], groups=over["groups"],
                          conflict_fraction=over["conflict_fraction"], with_mask=over["with_mask"],
                          bad_rows=bad, notes=notes)


def load_skipped(ws: Any, dataset: str) -> pd.DataFrame | None:
    """The rows skipped when ``dataset`` was imported (path, reason), or None when none were."""
    path = ws.path(f"{dataset_dir(dataset)}/{SKIPPED_NAME}")
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    return table[[c for c in ("sample_id", "path", "label", "reason") if c in table.columns]]


def group_heatmap(table: pd.DataFrame, *, title: str = "Images per (class, bias) group, train") -> go.Figure:
    """A heatmap of `group_table`'s counts (rows = classes, columns = bias values), counts written in
    the cells; the diagonal-heavy pattern of a biased dataset shows at a glance."""
    z = table.to_numpy()
    fig = go.Figure(go.Heatmap(z=z, x=[str(c) for c in table.columns], y=[str(i) for i in table.index],
                               colorscale="Blues", text=z, texttemplate="%{text}",
                               hovertemplate="class %{y}<br>bias %{x}<br>%{z} images<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="bias value", yaxis_title="class", height=max(260, 26 * len(table) + 120),
                      margin=dict(l=10, r=10, t=50, b=10), yaxis=dict(autorange="reversed"))
    return fig


def sample_rows(manifest: Manifest, class_index: int, *, n: int = 12, split: str = "train", seed: int = 0) -> list[int]:
    """Up to ``n`` row positions of class ``class_index`` in ``split``: bias-conflicting ones first (up
    to half), then a seeded sample of the rest, so the grid shows both kinds."""
    df = manifest.df
    rows = np.flatnonzero(((df["label"] == class_index) & (df["split"] == split)).to_numpy())
    if rows.size == 0:
        return []
    rng = np.random.default_rng(seed)
    if "aligned" in df.columns:
        aligned = df["aligned"].to_numpy()
        conflicting = [int(r) for r in rows if aligned[r] is not pd.NA and aligned[r] is not None
                       and not pd.isna(aligned[r]) and not bool(aligned[r])]
    else:
        conflicting = []
    pick = list(rng.permutation(conflicting)[: n // 2]) if conflicting else []
    rest = [int(r) for r in rng.permutation(rows) if int(r) not in set(pick)]
    return [int(r) for r in pick + rest[: n - len(pick)]]


def is_conflicting(manifest: Manifest, row: int) -> bool:
    if "aligned" not in manifest.df.columns:
        return False
    v = manifest.df["aligned"].iat[int(row)]
    return not pd.isna(v) and not bool(v)


def outline_mask(tile: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (255, 221, 0)) -> np.ndarray:
    """``tile`` (H, W, 3) uint8 with the boundary pixels of the bool ``mask`` (H, W) painted ``color``
    (a pixel of the mask with a 4-neighbour outside it; the tile's outermost pixels are left as they are);
    returns the tile."""
    m = np.asarray(mask, bool)
    inner = m.copy()
    inner[1:-1, 1:-1] = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    tile[m & ~inner] = color                                        # the mask's boundary
    return tile


def sample_tile(manifest: Manifest, row: int, *, size: int = 96) -> Image.Image:
    """Row ``row``'s image as an RGB tile (longer side ``size``): its object mask (when it has one)
    outlined in yellow, and a red frame when it is bias-conflicting."""
    img = manifest.load_image(int(row)).convert("RGB")
    scale = size / max(img.size)
    small = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    resample = Image.NEAREST if max(img.size) <= 64 else Image.BILINEAR
    tile = np.asarray(img.resize(small, resample)).copy()
    try:
        mask = manifest.load_mask(int(row))
    except OSError:
        mask = None
    if mask is not None:
        m = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(small, Image.NEAREST)) > 0
        tile = outline_mask(tile, m)
    out = Image.fromarray(tile)
    if is_conflicting(manifest, row):
        ImageDraw.Draw(out).rectangle([0, 0, out.width - 1, out.height - 1], outline=(220, 30, 30), width=3)
    return out


__all__ = ["DatasetPreview", "preview_source", "csv_columns", "group_table", "manifest_overview", "load_skipped",
           "group_heatmap", "sample_rows", "sample_tile", "outline_mask", "is_conflicting"]
