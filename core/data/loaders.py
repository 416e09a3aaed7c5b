"""Loaders for datasets users already have on disk. Each returns a `Manifest` whose ``root`` is the
user's folder (images are not copied); `core.data.add_dataset_from` saves and registers it.

=============  ==================================================================================
source         format
=============  ==================================================================================
imagefolder    ``ROOT/<class>/<image>`` (class = folder name, sorted); or
               ``ROOT/{train,val,test}/<class>/<image>`` (``valid``/``validation`` = val)
csv            a CSV with a path column and a label column (names configurable), optional bias,
               split and object-mask columns; paths relative to ``root`` (default: the CSV's folder)
waterbirds     ``ROOT/metadata.csv`` with ``img_filename, y, place, split`` (split 0/1/2 =
               train/val/test; bias = place, aligned = (y == place))
celeba         ``ROOT/list_attr_celeba.txt`` + ``ROOT/list_eval_partition.txt`` (0/1/2), images in
               ``ROOT/img_align_celeba/`` (or ``ROOT``); target / bias attributes (default
               Blond_Hair / Male) are ±1 -> label / bias 1 when +1
disent         DisEnt-style PNG folders ``ROOT/{align,conflict,valid,test}/`` with file names
               ``*_{label}_{bias}.png`` (CMNIST, CIFAR10-C, BFFHQ), optionally in class subfolders;
               align + conflict = train, valid = val; aligned = (label == bias)
=============  ==================================================================================

Without a split in the source (imagefolder without split folders, csv without ``split_col``, disent
without ``valid/``) the loader makes a **seeded, class-stratified** split (``val_fraction`` /
``test_fraction``, default 10 % / 10 %) and records it in ``attrs["split_note"]``.

Where the source names no alignment rule (csv, celeba) a sample counts as aligned when its bias value
is its class's most frequent bias value in the training split (``attrs["aligned_rule"]``).

Bad input (missing / unreadable images, unknown labels, empty classes, missing columns, paths outside
the root) raises `SpurAuditError` naming the first 5 offenders and the fix; ``skip_bad=True`` drops
bad rows instead and returns them in ``manifest.skipped``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from PIL import Image

from core.data.manifest import SPLIT_NAMES, Manifest
from core.data.mnist_source import stratified_partition
from core.errors import SpurAuditError, check_choice
from core.progress import ProgressFn

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
SPLIT_ALIASES = {
    "train": "train", "training": "train", "tr": "train", "0": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val", "1": "val",
    "test": "test", "testing": "test", "te": "test", "2": "test",
}
DISENT_NAME = re.compile(r"^(?:.*_)?(-?\d+)_(-?\d+)$")  # stem ends with _{label}_{bias}


# ---------------------------------------------------------------------------- helpers
def _existing_dir(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise SpurAuditError(f"{what} folder {p} does not exist; check the path")
    if not p.is_dir():
        raise SpurAuditError(f"{what} path {p} is not a folder; pass the dataset's root folder")
    return p.resolve()


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if _is_image(p) and not any(
        part.startswith(".") for part in p.relative_to(folder).parts))


def _norm_split(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    key = str(value).strip().lower()
    if key.endswith(".0"):
        key = key[:-2]
    return SPLIT_ALIASES.get(key)


# ---------------------------------------------------------------------------- object masks
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")


def _mask_rel(mask: Path, root: Path) -> str:
    """A mask's path as stored in ``mask_path``: relative to ``root`` when inside it, else absolute
    (a mask folder the user named explicitly may sit beside the images' root)."""
    try:
        return mask.resolve().relative_to(root).as_posix()
    except ValueError:
        return mask.resolve().as_posix()


def _masks_from_dir(df: pd.DataFrame, root: Path, mask_dir: str | Path) -> tuple[list[str], dict[int, str]]:
    """For each row's image ``<rel>`` the mask ``<mask_dir>/<rel>`` with a mask suffix (``.png`` first,
    then the image's own name): ``(mask paths, {row position: reason})`` (reason: no mask found)."""
    mdir = _existing_dir(mask_dir, "mask")
    out: list[str] = []
    reasons: dict[int, str] = {}
    for i, rel in enumerate(df["path"].astype(str)):
        base = mdir / rel
        found = next((c for c in [base.with_suffix(s) for s in MASK_SUFFIXES] + [base] if c.is_file()), None)
        if found is None:
            reasons[i] = f"missing mask file (no {Path(rel).with_suffix('.png').as_posix()} under {mdir})"
            out.append("")
        else:
            out.append(_mask_rel(found, root))
    return out, reasons


def _check_mask_files(masks: list[str], root: Path, *, verify: bool = True) -> dict[int, str]:
    """{row position: reason} for mask paths that name no (readable, with ``verify``) file (blank = no
    mask: allowed)."""
    reasons: dict[int, str] = {}
    for i, rel in enumerate(masks):
        if not rel:
            continue
        full = Path(rel) if Path(rel).is_absolute() else root / rel
        if not full.is_file():
            reasons[i] = f"missing mask file {rel}"
            continue
        if not verify:
            continue
        try:
            with Image.open(full) as img:
                img.verify()
        except Exception as exc:  # PIL raises many types for corrupt files
            reasons[i] = f"unreadable mask {rel} ({type(exc).__name__}: {exc})"
    return reasons


def _drop_rows(df: pd.DataFrame, reasons: dict[int, str]) -> tuple[pd.DataFrame, list[dict]]:
    """Remove the rows at the positions in ``reasons``; return (kept rows, known_bad dicts)."""
    if not reasons:
        return df, []
    bad = [{"sample_id": int(df["sample_id"].iat[i]), "path": str(df["path"].iat[i]), "reason": why}
           for i, why in sorted(reasons.items())]
    keep = np.ones(len(df), bool)
    keep[list(reasons)] = False
    return df[keep].reset_index(drop=True), bad


def _attach_masks(df: pd.DataFrame, root: Path, mask_dir: str | Path, *,
                  verify: bool = True) -> tuple[pd.DataFrame, list[dict]]:
    """Add ``mask_path`` from a mask folder mirroring the images (`_masks_from_dir`), checked
    (`_check_mask_files`); rows without a usable mask are removed and returned as known_bad."""
    masks, reasons = _masks_from_dir(df, root, mask_dir)
    for i, why in _check_mask_files(masks, root, verify=verify).items():
        reasons.setdefault(i, why)
    df = df.assign(mask_path=masks)
    return _drop_rows(df, reasons)


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= float(v) < 1.0:
            raise SpurAuditError(f"{name} must be in [0, 1), got {v!r}")
    if float(val_fraction) + float(test_fraction) >= 1.0:
        raise SpurAuditError("val_fraction + test_fraction must be below 1 so some training data is left")


def seeded_split(labels: np.ndarray, *, seed: int, val_fraction: float = 0.1,
                 test_fraction: float = 0.1, splits: tuple[str, ...] = SPLIT_NAMES) -> np.ndarray:
    """A seeded, class-stratified assignment of ``train``/``val``/``test`` (object array (N,)).

    Each class contributes ``round(n_c * fraction)`` (largest remainder over the whole set) to val and
    to test; the rest is train. ``splits`` restricts which splits are made (e.g. ``("train", "val")``
    when the source already has a test split: then only ``val_fraction`` is used).
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    out = np.full(n, "train", dtype=object)
    if n == 0:
        return out
    n_val = int(round(n * val_fraction)) if "val" in splits else 0
    n_test = int(round(n * test_fraction)) if "test" in splits else 0
    val_idx, test_idx = stratified_partition(labels, [n_val, n_test], seed=seed)
    out[val_idx] = "val"
    out[test_idx] = "test"
    return out


def _majority_aligned(df: pd.DataFrame, num_classes: int) -> pd.Series:
    """aligned = bias equals the class's most frequent known bias value in train (else all rows)."""
    known = df[df["bias"] >= 0]
    ref = known[known["split"] == "train"]
    if len(ref) == 0:
        ref = known
    majority = {}
    for c, sub in ref.groupby("label"):
        counts = sub["bias"].value_counts()
        majority[int(c)] = int(counts.index[np.argmax(counts.to_numpy())]) if len(counts) else -1
    aligned = pd.Series(pd.NA, index=df.index, dtype="boolean")
    has = df["bias"] >= 0
    aligned[has] = [majority.get(int(l), -2) == int(b) for l, b in zip(df.loc[has, "label"], df.loc[has, "bias"])]
    return aligned


def _add_group(df: pd.DataFrame) -> None:
    if "bias" in df.columns and (df["bias"] >= 0).any():
        n_bias = int(df["bias"].max()) + 1
        df["group"] = np.where(df["bias"] >= 0, df["label"].astype("int64") * n_bias + df["bias"], -1)


def _finish(df: pd.DataFrame, *, root: Path, class_names: list[str], source: str, params: dict,
            known_bad: list[dict], skip_bad: bool, check_images: bool, progress: ProgressFn | None,
            bias_columns: list[str] | None = None, attrs: dict | None = None) -> Manifest:
    attrs = dict(attrs or {})
    attrs.update({"source": source, "params": params})
    manifest = Manifest(df, root=root, class_names=class_names, bias_columns=bias_columns, attrs=attrs)
    manifest.validate(skip_bad=skip_bad, check_images=check_images, progress=progress, known_bad=known_bad)
    if "aligned" in manifest.df.columns:
        sub = manifest.df
        manifest.attrs["conflict_fraction"] = {
            s: float((~sub.loc[sub["split"] == s, "aligned"].dropna().astype(bool)).mean())
            for s in manifest.splits() if sub.loc[sub["split"] == s, "aligned"].notna().any()}
    manifest.attrs["skipped"] = len(manifest.skipped)
    return manifest


def _relative_path(value: Any, root: Path) -> str:
    """Make a path column value relative to ``root`` when it is an absolute path inside it."""
    s = str(value).strip().replace("\\", "/")
    p = Path(s)
    if p.is_absolute():
        try:
            return p.resolve().relative_to(root).as_posix()
        except ValueError:
            return s  # validate() reports it as outside the root
    return s


def _encode(values: pd.Series, names: list[str] | None, what: str, *, column: str,
            blank_ok: bool = False) -> tuple[np.ndarray, list[str], dict[int, str]]:
    """Map a label-like column to ints 0..K-1: ``(codes, names, reasons)``.

    ``codes`` is a float array (N,) with NaN where a row has no usable value, ``reasons`` maps those
    rows to why (a blank cell counts only when not ``blank_ok``: a blank bias value means "unknown").
    Integer columns keep their values (names ``str(k)``); text columns are mapped to the sorted unique
    values; with ``names`` a value is a name from that list or an index into it. A column mixing numbers
    and text without ``names`` is refused (`SpurAuditError`): whether ``1`` is the second class or a
    class named "1" cannot be guessed.
    """
    text = [None if pd.isna(v) else str(v).strip() for v in values]
    n = len(text)
    blank = np.array([t is None or t == "" for t in text], dtype=bool)
    numeric = np.array(pd.to_numeric(pd.Series([None if b else t for t, b in zip(text, blank)], dtype=object),
                                     errors="coerce"), dtype=float)  # a writable copy (pandas 3 hands out read-only)
    is_num = ~blank & ~np.isnan(numeric)
    is_text = ~blank & np.isnan(numeric)
    out = np.full(n, np.nan)
    reasons: dict[int, str] = {}
    if not blank_ok:
        reasons.update({int(i): f"empty {what}" for i in np.flatnonzero(blank)})

    def not_integer(i: int) -> str:
        return f"{what} {text[i]!r} is not an integer" + (" class index" if what == "label" else "")

    if names is not None:
        names = [str(x) for x in names]
        lookup = {x: i for i, x in enumerate(names)}
        shown = names if len(names) <= 10 else names[:10] + ["..."]
        for i in np.flatnonzero(~blank):
            t, v = text[i], numeric[i]
            if t in lookup:
                out[i] = lookup[t]
            elif is_num[i] and not float(v).is_integer():
                reasons[int(i)] = not_integer(int(i))
            elif is_num[i] and 0 <= int(v) < len(names):
                out[i] = int(v)
            else:
                reasons[int(i)] = f"unknown {what} {t!r} (classes: {shown})"
        return out, names, reasons
    if is_text.any() and is_num.any():
        nums = sorted({text[i] for i in np.flatnonzero(is_num)})[:3]
        words = sorted({text[i] for i in np.flatnonzero(is_text)})[:3]
        raise SpurAuditError(
            f"the {what} column {column!r} mixes class indices and class names (numbers such as "
            f"{', '.join(map(repr, nums))}; text such as {', '.join(map(repr, words))}): it is ambiguous whether "
            f"{nums[0]!r} is an index or a name. Fix: write every {what} as a name or every one as an index "
            + ("0..K-1, or give the class names (class_names=[...]) so numbers are read as indices into them"
               if what == "label" else "0..K-1"))
    if is_text.any():
        uniq = sorted({text[i] for i in np.flatnonzero(is_text)})
        lookup = {x: i for i, x in enumerate(uniq)}
        for i in np.flatnonzero(is_text):
            out[i] = lookup[text[i]]
        return out, uniq, reasons
    for i in np.flatnonzero(is_num):
        v = float(numeric[i])
        if not v.is_integer():
            reasons[int(i)] = not_integer(int(i))
        elif v < 0:
            if what == "label":  # (a negative bias value is "unknown", the manifest convention)
                reasons[int(i)] = f"unknown {what} {text[i]!r} (class indices start at 0)"
        else:
            out[i] = int(v)
    k = int(np.nanmax(out)) + 1 if (~np.isnan(out)).any() else 0
    return out, [str(i) for i in range(k)], reasons


# ---------------------------------------------------------------------------- ImageFolder
def load_imagefolder(path: str | Path, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.1,
                     mask_dir: str | Path | None = None, skip_bad: bool = False, check_images: bool = True,
                     progress: ProgressFn | None = None) -> Manifest:
    """``ROOT/<class>/<image>`` (class index = position of the folder name in sorted order).

    With split folders ``ROOT/{train,val,test}/<class>/...`` (``valid``/``validation`` = val) the
    splits are taken from them (a missing val or test split is carved from train, seeded); otherwise
    a seeded stratified split is made. Empty class folders are bad input (dropped with skip_bad).

    ``mask_dir``: a folder of object masks mirroring the image tree (the mask of ``ROOT/<rel>`` is
    ``mask_dir/<rel>`` as ``.png``, or under the image's own name; nonzero = object). An image
    without a mask is a bad row. A mask folder directly inside ROOT is not taken for a class.
    """
    root = _existing_dir(path, "ImageFolder")
    _check_fractions(val_fraction, test_fraction)
    mask_root = _existing_dir(mask_dir, "mask") if mask_dir is not None else None
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and d != mask_root)
    split_dirs = {d: _norm_split(d.name) for d in subdirs}
    by_split = bool(subdirs) and all(v is not None and not d.name.isdigit() for d, v in split_dirs.items()) \
        and "train" in split_dirs.values()
    rows: list[tuple[str, str, str | None]] = []   # (rel path, class name, split)
    if by_split:
        classes = sorted({c.name for d in subdirs for c in d.iterdir() if c.is_dir() and not c.name.startswith(".")})
        for d in subdirs:
            for c in sorted(x for x in d.iterdir() if x.is_dir() and not x.name.startswith(".")):
                rows += [(p.relative_to(root).as_posix(), c.name, split_dirs[d]) for p in _images_under(c)]
    else:
        classes = [d.name for d in subdirs]
        for c in subdirs:
            rows += [(p.relative_to(root).as_posix(), c.name, None) for p in _images_under(c)]
    if not classes:
        raise SpurAuditError(f"no class folders under {root}; an ImageFolder holds one sub-folder per class "
                             "(ROOT/<class>/<image>.png) or split folders (ROOT/train/<class>/...)")
    df = pd.DataFrame(rows, columns=["path", "class_name", "split"])
    lookup = {c: i for i, c in enumerate(classes)}
    df["label"] = df["class_name"].map(lookup).astype("int64")
    attrs: dict = {}
    if not by_split:
        df["split"] = seeded_split(df["label"].to_numpy(), seed=seed, val_fraction=val_fraction,
                                   test_fraction=test_fraction)
        attrs["split_note"] = (f"no split folders: seeded stratified split (seed={seed}, "
                               f"val {val_fraction:.0%}, test {test_fraction:.0%})")
    else:
        present = set(df["split"])
        missing = [s for s in ("val", "test") if s not in present]
        if missing:
            tr = (df["split"] == "train").to_numpy()
            made = seeded_split(df.loc[tr, "label"].to_numpy(), seed=seed, val_fraction=val_fraction,
                                test_fraction=test_fraction, splits=("train", *missing))
            df.loc[tr, "split"] = made
            attrs["split_note"] = f"no {'/'.join(missing)} folder: carved from train (seeded, seed={seed})"
    df.insert(0, "sample_id", np.arange(len(df), dtype=np.int64))
    params = {"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    known_bad: list[dict] = []
    if mask_root is not None:
        df, known_bad = _attach_masks(df, root, mask_root, verify=check_images)
        params["mask_dir"] = str(mask_root)
    return _finish(df, root=root, class_names=classes, source="imagefolder", params=params,
                   known_bad=known_bad, skip_bad=skip_bad, check_images=check_images, progress=progress, attrs=attrs)


# ---------------------------------------------------------------------------- CSV
def load_csv(path: str | Path, *, root: str | Path | None = None, path_col: str = "path",
             label_col: str = "label", bias_col: str | None = None, split_col: str | None = None,
             mask_col: str | None = None, class_names: list[str] | None = None, seed: int = 0, val_fraction: float = 0.1,
             test_fraction: float = 0.1, skip_bad: bool = False, check_images: bool = True,
             progress: ProgressFn | None = None) -> Manifest:
    """A CSV listing images: ``path_col`` (relative to ``root``, default the CSV's folder, or absolute
    inside it), ``label_col`` (ints 0..K-1 or class names; names sorted -> indices), optional
    ``bias_col`` (ints, or text mapped to sorted indices), ``split_col`` (train/val/test or 0/1/2) and
    ``mask_col`` (object mask image per row, relative to ``root`` like the paths; nonzero = object; a
    blank cell = no mask for that row; a named mask that is missing or unreadable is a bad row).
    """
    csv_path = Path(path).expanduser()
    if not csv_path.is_file():
        raise SpurAuditError(f"CSV file {csv_path} does not exist; pass the path of the CSV that lists the images")
    root_dir = _existing_dir(root, "image root") if root is not None else csv_path.resolve().parent
    _check_fractions(val_fraction, test_fraction)
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise SpurAuditError(f"cannot parse {csv_path} as CSV ({exc}); give a comma-separated file with a "
                             "header row") from exc
    wanted = {"path_col": path_col, "label_col": label_col, "bias_col": bias_col, "split_col": split_col,
              "mask_col": mask_col}
    missing = {k: v for k, v in wanted.items() if v is not None and v not in table.columns}
    if missing:
        listed = ", ".join(f"{k}={v!r}" for k, v in missing.items())
        raise SpurAuditError(f"{csv_path} has no column(s) {listed}; its columns are {list(table.columns)}. "
                             "Name the right ones with --path-col / --label-col / --bias-col / --split-col / --mask-col")
    labels, names, label_reasons = _encode(table[label_col], class_names, "label", column=label_col)
    paths = ["" if pd.isna(v) or not str(v).strip() else _relative_path(v, root_dir) for v in table[path_col]]
    df = pd.DataFrame({"sample_id": np.arange(len(table), dtype=np.int64), "path": paths, "label": labels})
    reasons: dict[int, str] = {i: "empty path" for i, p in enumerate(paths) if p == ""}   # one reason a row
    for i, why in label_reasons.items():
        reasons.setdefault(i, why)
    attrs: dict = {}
    if split_col is not None:
        split = [_norm_split(v) for v in table[split_col]]
        for i, s in enumerate(split):
            if s is None:
                reasons.setdefault(i, f"unknown split {table[split_col].iat[i]!r} (use train/val/test or 0/1/2)")
        df["split"] = [s or "?" for s in split]
    else:
        df["split"] = "train"
    if mask_col is not None:
        masks = ["" if pd.isna(v) or not str(v).strip() else _relative_path(v, root_dir) for v in table[mask_col]]
        for i, why in _check_mask_files(masks, root_dir, verify=check_images).items():
            reasons.setdefault(i, why)
        df["mask_path"] = masks
    bias_names = None
    if bias_col is not None:
        bias, bias_names, bias_reasons = _encode(table[bias_col], None, "bias value", column=bias_col, blank_ok=True)
        for i, why in bias_reasons.items():
            reasons.setdefault(i, why)
        df["bias"] = np.where(np.isnan(bias), -1, bias).astype(np.int64)
    known_bad: list[dict] = [{"sample_id": int(i), "path": paths[i], "reason": reasons[i]} for i in sorted(reasons)]
    bad_ids = {b["sample_id"] for b in known_bad}
    df = df[~df["sample_id"].isin(bad_ids)].reset_index(drop=True)
    df["label"] = df["label"].astype(np.int64)
    if split_col is None:
        df["split"] = seeded_split(df["label"].to_numpy(), seed=seed, val_fraction=val_fraction,
                                   test_fraction=test_fraction)
        attrs["split_note"] = (f"no split column: seeded stratified split (seed={seed}, "
                               f"val {val_fraction:.0%}, test {test_fraction:.0%})")
    if bias_col is not None:
        df["aligned"] = _majority_aligned(df, len(names))
        _add_group(df)
        attrs["aligned_rule"] = "bias == the class's most frequent bias value in train"
        attrs["bias_names"] = bias_names
    df["class_name"] = [names[int(l)] for l in df["label"]]
    params = {"csv": str(csv_path.resolve()), "path_col": path_col, "label_col": label_col,
              "bias_col": bias_col, "split_col": split_col, "mask_col": mask_col, "seed": seed}
    return _finish(df, root=root_dir, class_names=names, source="csv", params=params, known_bad=known_bad,
                   skip_bad=skip_bad, check_images=check_images, progress=progress, attrs=attrs)


# ---------------------------------------------------------------------------- Waterbirds
def load_waterbirds(path: str | Path, *, mask_dir: str | Path | None = None, skip_bad: bool = False,
                    check_images: bool = True, progress: ProgressFn | None = None) -> Manifest:
    """Waterbirds: ``ROOT/metadata.csv`` (``img_filename, y, place, split``; split 0/1/2).

    label = y (0 landbird, 1 waterbird), bias = place (0 land, 1 water), aligned = (y == place),
    group = 2 * y + place. ``mask_dir``: object masks mirroring ``img_filename`` (e.g. the CUB
    segmentations folder: ``<mask_dir>/<img_filename>`` as ``.png``); an image without one is a bad row.
    """
    root = _existing_dir(path, "Waterbirds")
    meta = root / "metadata.csv"
    if not meta.is_file():
        raise SpurAuditError(f"no metadata.csv in {root}; pass the Waterbirds folder that holds metadata.csv "
                             "(columns img_filename, y, place, split)")
    table = pd.read_csv(meta, dtype=str, keep_default_na=False, na_values=[""])
    need = ["img_filename", "y", "place", "split"]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise SpurAuditError(f"{meta} lacks column(s) {missing}; Waterbirds metadata needs {need} "
                             f"(found {list(table.columns)})")
    known_bad: list[dict] = []
    rows = []
    for i, (f, y, place, split) in enumerate(zip(table["img_filename"], table["y"], table["place"], table["split"])):
        yv, pv, sv = pd.to_numeric(y, errors="coerce"), pd.to_numeric(place, errors="coerce"), _norm_split(split)
        if pd.isna(yv) or yv not in (0, 1):
            known_bad.append({"sample_id": i, "path": str(f), "reason": f"unknown label y={y!r} (0 or 1)"})
        elif pd.isna(pv) or pv not in (0, 1):
            known_bad.append({"sample_id": i, "path": str(f), "reason": f"unknown place={place!r} (0 or 1)"})
        elif sv is None:
            known_bad.append({"sample_id": i, "path": str(f), "reason": f"unknown split {split!r} (0/1/2)"})
        else:
            rows.append((i, _relative_path(f, root), int(yv), sv, int(pv)))
    df = pd.DataFrame(rows, columns=["sample_id", "path", "label", "split", "bias"])
    df["aligned"] = (df["label"] == df["bias"]).astype("boolean")
    df["group"] = df["label"] * 2 + df["bias"]
    params: dict = {}
    if mask_dir is not None:
        df, mask_bad = _attach_masks(df, root, mask_dir, verify=check_images)
        known_bad += mask_bad
        params["mask_dir"] = str(Path(mask_dir).expanduser().resolve())
    return _finish(df, root=root, class_names=["landbird", "waterbird"], source="waterbirds", params=params,
                   known_bad=known_bad, skip_bad=skip_bad, check_images=check_images, progress=progress,
                   attrs={"bias_names": ["land", "water"], "aligned_rule": "y == place"})


# ---------------------------------------------------------------------------- CelebA
def _read_celeba_attrs(path: Path) -> pd.DataFrame:
    if path.suffix.lower() == ".csv":
        table = pd.read_csv(path)
        first = table.columns[0]
        return table.rename(columns={first: "image_id"})
    with open(path, encoding="utf-8") as fh:
        fh.readline()  # count
        names = fh.readline().split()
    return pd.read_csv(path, sep=r"\s+", skiprows=2, header=None, names=["image_id"] + names,
                       dtype={"image_id": str}, engine="c")


def load_celeba(path: str | Path, *, target: str = "Blond_Hair", bias_attr: str = "Male",
                image_dir: str | Path | None = None, skip_bad: bool = False, check_images: bool = True,
                progress: ProgressFn | None = None) -> Manifest:
    """CelebA: ``list_attr_celeba.txt`` (count line, attribute-name line, ``file v1 ... v40`` with ±1)
    and ``list_eval_partition.txt`` (``file 0|1|2``) in ``ROOT`` (Kaggle's ``.csv`` variants work too).

    label = 1 where ``target`` is +1 (class names ``not_<target>``, ``<target>``); bias = 1 where
    ``bias_attr`` is +1. Images are looked up in ``image_dir`` (default ``ROOT/img_align_celeba`` when
    it exists, else ``ROOT``).
    """
    root = _existing_dir(path, "CelebA")
    attr_file = next((root / n for n in ("list_attr_celeba.txt", "list_attr_celeba.csv") if (root / n).is_file()), None)
    part_file = next((root / n for n in ("list_eval_partition.txt", "list_eval_partition.csv")
                      if (root / n).is_file()), None)
    if attr_file is None or part_file is None:
        missing = [n for n, f in (("list_attr_celeba.txt", attr_file), ("list_eval_partition.txt", part_file)) if f is None]
        raise SpurAuditError(f"{root} lacks {missing}; pass the CelebA folder holding list_attr_celeba.txt and "
                             "list_eval_partition.txt")
    attrs_df = _read_celeba_attrs(attr_file)
    available = [c for c in attrs_df.columns if c != "image_id"]
    check_choice("CelebA target attribute", target, available)
    check_choice("CelebA bias attribute", bias_attr, available)
    if part_file.suffix.lower() == ".csv":
        part = pd.read_csv(part_file)
        part.columns = ["image_id", "partition"]
    else:
        part = pd.read_csv(part_file, sep=r"\s+", header=None, names=["image_id", "partition"], dtype=str)
    part_map = dict(zip(part["image_id"].astype(str), part["partition"].astype(str)))
    img_root = Path(image_dir).expanduser() if image_dir is not None else (
        root / "img_align_celeba" if (root / "img_align_celeba").is_dir() else root)
    img_root = _existing_dir(img_root, "CelebA image")
    known_bad: list[dict] = []
    ids = attrs_df["image_id"].astype(str).to_numpy()
    t = pd.to_numeric(attrs_df[target], errors="coerce").to_numpy()
    b = pd.to_numeric(attrs_df[bias_attr], errors="coerce").to_numpy()
    split = np.array([_norm_split(part_map.get(i)) for i in ids], dtype=object)
    ok = np.isin(t, (-1, 1)) & np.isin(b, (-1, 1)) & (split != None)  # noqa: E711
    for i in np.flatnonzero(~ok)[:1000]:
        reason = (f"{target}={t[i]!r} is not ±1" if t[i] not in (-1, 1) else
                  f"{bias_attr}={b[i]!r} is not ±1" if b[i] not in (-1, 1) else
                  "not listed in list_eval_partition.txt")
        known_bad.append({"sample_id": int(i), "path": str(ids[i]), "reason": reason})
    if (~ok).sum() > 1000:
        known_bad.append({"sample_id": None, "path": "", "reason": f"{int((~ok).sum()) - 1000} more bad rows"})
    sel = np.flatnonzero(ok)
    df = pd.DataFrame({"sample_id": sel.astype(np.int64), "path": ids[sel],
                       "label": (t[sel] == 1).astype(np.int64), "split": split[sel].astype(str),
                       "bias": (b[sel] == 1).astype(np.int64)})
    df["aligned"] = _majority_aligned(df, 2)
    _add_group(df)
    return _finish(df, root=img_root, class_names=[f"not_{target}", target], source="celeba",
                   params={"target": target, "bias_attr": bias_attr}, known_bad=known_bad, skip_bad=skip_bad,
                   check_images=check_images, progress=progress,
                   attrs={"bias_names": [f"not_{bias_attr}", bias_attr],
                          "aligned_rule": "bias == the class's most frequent bias value in train"})


# ---------------------------------------------------------------------------- DisEnt folders
def load_disent(path: str | Path, *, class_names: list[str] | None = None, seed: int = 0,
                val_fraction: float = 0.1, skip_bad: bool = False, check_images: bool = True,
                progress: ProgressFn | None = None) -> Manifest:
    """DisEnt-style folders: ``align/``, ``conflict/`` (train), ``valid/`` (val), ``test/``; images named
    ``*_{label}_{bias}.<ext>``, possibly inside class subfolders. aligned = (label == bias) (the DisEnt
    convention for CMNIST, CIFAR10-C, BFFHQ), group = label * n_bias + bias. Without ``valid/`` a
    seeded stratified ``val_fraction`` of train becomes val.
    """
    root = _existing_dir(path, "DisEnt")
    folders = {"align": "train", "conflict": "train", "valid": "val", "val": "val", "test": "test"}
    present = [d for d in folders if (root / d).is_dir()]
    if not any(d in present for d in ("align", "conflict")) or "test" not in present:
        raise SpurAuditError(f"{root} is not a DisEnt-style folder: it needs align/ (and/or conflict/) and test/ "
                             f"(plus optional valid/); found {sorted(p.name for p in root.iterdir() if p.is_dir())}")
    rows, known_bad = [], []
    for d in present:
        for p in _images_under(root / d):
            rel = p.relative_to(root).as_posix()
            m = DISENT_NAME.match(p.stem)
            if m is None:
                known_bad.append({"path": rel, "reason": "file name does not end in _{label}_{bias} "
                                                         "(e.g. 00012_3_7.png)"})
                continue
            rows.append((rel, int(m.group(1)), int(m.group(2)), folders[d], d))
    df = pd.DataFrame(rows, columns=["path", "label", "bias", "split", "folder"])
    if len(df) == 0 and not known_bad:
        raise SpurAuditError(f"no images under {root}/{{align,conflict,valid,test}}; check the path")
    negative = df["label"] < 0
    for rel in df.loc[negative, "path"]:
        known_bad.append({"path": rel, "reason": "negative label in file name"})
    df = df[~negative].reset_index(drop=True)
    k = int(df["label"].max()) + 1 if len(df) else 0
    if class_names is not None:
        names = [str(c) for c in class_names]
        too_big = df["label"] >= len(names)
        for rel, lab in zip(df.loc[too_big, "path"], df.loc[too_big, "label"]):
            known_bad.append({"path": rel, "reason": f"unknown label {lab} (class_names has {len(names)})"})
        df = df[~too_big].reset_index(drop=True)
    else:
        names = [str(i) for i in range(k)]
    attrs: dict = {"aligned_rule": "label == bias (DisEnt convention)",
                   "folders": {d: int((df["folder"] == d).sum()) for d in present}}
    if not any(d in present for d in ("valid", "val")):
        tr = (df["split"] == "train").to_numpy()
        df.loc[tr, "split"] = seeded_split(df.loc[tr, "label"].to_numpy(), seed=seed, val_fraction=val_fraction,
                                           test_fraction=0.0, splits=("train", "val"))
        attrs["split_note"] = f"no valid/ folder: seeded stratified {val_fraction:.0%} of train made val (seed={seed})"
    df = df.drop(columns=["folder"])
    df.insert(0, "sample_id", np.arange(len(df), dtype=np.int64))
    df["aligned"] = (df["label"] == df["bias"]).astype("boolean")
    _add_group(df)
    return _finish(df, root=root, class_names=names, source="disent",
                   params={"seed": seed, "val_fraction": val_fraction}, known_bad=known_bad, skip_bad=skip_bad,
                   check_images=check_images, progress=progress, attrs=attrs)


LOADERS: dict[str, Callable[..., Manifest]] = {
    "imagefolder": load_imagefolder,
    "csv": load_csv,
    "waterbirds": load_waterbirds,
    "celeba": load_celeba,
    "disent": load_disent,
}


def get_loader(source: str) -> Callable[..., Manifest]:
    """The loader for ``source`` (one of `LOADERS`); `SpurAuditError` listing them otherwise."""
    check_choice("dataset source", source, list(LOADERS))
    return LOADERS[source]
