"""The sample table of a dataset (`Manifest`) and its lazy image / torch views.

A manifest is one row per image:

======================  =========  ===============================================================
column                  dtype      meaning
======================  =========  ===============================================================
``sample_id``           int64      unique, stable id (feature rows follow ascending ``sample_id``)
``path``                str        image path relative to ``root`` (posix)
``label``               int64      class index 0..K-1
``class_name``          str        ``class_names[label]``
``split``               str        ``train`` / ``val`` / ``test``
``bias``                int64      (optional) bias attribute, −1 = unknown
``aligned``             boolean    (optional) bias value == the one the class is correlated with;
                                   missing (``pd.NA``) when unknown
``group``               int64      (optional) group index ``label * n_bias_values + bias``
``mask_path``           str        (optional) object mask image relative to ``root`` (nonzero = object;
                                   absolute when it sits in a mask folder outside ``root``; blank = none)
``bias_<name>``         int64      (optional) further bias attributes (``bias_columns`` lists them);
``aligned_<name>``      boolean    and their alignment flags
======================  =========  ===============================================================

Besides the table a manifest carries ``root`` (folder the paths are relative to), ``class_names``,
``bias_columns`` (e.g. ``['bias']`` or ``['bias_left', 'bias_right']``; ``bias`` always mirrors the
first) and ``attrs``: a JSON-able dict of metadata. Builders put their kind, parameters, seed and the
realised conflicting fractions there:

- ``attrs["conflict_fraction"]``: ``{split: fraction of rows with aligned == False}``
- ``attrs["conflict_count"]``: ``{split: number of such rows}``
- ``attrs["conflict_fraction_by_bias"]``: ``{bias_column: {split: fraction}}`` (multi-bias builders)

Storage: ``manifest.parquet`` with ``class_names``, ``bias_columns`` and ``attrs`` as JSON under the
Parquet schema metadata key ``b"spuraudit"``; a ``.csv`` path writes CSV plus a ``<name>.csv.json``
sidecar with the same metadata. Loading images is lazy (PIL, on access).
"""
from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from core.errors import SpurAuditError
from core.progress import ProgressFn, null_progress

SPLIT_NAMES = ("train", "val", "test")
REQUIRED_COLUMNS = ("sample_id", "path", "label", "class_name", "split")
METADATA_KEY = b"spuraudit"
MAX_LISTED = 5

Transform = Callable[[torch.Tensor], torch.Tensor]


def _as_str_list(values: Iterable[Any]) -> list[str]:
    return [str(v) for v in values]


class Manifest:
    """A table of samples plus the folder its relative paths start from (see module docstring).

    Row indices ``i`` used by ``image_path(i)``, ``load_image(i)``, ``to_dataset()[i]`` are positions
    (0..len-1) in ``df``, not ``sample_id`` values.
    """

    def __init__(self, df: pd.DataFrame, *, root: str | Path, class_names: list[str] | None = None,
                 bias_columns: list[str] | None = None, attrs: dict | None = None,
                 skipped: list[dict] | None = None) -> None:
        missing = [c for c in ("path", "label", "split") if c not in df.columns]
        if missing:
            raise SpurAuditError(f"manifest table lacks column(s) {missing}; it needs "
                                 f"{list(REQUIRED_COLUMNS)} (sample_id and class_name can be derived)")
        df = df.copy()
        if "sample_id" not in df.columns:
            df.insert(0, "sample_id", np.arange(len(df), dtype=np.int64))
        labels = pd.to_numeric(df["label"], errors="coerce")
        if class_names is None:
            if "class_name" in df.columns and labels.notna().all():
                pairs = df.assign(_l=labels).drop_duplicates("_l").sort_values("_l")
                n = int(labels.max()) + 1 if len(df) else 0
                names = {int(l): str(c) for l, c in zip(pairs["_l"], pairs["class_name"])}
                class_names = [names.get(k, str(k)) for k in range(n)]
            else:
                n = int(labels.max()) + 1 if len(df) and labels.notna().any() else 0
                class_names = [str(k) for k in range(n)]
        self.class_names: list[str] = _as_str_list(class_names)
        df["sample_id"] = pd.to_numeric(df["sample_id"], errors="raise").astype(np.int64)
        df["path"] = df["path"].astype(str)
        df["split"] = df["split"].astype(str)
        if labels.notna().all() and (labels == labels.round()).all():
            df["label"] = labels.astype(np.int64)
        else:
            df["label"] = labels  # kept as float with NaN so validate() can name the bad rows
        if "class_name" not in df.columns:
            k = len(self.class_names)
            df["class_name"] = [self.class_names[int(l)] if pd.notna(l) and 0 <= l < k else "?"
                                for l in df["label"]]
        df["class_name"] = df["class_name"].astype(str)
        if bias_columns is None:
            bias_columns = ["bias"] if "bias" in df.columns else []
        self.bias_columns: list[str] = list(bias_columns)
        for col in self.bias_columns:
            if col not in df.columns:
                raise SpurAuditError(f"bias column {col!r} is not in the manifest table "
                                     f"(columns: {list(df.columns)})")
        if self.bias_columns and "bias" not in df.columns:
            df["bias"] = df[self.bias_columns[0]]
        for col in df.columns:
            if col == "bias" or col.startswith("bias_"):
                df[col] = pd.to_numeric(df[col], errors="coerce").fillna(-1).astype(np.int64)
            elif col == "aligned" or col.startswith("aligned_"):
                df[col] = df[col].astype("boolean")
            elif col == "group":
                df[col] = pd.to_numeric(df[col], errors="coerce").fillna(-1).astype(np.int64)
        ordered = [c for c in REQUIRED_COLUMNS if c in df.columns]
        df = df[ordered + [c for c in df.columns if c not in ordered]]
        self.df: pd.DataFrame = df.reset_index(drop=True)
        self.root: Path = Path(root).expanduser().resolve()
        self.attrs: dict = dict(attrs or {})
        self.skipped: list[dict] = list(skipped or [])

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.df)

    def __repr__(self) -> str:
        counts = self.df["split"].value_counts().to_dict() if len(self.df) else {}
        return (f"Manifest({len(self)} samples, {len(self.class_names)} classes, splits={counts}, "
                f"bias_columns={self.bias_columns}, root={str(self.root)!r})")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def labels(self) -> np.ndarray:
        """int64 (N,) class indices."""
        return self.df["label"].to_numpy(dtype=np.int64)

    @property
    def sample_ids(self) -> np.ndarray:
        """int64 (N,) sample ids."""
        return self.df["sample_id"].to_numpy(dtype=np.int64)

    @property
    def bias(self) -> np.ndarray | None:
        """int64 (N,) first bias attribute (−1 = unknown), or None without bias."""
        if "bias" not in self.df.columns:
            return None
        return self.df["bias"].to_numpy(dtype=np.int64)

    def bias_values(self, column: str) -> np.ndarray:
        """int64 (N,) values of one bias column (one of ``bias_columns`` or ``bias``)."""
        if column not in self.df.columns:
            raise SpurAuditError(f"no bias column {column!r}; this manifest has {self.bias_columns or 'none'}")
        return self.df[column].to_numpy(dtype=np.int64)

    @property
    def aligned(self) -> np.ndarray | None:
        """bool (N,) bias-aligned flags, or None when unknown for every row (unknown rows -> False)."""
        if "aligned" not in self.df.columns or self.df["aligned"].isna().all():
            return None
        return self.df["aligned"].fillna(False).to_numpy(dtype=bool)

    def copy(self) -> "Manifest":
        return Manifest(self.df, root=self.root, class_names=self.class_names,
                        bias_columns=self.bias_columns, attrs=json.loads(json.dumps(self.attrs, default=str)),
                        skipped=self.skipped)

    def split(self, name: str) -> "Manifest":
        """The rows of split ``name`` (``train``/``val``/``test``), in ascending ``sample_id``."""
        if name not in SPLIT_NAMES:
            raise SpurAuditError(f"unknown split {name!r}; valid choices: {', '.join(SPLIT_NAMES)}")
        sub = self.df[self.df["split"] == name].sort_values("sample_id", kind="stable")
        out = Manifest(sub, root=self.root, class_names=self.class_names,
                       bias_columns=self.bias_columns, attrs=self.attrs)
        out._tensor_cache = getattr(self, "_tensor_cache", None)
        return out

    def splits(self) -> list[str]:
        """Split names present, in train/val/test order."""
        present = set(self.df["split"].unique())
        return [s for s in SPLIT_NAMES if s in present]

    def summary(self) -> dict:
        """A JSON-able overview: sizes, class counts per split, conflicting fractions."""
        out: dict[str, Any] = {"n": len(self), "num_classes": self.num_classes,
                               "class_names": self.class_names, "bias_columns": self.bias_columns,
                               "root": str(self.root), "splits": {}}
        for s in self.splits():
            sub = self.df[self.df["split"] == s]
            info: dict[str, Any] = {"n": int(len(sub)),
                                    "per_class": {self.class_names[int(k)] if 0 <= int(k) < self.num_classes
                                                  else str(k): int(v)
                                                  for k, v in sub["label"].value_counts().sort_index().items()}}
            if "aligned" in sub.columns and sub["aligned"].notna().any():
                known = sub["aligned"].dropna()
                info["conflicting"] = int((~known.astype(bool)).sum())
                info["conflict_fraction"] = float((~known.astype(bool)).mean())
            by_bias = {}
            for col in self.bias_columns:
                acol = "aligned" + col[len("bias"):]  # bias_left -> aligned_left
                if col != "bias" and acol in sub.columns and sub[acol].notna().any():
                    by_bias[col] = float((~sub[acol].dropna().astype(bool)).mean())
            if by_bias:
                info["conflict_fraction_by_bias"] = by_bias
            if "mask_path" in sub.columns:
                info["with_mask"] = int(sub["mask_path"].fillna("").astype(str).str.strip().ne("").sum())
            out["splits"][s] = info
        if self.attrs:
            out["attrs"] = self.attrs
        return out

    # ------------------------------------------------------------------ storage
    def _metadata(self) -> dict:
        return {"version": 1, "class_names": self.class_names, "bias_columns": self.bias_columns,
                "attrs": self.attrs}

    def save(self, path: str | Path) -> Path:
        """Write the table to ``path`` (``.parquet``; ``.csv`` writes CSV + ``<path>.json`` sidecar).

        ``root`` is not stored (paths are relative); `load` takes it, defaulting to the file's folder.
        Callers writing into a workspace pass a path obtained from the workspace (e.g. inside
        ``ws.atomic_path``).
        """
        path = Path(path)
        meta = json.dumps(self._metadata(), sort_keys=True, default=str)
        if path.suffix.lower() == ".csv":
            self.df.to_csv(path, index=False)
            Path(str(path) + ".json").write_text(meta)
            return path
        table = pa.Table.from_pandas(self.df, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: meta.encode()})
        pq.write_table(table, path)
        return path

    @classmethod
    def load(cls, path: str | Path, root: str | Path | None = None) -> "Manifest":
        """Read a manifest written by `save`; ``root`` defaults to the manifest file's folder."""
        path = Path(path)
        if not path.is_file():
            raise SpurAuditError(f"manifest file {path} does not exist; build or add the dataset first "
                                 "(`python -m core dataset build ...` or `dataset add ...`)")
        if path.suffix.lower() == ".csv":
            df = pd.read_csv(path, keep_default_na=False, na_values=[""])
            side = Path(str(path) + ".json")
            meta = json.loads(side.read_text()) if side.is_file() else {}
        else:
            table = pq.read_table(path)
            raw = (table.schema.metadata or {}).get(METADATA_KEY)
            meta = json.loads(raw.decode()) if raw else {}
            df = table.to_pandas()
        return cls(df, root=root if root is not None else path.parent,
                   class_names=meta.get("class_names"), bias_columns=meta.get("bias_columns"),
                   attrs=meta.get("attrs"))

    # ------------------------------------------------------------------ images
    def image_path(self, i: int) -> Path:
        """Absolute path of row ``i``'s image."""
        return self.root / self.df["path"].iat[int(i)]

    def load_image(self, i: int) -> Image.Image:
        """Row ``i``'s image as a PIL RGB image (decoded now)."""
        p = self.image_path(i)
        try:
            with Image.open(p) as img:
                return img.convert("RGB")
        except (OSError, ValueError) as exc:
            raise SpurAuditError(f"cannot read image {p} (row {i}, sample_id "
                                 f"{int(self.df['sample_id'].iat[int(i)])}): {exc}; restore the file "
                                 "or re-add the dataset with skip_bad=True") from exc

    def load_mask(self, i: int) -> np.ndarray | None:
        """Row ``i``'s object mask as bool (H, W) (True = object), or None when there is none."""
        if "mask_path" not in self.df.columns:
            return None
        rel = self.df["mask_path"].iat[int(i)]
        if rel is None or (isinstance(rel, float) and np.isnan(rel)) or str(rel) in ("", "nan", "None"):
            return None
        with Image.open(self.root / str(rel)) as img:
            return np.asarray(img.convert("L")) > 0

    def to_dataset(self, transform: Transform | None = None) -> "ManifestDataset":
        """A torch ``Dataset`` yielding ``(image, label, i)``: image float32 (C, H, W) in [0, 1]
        (after ``transform``, a callable on that tensor, e.g. a ``torchvision.transforms.v2`` pipeline),
        label int, i = row position in this manifest."""
        return ManifestDataset(self, transform=transform)

    def load_tensors(self, *, progress: ProgressFn | None = None,
                     size: int | tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """All rows as one in-memory batch.

        Returns ``(images, labels)``: images float32 (N, 3, H, W) in [0, 1], labels int64 (N,), in row
        order. All images must share one size unless ``size`` (int or (H, W)) resizes them (bilinear).
        When the manifest came from `core.data.load_manifest`, the decoded uint8 array is cached in the
        workspace (``datasets/<name>/cache/``) so later calls skip PNG decoding.
        """
        arr = self.load_uint8(progress=progress, size=size)
        images = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)  # (N,H,W,3)->(N,3,H,W)
        return images.contiguous(), torch.from_numpy(self.labels.copy())

    def load_uint8(self, *, progress: ProgressFn | None = None,
                   size: int | tuple[int, int] | None = None) -> np.ndarray:
        """All rows decoded as uint8 (N, H, W, 3) (see `load_tensors`)."""
        progress = progress or null_progress
        hw = (size, size) if isinstance(size, int) else (tuple(size) if size is not None else None)
        cache = getattr(self, "_tensor_cache", None)
        key = None
        if cache is not None:
            key = cache.key(self, hw)
            hit = cache.get(key)
            if hit is not None and hit.shape[0] == len(self):
                progress(1.0, "loaded cached images")
                return np.asarray(hit)
        n = len(self)
        if n == 0:
            return np.zeros((0, hw[0] if hw else 0, hw[1] if hw else 0, 3), np.uint8)
        out: np.ndarray | None = None
        step = max(1, n // 100)
        for i in range(n):
            img = self.load_image(i)
            if hw is not None and (img.height, img.width) != hw:
                img = img.resize((hw[1], hw[0]), Image.BILINEAR)
            a = np.asarray(img, dtype=np.uint8)
            if out is None:
                out = np.empty((n,) + a.shape, np.uint8)
            elif a.shape != out.shape[1:]:
                raise SpurAuditError(
                    f"image {self.image_path(i)} is {a.shape[1]}x{a.shape[0]} but earlier ones are "
                    f"{out.shape[2]}x{out.shape[1]}; pass size=(H, W) to resize them all")
            out[i] = a
            if i % step == 0:
                progress(i / n, f"decoding images {i}/{n}")
        progress(1.0, f"decoded {n} images")
        if cache is not None and key is not None:
            cache.put(key, out)
        return out

    # ------------------------------------------------------------------ checks
    def validate(self, *, skip_bad: bool = False, check_images: bool = True,
                 progress: ProgressFn | None = None, known_bad: list[dict] | None = None) -> list[dict]:
        """Check every row; return the bad ones as dicts ``{sample_id, path, label, reason}``.

        Checks: path not empty and inside ``root`` (no absolute paths, no ``..``, and after resolving
        symbolic links — also with ``check_images=False``), file exists, image readable
        (PIL header + ``verify()``; skipped when ``check_images=False``), label in 0..K-1, split in
        train/val/test, unique ``sample_id``, no empty class.

        Without ``skip_bad`` any bad row raises `SpurAuditError` naming the first 5 offenders and the
        fix. With ``skip_bad=True`` the bad rows are removed from this manifest **in place**, empty
        classes are dropped (labels renumbered), and the list of what was removed is returned and
        appended to ``self.skipped``. ``known_bad``: rows a loader already rejected (e.g. unparsable file
        names; dicts with at least ``path`` and ``reason``), listed first in the error / returned list.
        """
        progress = progress or null_progress
        df = self.df
        if df["sample_id"].duplicated().any():
            dup = df.loc[df["sample_id"].duplicated(), "sample_id"].head(MAX_LISTED).tolist()
            raise SpurAuditError(f"duplicate sample_id values {dup}; each row needs a unique id")
        bad: list[dict] = [dict({"sample_id": None, "label": None}, **b) for b in (known_bad or [])]
        bad_idx: list[int] = []
        k = self.num_classes
        n = len(df)
        step = max(1, n // 100)
        outside = _Confinement(self.root)
        for i, (sid, rel, label, split) in enumerate(zip(df["sample_id"], df["path"], df["label"], df["split"])):
            reason = None
            p = PurePosixPath(str(rel).replace("\\", "/"))
            if str(rel).strip() in ("", ".", "nan"):
                reason = "empty path"
            elif p.is_absolute() or os.path.isabs(str(rel)) or ".." in p.parts:
                reason = f"path outside the dataset root {self.root}"
            elif pd.isna(label) or float(label) != int(float(label)) or not 0 <= int(label) < k:
                reason = f"unknown label {label!r} (classes are 0..{k - 1}: {self.class_names[:10]})"
            elif split not in SPLIT_NAMES:
                reason = f"unknown split {split!r} (valid: {', '.join(SPLIT_NAMES)})"
            elif (target := outside(str(rel))) is not None:
                reason = f"path outside the dataset root {self.root} (a symbolic link to {target})"
            else:
                full = self.root / str(rel)
                if not full.is_file():
                    reason = "missing image file"
                elif check_images:
                    try:
                        with Image.open(full) as img:
                            img.verify()
                    except Exception as exc:  # PIL raises many types for corrupt files
                        reason = f"unreadable image ({type(exc).__name__}: {exc})"
            if reason is not None:
                bad.append({"sample_id": int(sid), "path": str(rel),
                            "label": None if pd.isna(label) else label, "reason": reason})
                bad_idx.append(i)
            if i % step == 0:
                progress(i / max(n, 1), f"checking {i}/{n}")
        progress(1.0, "checked")
        if bad and not skip_bad:
            raise SpurAuditError(_bad_rows_message(bad, self.root))
        if bad:
            keep = np.ones(n, bool)
            keep[bad_idx] = False
            self.df = self.df[keep].reset_index(drop=True)
            self.df["label"] = self.df["label"].astype(np.int64)
        counts = np.bincount(self.df["label"].to_numpy(dtype=np.int64), minlength=k) if len(self.df) else np.zeros(k, int)
        empty = [self.class_names[c] for c in range(k) if counts[c] == 0]
        if empty and not skip_bad:
            raise SpurAuditError(
                f"{len(empty)} empty class(es) with no usable image: {empty[:MAX_LISTED]}; add images for "
                "them, remove them from the source, or pass skip_bad=True (--skip-bad) to drop them")
        if empty:
            self._drop_classes([c for c in range(k) if counts[c] == 0])
            bad.extend({"sample_id": None, "path": "", "label": None, "reason": f"empty class {name!r} dropped"}
                       for name in empty)
        if len(self.df) == 0:
            raise SpurAuditError(f"no usable images left under {self.root}; check the path and format")
        self.skipped.extend(bad)
        return bad

    def _drop_classes(self, classes: list[int]) -> None:
        kept = [c for c in range(self.num_classes) if c not in set(classes)]
        remap = {old: new for new, old in enumerate(kept)}
        self.df["label"] = self.df["label"].map(remap).astype(np.int64)
        self.class_names = [self.class_names[c] for c in kept]
        if "group" in self.df.columns:
            self.df = self.df.drop(columns=["group"])


class _Confinement:
    """``outside(rel)``: where ``root/rel`` really points when that is outside ``root`` after resolving
    symbolic links (a linked file or any linked folder on the way), else None. Folders are resolved once
    each, so a million rows cost about one ``lstat`` each."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)
        self._dirs: dict[str, str | None] = {}

    def _escapes(self, real: str) -> bool:
        return not (real == self.root or real.startswith(self.root.rstrip(os.sep) + os.sep))

    def __call__(self, rel: str) -> str | None:
        full = os.path.join(self.root, rel)
        parent = os.path.dirname(full)
        if parent not in self._dirs:
            real = os.path.realpath(parent)
            self._dirs[parent] = real if self._escapes(real) else None
        if self._dirs[parent] is not None:
            return self._dirs[parent]
        if os.path.islink(full):
            real = os.path.realpath(full)
            if self._escapes(real):
                return real
        return None


def _bad_rows_message(bad: list[dict], root: Path) -> str:
    listed = "; ".join(f"{b['path'] or '?'} ({b['reason']})" for b in bad[:MAX_LISTED])
    more = f" and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    return (f"{len(bad)} bad sample(s) under {root}: {listed}{more}. Fix: restore or remove those files / "
            "rows, or pass skip_bad=True (CLI: --skip-bad) to skip them (they are listed in skipped.csv)")


class ManifestDataset(torch.utils.data.Dataset):
    """Lazy torch view of a `Manifest`: item ``i`` = ``(image float32 (C,H,W) in [0,1], label, i)``."""

    def __init__(self, manifest: Manifest, transform: Transform | None = None) -> None:
        self.manifest = manifest
        self.transform = transform
        self._paths = [str(manifest.root / p) for p in manifest.df["path"]]
        self._labels = manifest.labels

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        if not 0 <= int(i) < len(self._paths):
            raise IndexError(i)
        with Image.open(self._paths[i]) as img:
            a = np.asarray(img.convert("RGB"), dtype=np.uint8)
        x = torch.from_numpy(a.copy()).permute(2, 0, 1).float().div_(255.0)  # (H,W,3) -> (3,H,W)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self._labels[i]), int(i)
