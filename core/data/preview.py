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

import pandas as pd

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


__all__ = ["DatasetPreview", "preview_source", "csv_columns", "group_table", "manifest_overview"]
