"""Salient ImageNet's soft feature masks: scan a masks folder, match it to a dataset, store, read back.

**Layout read.** ``<root>/<wnid>/feature_<j>/<image stem>.(png|jpg|jpeg)`` (suffix in any case), or, as the
released Salient ImageNet dataset ships it, ``<root>/<wnid>/feature_<j>/cams/<stem>.jpeg`` beside an
``images/`` folder: when a ``cams`` folder exists it holds the masks and ``images/`` is ignored (SpurAudit
reads the dataset's own copy of each image). Other files are counted as ignored. A mask is a grey image,
0..255 = soft mask 0..1 (the feature's activation map over that image).

**Matching** (`scan_salient_masks`, nothing decoded, nothing written): the wnid folder is a class of the
dataset when it equals one of its class names (an ImageFolder of wnid folders names its classes so), the
file's stem must equal the stem of exactly one image of that class (in ``splits``, default all of them).
Reported, never raised: class folders that are not classes of the dataset, masks without an image
(unmatched), stems of several images (ambiguous: pass the split), (class, feature) pairs whose feature is
not among the class's discovered top features (imported anyway), and, at import, unreadable files and masks
whose shape fits neither the image nor its centre square. Raised (`SpurAuditError`): a missing folder, a
folder without wnid folders or without ``feature_<j>`` folders, and one whose class folders are none of the
dataset's classes.

**Geometry.** Each mask is stored over its image's *centre square* (side = the shorter image side), resized
to ``side`` x ``side`` uint8. A mask with the image's aspect ratio (within 2 %) covers the whole image and
its centre square is kept; a square mask on a non-square image is taken to be the centre square already
(Salient ImageNet's own transform, resize the shorter side then centre-crop, made it so). `input_masks` maps
stored masks onto the photo pipeline's input (`core.features.pipeline.decode_resize`: shorter side resized
to ``resize_size``, centre crop ``image_size`` = the central image_size / resize_size of the square);
`full_image_mask` onto the whole image (zero outside the centre square).

**Artifact** (``audits/<dataset>/<model>/salient_masks/``, `core.audit.artifacts.AuditFiles.salient_masks`;
written in one `Workspace.atomic_dir`, so each import replaces the previous one whole):
``masks.npy`` (M, side, side) uint8; ``index.csv`` one row per stored mask: ``mask`` (row of masks.npy),
``class_index``, ``feature``, ``split``, ``row`` (position in that split = feature-store row),
``sample_id``, ``stem``; ``meta.json``: root, side, counts and examples of what was skipped. At 325 k masks
(Salient ImageNet: 5,000 pairs x 65 images) and side 64 masks.npy is 1.3 GB; side 32, 0.33 GB.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image

from core.audit.artifacts import audit_files
from core.data.manifest import SPLIT_NAMES
from core.data.preview import outline_mask
from core.errors import SpurAuditError
from core.features.pipeline import decode_resize
from core.progress import ProgressFn, null_progress

if TYPE_CHECKING:  # pragma: no cover
    from core.data.manifest import Manifest
    from core.workspace import Workspace

__all__ = ["MASK_SUFFIXES", "DEFAULT_SIDE", "MaskScan", "SalientMasks", "scan_salient_masks",
           "import_salient_masks", "load_salient_masks", "has_salient_masks", "salient_index_path", "centre_square",
           "input_masks", "full_image_mask", "salient_inputs", "mask_tile"]

MASK_SUFFIXES = (".png", ".jpg", ".jpeg")
DEFAULT_SIDE = 64
MAX_EXAMPLES = 5
_FEATURE_DIR = re.compile(r"^feature_(\d+)$")
_ASPECT_TOLERANCE = 0.02
INDEX_COLUMNS = ["mask", "class_index", "feature", "split", "row", "sample_id", "stem"]


@dataclass
class MaskScan:
    """What `scan_salient_masks` found. ``matched``: one row per mask file matched to a dataset image
    (columns class_index, feature, split, row, sample_id, stem, path, image); the counts and examples
    (paths relative to ``root``) of what cannot be imported."""

    root: str
    matched: pd.DataFrame
    n_files: int = 0
    n_class_folders: int = 0
    n_feature_folders: int = 0
    unknown_classes: list[str] = field(default_factory=list)
    n_unknown_class_files: int = 0
    unmatched: int = 0
    unmatched_examples: list[str] = field(default_factory=list)
    ambiguous: int = 0
    ambiguous_examples: list[str] = field(default_factory=list)
    ignored_files: int = 0
    pairs_not_discovered: int | None = None
    not_discovered_examples: list[list[int]] = field(default_factory=list)

    @property
    def n_pairs(self) -> int:
        return int(self.matched[["class_index", "feature"]].drop_duplicates().shape[0]) if len(self.matched) else 0

    def summary(self) -> dict:
        """JSON-able counts and examples."""
        return {"root": self.root, "files": self.n_files, "class_folders": self.n_class_folders,
                "feature_folders": self.n_feature_folders, "matched": int(len(self.matched)),
                "pairs": self.n_pairs, "classes": int(self.matched.class_index.nunique()) if len(self.matched) else 0,
                "unknown_classes": len(self.unknown_classes), "unknown_class_examples": self.unknown_classes[:MAX_EXAMPLES],
                "unknown_class_files": self.n_unknown_class_files,
                "unmatched": self.unmatched, "unmatched_examples": self.unmatched_examples,
                "ambiguous": self.ambiguous, "ambiguous_examples": self.ambiguous_examples,
                "ignored_files": self.ignored_files, "pairs_not_discovered": self.pairs_not_discovered,
                "not_discovered_examples": self.not_discovered_examples}

    def lines(self) -> list[str]:
        """The summary as sentences (what the CLI prints and the dashboard previews)."""
        out = [f"{len(self.matched):,} of {self.n_files:,} mask files match an image of the dataset: "
               f"{self.n_pairs:,} (class, feature) pairs over "
               f"{self.matched.class_index.nunique() if len(self.matched) else 0:,} classes"]
        if self.unknown_classes:
            out.append(f"{len(self.unknown_classes):,} class folders are not classes of the dataset, skipped "
                       f"({self.n_unknown_class_files:,} files; e.g. {', '.join(self.unknown_classes[:MAX_EXAMPLES])})")
        if self.unmatched:
            out.append(f"{self.unmatched:,} masks name no image of their class (e.g. "
                       f"{', '.join(self.unmatched_examples)})")
        if self.ambiguous:
            out.append(f"{self.ambiguous:,} masks name images in several splits, skipped (e.g. "
                       f"{', '.join(self.ambiguous_examples)}); choose the split of the masks' images (--mask-split; on the dashboard: Images of the masks)")
        if self.ignored_files:
            out.append(f"{self.ignored_files:,} files are not .png/.jpg/.jpeg images, ignored")
        if self.pairs_not_discovered is None:
            out.append("features not checked against the discovered ones (no discovery yet)")
        elif self.pairs_not_discovered:
            out.append(f"{self.pairs_not_discovered:,} pairs name a feature that is not among the class's "
                       f"discovered top features (imported anyway; e.g. (class, feature) "
                       f"{', '.join(str(tuple(p)) for p in self.not_discovered_examples)})")
        return out


def _is_mask_file(name: str) -> bool:
    return name.lower().endswith(MASK_SUFFIXES)


def _feature_dirs(class_dir: Path) -> list[tuple[int, Path]]:
    out = []
    with os.scandir(class_dir) as it:
        for e in it:
            m = _FEATURE_DIR.match(e.name)
            if m and e.is_dir():
                out.append((int(m.group(1)), Path(e.path)))
    return sorted(out)


def _stem(path: str) -> str:
    """File name without folder and last suffix ("train/n01/n01_7.JPEG" -> "n01_7")."""
    name = path[path.rfind("/") + 1:]
    dot = name.rfind(".")
    return name[:dot] if dot > 0 else name


def _image_table(manifest: "Manifest", splits: Sequence[str] | None, classes: set[int]) -> pd.DataFrame:
    """Rows of the chosen splits and ``classes``: class_index, stem, split, row (position in the split),
    sample_id, image (path). Stems by plain string slicing: pandas' str.rsplit took 5 s of a 7 s scan of
    a 1.28 M-row manifest."""
    frames = []
    for s in manifest.splits():
        if splits is not None and s not in splits:
            continue
        sub = manifest.split(s).df
        labels = sub["label"].to_numpy(np.int64)
        keep = np.isin(labels, np.fromiter(classes, np.int64, len(classes)))
        paths = sub["path"].astype(str).to_numpy()[keep]
        frames.append(pd.DataFrame({"class_index": labels[keep], "stem": [_stem(x) for x in paths],
                                    "split": s, "row": np.arange(len(sub), dtype=np.int64)[keep],
                                    "sample_id": sub["sample_id"].to_numpy(np.int64)[keep], "image": paths}))
    if not frames:
        return pd.DataFrame(columns=["class_index", "stem", "split", "row", "sample_id", "image"])
    return pd.concat(frames, ignore_index=True)


def scan_salient_masks(root: str | Path, manifest: "Manifest", *, splits: Sequence[str] | None = None,
                       discovered: Mapping[int, Sequence[int]] | None = None,
                       progress: ProgressFn | None = None) -> MaskScan:
    """Match the mask files under ``root`` to rows of ``manifest`` (module docstring); reads only folder
    listings. ``splits``: the splits the masks belong to (None = all; a stem found in two splits is then
    ambiguous). ``discovered``: class -> its discovered top features, to count pairs outside them."""
    progress = progress or null_progress
    root = Path(root).expanduser()
    if not root.is_dir():
        raise SpurAuditError(f"masks folder {root} does not exist or is not a folder; give the Salient ImageNet "
                             "folder that holds one folder per class wnid (<wnid>/feature_<idx>/...)")
    for s in splits or ():
        if s not in SPLIT_NAMES:
            raise SpurAuditError(f"unknown split {s!r}; valid choices: {', '.join(SPLIT_NAMES)}")
    if splits is not None and not set(splits) & set(manifest.splits()):
        raise SpurAuditError(f"the dataset has no split {', '.join(splits)} (it has {', '.join(manifest.splits())})")
    with os.scandir(root) as it:
        subdirs = sorted((e.name, Path(e.path)) for e in it if e.is_dir() and not e.name.startswith("."))
    if _feature_dirs(root):
        raise SpurAuditError(f"{root} holds feature_<idx> folders itself: it is one class's folder; give its parent "
                             "(the folder with one folder per class wnid)")
    if not subdirs:
        raise SpurAuditError(f"{root} has no class folders; expected the Salient ImageNet layout "
                             "<root>/<wnid>/feature_<idx>/<image>.png|jpg")
    class_index = {name: i for i, name in enumerate(manifest.class_names)}
    scan = MaskScan(root=str(root), matched=pd.DataFrame())
    class_dirs = []
    for name, path in subdirs:
        feats = _feature_dirs(path)
        if feats:
            class_dirs.append((name, path, feats))
    if not class_dirs:
        raise SpurAuditError(f"none of the {len(subdirs)} folders of {root} (e.g. {subdirs[0][0]}) holds feature_<idx> "
                             "folders; expected the Salient ImageNet layout <root>/<wnid>/feature_<idx>/<image>.png|jpg")
    known = [(n, p, f) for n, p, f in class_dirs if n in class_index]
    if not known:
        names = ", ".join(n for n, _, _ in class_dirs[:MAX_EXAMPLES])
        raise SpurAuditError(f"none of the {len(class_dirs)} class folders of {root} ({names}) is a class of the "
                             f"dataset (its classes: {', '.join(manifest.class_names[:MAX_EXAMPLES])}"
                             f"{', ...' if len(manifest.class_names) > MAX_EXAMPLES else ''}); the dataset's class "
                             "names must be the wnids (add the ImageNet folder with `dataset add --from imagefolder`)")
    scan.n_class_folders = len(class_dirs)
    images = _image_table(manifest, splits, {class_index[n] for n, _, _ in known})
    # (class, stem) -> table position; plain dicts, since a lookup per mask file (325 k) must be cheap
    position: dict[tuple[int, str], int] = {}
    several: set[tuple[int, str]] = set()
    for i, key in enumerate(zip(images.class_index.tolist(), images.stem.tolist())):
        if key in position:
            several.add(key)
        else:
            position[key] = i
    splits_col, rows_col = images.split.tolist(), images.row.tolist()
    ids_col, paths_col = images.sample_id.tolist(), images.image.tolist()
    records = []
    for ci, (name, path, feats) in enumerate(class_dirs):
        c = class_index.get(name)
        for j, fdir in feats:
            scan.n_feature_folders += 1
            cams = fdir / "cams"
            folder, rel = (cams, f"{name}/{fdir.name}/cams") if cams.is_dir() else (fdir, f"{name}/{fdir.name}")
            with os.scandir(folder) as it:
                names = sorted(e.name for e in it if e.is_file())
            for fname in names:
                if not _is_mask_file(fname):
                    scan.ignored_files += 1
                    continue
                scan.n_files += 1
                if c is None:
                    scan.n_unknown_class_files += 1
                    continue
                stem = fname.rsplit(".", 1)[0]
                k = position.get((c, stem))
                if k is None:
                    scan.unmatched += 1
                    if len(scan.unmatched_examples) < MAX_EXAMPLES:
                        scan.unmatched_examples.append(f"{rel}/{fname}")
                elif (c, stem) in several:
                    scan.ambiguous += 1
                    if len(scan.ambiguous_examples) < MAX_EXAMPLES:
                        scan.ambiguous_examples.append(f"{rel}/{fname}")
                else:
                    records.append((c, j, splits_col[k], int(rows_col[k]), int(ids_col[k]), stem,
                                    str(folder / fname), paths_col[k]))
        if c is None:
            scan.unknown_classes.append(name)
        progress((ci + 1) / len(class_dirs), f"scanned {ci + 1}/{len(class_dirs)} class folders")
    scan.matched = pd.DataFrame(records, columns=["class_index", "feature", "split", "row", "sample_id", "stem",
                                                  "path", "image"])
    if discovered is not None:
        pairs = scan.matched[["class_index", "feature"]].drop_duplicates().itertuples(index=False)
        outside = [[int(c), int(j)] for c, j in pairs if int(j) not in {int(x) for x in discovered.get(int(c), ())}]
        scan.pairs_not_discovered = len(outside)
        scan.not_discovered_examples = outside[:MAX_EXAMPLES]
    return scan


# ------------------------------------------------------------------------------------------------ geometry
def centre_square(mask: np.ndarray, image_wh: tuple[int, int]) -> np.ndarray | None:
    """The part of ``mask`` (h, w) over the centre square of an image of size ``image_wh`` = (W, H):
    the mask's own centre square when it has the image's aspect ratio, the mask itself when it is square
    (taken as that centre square already); None when it fits neither."""
    h, w = mask.shape
    iw, ih = image_wh
    if h == w:
        return mask
    if abs(w / h - iw / ih) <= _ASPECT_TOLERANCE * (iw / ih):
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        return mask[top:top + s, left:left + s]
    return None


def _resize(mask: np.ndarray, side: int) -> np.ndarray:
    """(h, w) uint8 -> (side, side) uint8 (bilinear)."""
    if mask.shape == (side, side):
        return mask.astype(np.uint8, copy=False)
    return np.asarray(Image.fromarray(mask).resize((side, side), Image.BILINEAR), dtype=np.uint8)


def input_masks(squares: np.ndarray, *, image_size: int, resize_size: int | None = None) -> np.ndarray:
    """Stored centre-square masks (n, S, S) (uint8 0..255 or float 0..1) -> float32 (n, image_size,
    image_size) in [0, 1] over the photo pipeline's input: the central ``image_size / resize_size`` of the
    square (``resize_size`` None = round(image_size * 256 / 224), as the pipeline)."""
    sq = np.asarray(squares)
    sq = sq.astype(np.float32) / 255.0 if sq.dtype == np.uint8 else sq.astype(np.float32)
    if sq.ndim != 3 or sq.shape[1] != sq.shape[2]:
        raise SpurAuditError(f"masks must be (n, S, S); got {sq.shape}")
    resize = int(resize_size) if resize_size is not None else int(round(int(image_size) * 256 / 224))
    S = sq.shape[1]
    keep = max(1, int(round(S * int(image_size) / resize)))          # the crop's share of the square
    off = (S - keep) // 2
    crop = torch.from_numpy(np.ascontiguousarray(sq[:, off:off + keep, off:off + keep]))[:, None]  # (n, 1, k, k)
    out = torch.nn.functional.interpolate(crop, size=(int(image_size), int(image_size)), mode="bilinear",
                                          align_corners=False)
    return out[:, 0].clamp(0, 1).numpy()                               # (n, image_size, image_size)


def full_image_mask(square: np.ndarray, height: int, width: int) -> np.ndarray:
    """A stored centre-square mask (S, S) -> float32 (height, width) in [0, 1], zero outside the square."""
    sq = np.asarray(square)
    sq = sq.astype(np.float32) / 255.0 if sq.dtype == np.uint8 else sq.astype(np.float32)
    s = min(int(height), int(width))
    top, left = (int(height) - s) // 2, (int(width) - s) // 2
    out = np.zeros((int(height), int(width)), np.float32)
    small = torch.from_numpy(np.ascontiguousarray(sq))[None, None]
    out[top:top + s, left:left + s] = torch.nn.functional.interpolate(
        small, size=(s, s), mode="bilinear", align_corners=False)[0, 0].clamp(0, 1).numpy()
    return out


# ------------------------------------------------------------------------------------------------ import
def import_salient_masks(ws: "Workspace", dataset: str, model: str, scan: MaskScan, manifest_root: str | Path, *,
                         side: int = DEFAULT_SIDE, progress: ProgressFn | None = None) -> dict:
    """Decode the matched masks of ``scan``, map each to its image's centre square (module docstring),
    resize to ``side`` and store them as the (dataset, model) artifact, replacing an earlier import.
    ``manifest_root``: the dataset's image root (each image's size is read from its header).
    Returns the scan's summary plus ``stored``, ``unreadable`` / ``mismatched`` (counts, examples), ``side``,
    ``bytes``. Unreadable or mismatched files are counted, never raised."""
    if not 8 <= int(side) <= 512:
        raise SpurAuditError(f"mask side must be in 8..512 pixels (got {side}); 64 keeps 325 k masks at 1.3 GB")
    progress = progress or null_progress
    side = int(side)
    root = Path(scan.root)
    m = scan.matched.reset_index(drop=True)
    n = len(m)
    keep = np.zeros(n, bool)
    unreadable, mismatched = [], []
    n_unreadable = n_mismatched = 0
    files = audit_files(dataset, model)
    with ws.atomic_dir(files.salient_masks) as tmp:
        arr = np.lib.format.open_memmap(tmp / "masks.npy", mode="w+", dtype=np.uint8, shape=(n, side, side))
        step = max(1, n // 100)
        for i, r in enumerate(m.itertuples(index=False)):
            try:
                with Image.open(r.path) as im:
                    mask = np.asarray(im.convert("L"), dtype=np.uint8)
                with Image.open(Path(manifest_root) / r.image) as img:
                    image_wh = img.size                                   # header only, not decoded
            except (OSError, ValueError, SyntaxError) as exc:
                n_unreadable += 1
                if len(unreadable) < MAX_EXAMPLES:
                    unreadable.append(f"{os.path.relpath(r.path, root)}: {type(exc).__name__}")
                continue
            sq = centre_square(mask, image_wh)
            if sq is None:
                n_mismatched += 1
                if len(mismatched) < MAX_EXAMPLES:
                    mismatched.append(f"{os.path.relpath(r.path, root)}: mask {mask.shape[1]}x{mask.shape[0]}, "
                                      f"image {image_wh[0]}x{image_wh[1]}")
                continue
            arr[i] = _resize(sq, side)
            keep[i] = True
            if i % step == 0:
                progress(i / max(n, 1), f"masks {i:,}/{n:,}")
        arr.flush()
        del arr
        index = m.assign(mask=np.arange(n, dtype=np.int64))[keep][INDEX_COLUMNS]
        index.to_csv(tmp / "index.csv", index=False)
        out = {**scan.summary(), "stored": int(keep.sum()), "unreadable": n_unreadable,
               "unreadable_examples": unreadable, "mismatched": n_mismatched, "mismatched_examples": mismatched,
               "side": side, "bytes": int(n * side * side),
               "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        (tmp / "meta.json").write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")
    progress(1.0, f"stored {int(keep.sum()):,} masks")
    return out


# ------------------------------------------------------------------------------------------------ reading
@dataclass
class SalientMasks:
    """An imported masks artifact: ``index`` (columns `INDEX_COLUMNS`), ``masks`` (M, S, S) uint8
    (memory-mapped; only rows named by ``index`` hold masks), ``meta`` (what the import reported)."""

    index: pd.DataFrame
    masks: np.ndarray
    meta: dict

    @property
    def side(self) -> int:
        return int(self.masks.shape[1])

    def pairs(self) -> pd.DataFrame:
        """One row per (class_index, feature) with ``n`` masks."""
        if not len(self.index):
            return pd.DataFrame(columns=["class_index", "feature", "n"])
        return self.index.groupby(["class_index", "feature"]).size().rename("n").reset_index()

    def pair(self, class_index: int, feature: int) -> pd.DataFrame:
        """The index rows of (class_index, feature), in split/row order."""
        sel = (self.index.class_index == int(class_index)) & (self.index.feature == int(feature))
        return self.index[sel].sort_values(["split", "row"], kind="stable")

    def union(self, split: str, features: Mapping[int, Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``split`` (sorted (n,) int64 positions in the split) that have a mask of one of their
        class's ``features``, and per row the union (pixel max) of those masks, (n, S, S) uint8."""
        want = {(int(c), int(j)) for c, js in features.items() for j in js}
        idx = self.index[self.index.split == split]
        sel = [(c, j) in want for c, j in zip(idx.class_index.to_numpy(), idx.feature.to_numpy())]
        idx = idx[np.asarray(sel, bool)] if len(idx) else idx
        if not len(idx):
            return np.empty(0, np.int64), np.empty((0, self.side, self.side), np.uint8)
        rows = np.unique(idx.row.to_numpy(np.int64))
        pos = {int(r): i for i, r in enumerate(rows)}
        out = np.zeros((len(rows), self.side, self.side), np.uint8)
        for r, k in zip(idx.row.to_numpy(np.int64), idx["mask"].to_numpy(np.int64)):
            i = pos[int(r)]
            np.maximum(out[i], self.masks[int(k)], out=out[i])
        return rows, out


def salient_index_path(ws: "Workspace", dataset: str, model: str) -> Path:
    """Absolute path of the imported masks' ``index.csv`` (it may not exist; a cache stamp for readers)."""
    return ws.path(f"{audit_files(dataset, model).salient_masks}/index.csv")


def has_salient_masks(ws: "Workspace", dataset: str, model: str) -> bool:
    return salient_index_path(ws, dataset, model).exists()


def load_salient_masks(ws: "Workspace", dataset: str, model: str) -> SalientMasks | None:
    """The imported masks of (dataset, model), or None when none were imported."""
    folder = audit_files(dataset, model).salient_masks
    if not has_salient_masks(ws, dataset, model):
        return None
    index = pd.read_csv(ws.path(f"{folder}/index.csv"), dtype={"split": str, "stem": str})
    return SalientMasks(index=index, masks=ws.open_npy(f"{folder}/masks.npy"),
                        meta=ws.read_json(f"{folder}/meta.json", default={}) or {})


def salient_inputs(manifest: "Manifest", rows: np.ndarray, squares: np.ndarray, *, image_size: int | None
                   ) -> tuple[torch.Tensor, np.ndarray]:
    """Images (n, 3, H, W) float in [0, 1] of ``rows`` of ``manifest`` (one split) and their masks
    (n, H, W) float32 in [0, 1] from the stored centre squares ``squares`` (n, S, S): through the photo
    pipeline's resize + centre crop when ``image_size`` is given, else as stored (one common size needed)."""
    imgs, masks = [], []
    for r, sq in zip(np.asarray(rows, np.int64), squares):
        a = decode_resize(manifest.image_path(int(r)), image_size=image_size, resize_size=None)   # (H, W, 3)
        if image_size is None:
            if imgs and a.shape != imgs[0].shape:
                raise SpurAuditError(f"images have different sizes ({a.shape[1]}x{a.shape[0]} vs "
                                     f"{imgs[0].shape[1]}x{imgs[0].shape[0]}); pass image_size (--image-size 224), "
                                     "the size the model's features were extracted at")
            masks.append(full_image_mask(sq, a.shape[0], a.shape[1]))
        imgs.append(a)
    if not imgs:
        return torch.empty(0, 3, 0, 0), np.empty((0, 0, 0), np.float32)
    images = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div_(255.0)   # (n,H,W,3)->(n,3,H,W)
    if image_size is not None:
        return images, input_masks(np.asarray(squares), image_size=int(image_size))
    return images, np.stack(masks)


def mask_tile(manifest: "Manifest", row: int, square: np.ndarray, *, size: int = 96,
              threshold: float = 0.5) -> Image.Image:
    """Row ``row``'s image as an RGB tile (longer side ``size``) with the stored mask's region
    (soft value >= ``threshold``) outlined in yellow."""
    img = manifest.load_image(int(row))
    scale = size / max(img.size)
    small = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    tile = np.asarray(img.resize(small, Image.BILINEAR)).copy()
    full = full_image_mask(square, small[1], small[0]) >= threshold
    return Image.fromarray(outline_mask(tile, full))
