"""Which classes a ranking / gap table covers, and why the others are left out (issue 12).

A class is *unranked* (no spuriosity ranking, no gap) for exactly one of three reasons, checked in
this order:

- ``no_images``: the split holds no image of the class;
- ``no_spurious``: none of the class's labelled features has a spurious verdict;
- ``too_few``: it has spurious features but too few images in the split for two disjoint slices of
  size k (a gap needs k >= 1 images at each end, so at least 2 images; a fixed k needs 2k).

`unranked_table` gives one row per unranked class with its reason; `reason_counts` / `unranked_summary`
turn it into counts and one sentence. `choose_classes` picks the classes a report section shows and
says in words how they were chosen. Pure functions: tables in, tables and strings out.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import pandas as pd

__all__ = ["NO_IMAGES", "NO_SPURIOUS", "TOO_FEW", "REASONS", "REASON_ORDER", "unranked_reason",
           "unranked_table", "reason_counts", "unranked_summary", "choose_classes", "coverage_sentence"]

NO_IMAGES = "no_images"
NO_SPURIOUS = "no_spurious"
TOO_FEW = "too_few"
#: reason code -> the words shown to people (page, CLI, report)
REASONS = {
    NO_IMAGES: "no images in the split",
    NO_SPURIOUS: "no spurious feature",
    TOO_FEW: "too few images for k",
}
REASON_ORDER = (NO_SPURIOUS, TOO_FEW, NO_IMAGES)


def unranked_reason(n: int, k: int, has_spurious: bool) -> str:
    """The reason code of a class with ``n`` images in the split, slice size ``k`` (0 = no slice
    possible) and ``has_spurious`` features; ``""`` when the class is ranked."""
    if n <= 0:
        return NO_IMAGES
    if not has_spurious:
        return NO_SPURIOUS
    if k < 1:
        return TOO_FEW
    return ""


def unranked_table(per_class: pd.DataFrame, classes_without_spurious: Iterable[int] = (),
                   class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per unranked class of a gap table (columns ``class_index``, ``n``, ``k``, ``ranked``;
    a ``reason`` column is used when present, else derived with ``classes_without_spurious``).
    Returns columns class_index, class, n, reason (code), why (words), sorted by reason then class."""
    cols = ["class_index", "class", "n", "reason", "why"]
    if per_class is None or not len(per_class):
        return pd.DataFrame(columns=cols)
    no_spur = {int(c) for c in classes_without_spurious}
    df = per_class[~per_class["ranked"].astype(bool)]
    rows = []
    for r in df.itertuples(index=False):
        c, n = int(r.class_index), int(r.n)
        reason = getattr(r, "reason", "") or ""
        if not isinstance(reason, str) or reason not in REASONS:
            reason = unranked_reason(n, int(getattr(r, "k", 0) or 0), c not in no_spur) or TOO_FEW
        name = str(class_names[c]) if class_names is not None and 0 <= c < len(class_names) else str(c)
        rows.append((c, name, n, reason, REASONS[reason]))
    out = pd.DataFrame(rows, columns=cols)
    rank = {r: i for i, r in enumerate(REASON_ORDER)}
    return out.sort_values(["reason", "class_index"], key=lambda s: s.map(rank) if s.name == "reason" else s,
                           kind="stable").reset_index(drop=True)


def reason_counts(table: pd.DataFrame) -> dict[str, int]:
    """reason code -> number of classes (every code present, in `REASON_ORDER`)."""
    counts = table["reason"].value_counts() if len(table) else pd.Series(dtype=int)
    return {r: int(counts.get(r, 0)) for r in REASON_ORDER}


def unranked_summary(table: pd.DataFrame, num_classes: int) -> str:
    """``"799 of 1,000 classes are not ranked: 799 too few images for k."`` (or ``"All … ranked."``)."""
    n = len(table)
    if n == 0:
        return f"All {num_classes:,} classes are ranked."
    parts = [f"{c:,} {REASONS[r]}" for r, c in reason_counts(table).items() if c]
    return f"{n:,} of {num_classes:,} classes are not ranked: " + "; ".join(parts) + "."


def coverage_sentence(n_shown: int, n_total: int, how: str) -> str:
    """``"Showing 50 of 1,000 classes: the 50 with the largest gap."``"""
    if n_shown >= n_total:
        return f"Showing all {n_total:,} classes."
    return f"Showing {n_shown:,} of {n_total:,} classes: {how}."


def choose_classes(per_class: pd.DataFrame | None, num_classes: int, max_classes: int | None
                   ) -> tuple[list[int], str]:
    """The classes a report section shows, and how they were chosen in words.

    All classes when ``max_classes`` is None or not smaller than ``num_classes``; otherwise the
    ``max_classes`` ranked classes with the largest gap (ties by class index), topped up with the
    lowest-index unranked classes when fewer are ranked; without a gap table, the first classes."""
    if max_classes is None or max_classes >= num_classes:
        return list(range(num_classes)), f"all {num_classes:,} classes"
    m = max(0, int(max_classes))
    if per_class is None or not len(per_class) or "gap" not in per_class:
        return list(range(m)), f"classes 0–{m - 1} (no gaps computed to choose by)"
    ranked = per_class[per_class["ranked"].astype(bool) & per_class["gap"].notna()]
    ranked = ranked.sort_values(["gap", "class_index"], ascending=[False, True], kind="stable")
    chosen = [int(c) for c in ranked["class_index"].head(m)]
    how = f"the {len(chosen):,} classes with the largest spurious gap"
    if len(chosen) < m:
        seen = set(chosen)
        rest = [c for c in range(num_classes) if c not in seen][:m - len(chosen)]
        if rest:
            how += f", then {len(rest):,} unranked classes by index"
        chosen += rest
    return chosen, how

