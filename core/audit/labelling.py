"""Labelling progress over the discovered (class, feature) pairs, the class table the dashboard's class
navigator sorts and filters, "next unlabelled", and accepting a class's machine suggestions (issue 12).

A (class, feature) pair among a class's top-k discovered features is

- ``human`` when a person answered it (source ``human``),
- ``machine`` when only machine suggestions exist (masks / CLIP / SAM-IoU),
- ``none`` when nobody answered.

A pair *needs a person* unless it is ``human``. A class's status: ``human`` (every pair human),
``partly human`` (some), ``machine-only`` (no human answer, at least one machine one), ``unlabelled``
(no answer at all). Pure functions: arrays and label tables in, tables and rows out.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from core.errors import SpurAuditError

__all__ = ["STATUSES", "pair_status", "class_progress", "overall_progress", "next_unlabelled",
           "accept_machine_rows", "class_table", "sort_classes", "ORDERS"]

STATUSES = ("unlabelled", "machine-only", "partly human", "human")
#: the class navigator's orders: name -> (column, ascending)
ORDERS = {
    "index": ("class_index", True),
    "largest gap": ("gap", False),
    "most images": ("n_images", False),
    "lowest accuracy": ("accuracy", True),
    "most features needing a person": ("needs_person", False),
}


def pair_status(top_features: np.ndarray, labels: pd.DataFrame) -> pd.DataFrame:
    """One row per (class, rank) of ``top_features`` (K, k): class_index, rank, feature, status
    (``human`` / ``machine`` / ``none``), n_human, n_machine."""
    top = np.asarray(top_features, dtype=np.int64)
    if top.ndim != 2:
        raise SpurAuditError("top_features must be a (K, k) array of feature indices (the audit's discovery)")
    K, k = top.shape
    pairs = pd.DataFrame({"class_index": np.repeat(np.arange(K), k), "rank": np.tile(np.arange(k), K),
                          "feature": top.ravel()})
    if labels is None or not len(labels):
        return pairs.assign(n_human=0, n_machine=0, status="none")
    lab = labels[["class_index", "feature", "source"]].copy()
    lab["human"] = (lab["source"] == "human").astype(int)
    lab["machine"] = 1 - lab["human"]
    counts = lab.groupby(["class_index", "feature"], as_index=False)[["human", "machine"]].sum()
    counts = counts.rename(columns={"human": "n_human", "machine": "n_machine"})
    counts["class_index"] = counts["class_index"].astype(np.int64)
    counts["feature"] = counts["feature"].astype(np.int64)
    out = pairs.merge(counts, on=["class_index", "feature"], how="left").fillna({"n_human": 0, "n_machine": 0})
    out[["n_human", "n_machine"]] = out[["n_human", "n_machine"]].astype(int)
    out["status"] = np.where(out.n_human > 0, "human", np.where(out.n_machine > 0, "machine", "none"))
    return out


def class_progress(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per class (from `pair_status`): n_features, human, machine (machine only), none, needs_person,
    status (one of `STATUSES`)."""
    g = pairs.assign(h=pairs.status == "human", m=pairs.status == "machine", u=pairs.status == "none")
    per = g.groupby("class_index").agg(n_features=("feature", "size"), human=("h", "sum"), machine=("m", "sum"),
                                       none=("u", "sum")).reset_index()
    per[["human", "machine", "none"]] = per[["human", "machine", "none"]].astype(int)
    per["needs_person"] = per["n_features"] - per["human"]
    per["status"] = np.select(
        [per.human == per.n_features, per.human > 0, per.machine > 0],
        ["human", "partly human", "machine-only"], default="unlabelled")
    return per


def overall_progress(pairs: pd.DataFrame) -> dict:
    """{"pairs", "human", "machine", "none", "labelled"} counts over every (class, feature) pair."""
    s = pairs["status"].value_counts()
    human, machine, none = int(s.get("human", 0)), int(s.get("machine", 0)), int(s.get("none", 0))
    return {"pairs": int(len(pairs)), "human": human, "machine": machine, "none": none, "labelled": human + machine}


def next_unlabelled(pairs: pd.DataFrame, class_order: Sequence[int], *, after: tuple[int, int] | None = None
                    ) -> tuple[int, int] | None:
    """The next (class, feature) needing a person, walking classes in ``class_order`` and each class's
    features by rank, starting after ``after`` = (class, feature) (wrapping around; a feature that is
    not among the class's top features, e.g. -1, starts at that class's first); None when every pair
    is human."""
    need = pairs[pairs.status != "human"].sort_values(["class_index", "rank"], kind="stable")
    if not len(need):
        return None
    by_class: dict[int, list[int]] = {}
    for c, j in zip(need.class_index.astype(int), need.feature.astype(int)):
        by_class.setdefault(c, []).append(j)
    order = [int(c) for c in class_order]
    start = 0
    if after is not None and int(after[0]) in order:
        start = order.index(int(after[0]))
        ranks = pairs[pairs.class_index == int(after[0])].sort_values("rank").feature.astype(int).tolist()
        here = by_class.get(int(after[0]), [])
        if int(after[1]) in ranks:        # a feature of that class: continue after it, then the next class
            pos = ranks.index(int(after[1]))
            later = [j for j in here if ranks.index(j) > pos]
            if later:
                return int(after[0]), later[0]
            start += 1
        # otherwise (e.g. feature -1): that class from its first feature on
    for i in range(len(order)):
        c = order[(start + i) % len(order)]
        if by_class.get(c):
            return c, by_class[c][0]
    return None


def accept_machine_rows(labels: pd.DataFrame, pairs: pd.DataFrame, class_index: int, *, annotator: str) -> list[dict]:
    """Answer rows (for `core.audit.labels.add_answers`) that accept class ``class_index``'s machine
    suggestions: for each of its top features without a human answer, the latest machine answer,
    recorded as a human answer by ``annotator`` whose note says which suggestion it accepted."""
    if not str(annotator).strip():
        raise SpurAuditError("accepting machine suggestions records them as your answers: type your name as the "
                             "annotator first")
    todo = pairs[(pairs.class_index == int(class_index)) & (pairs.status == "machine")]
    if not len(todo) or labels is None or not len(labels):
        return []
    machine = labels[(labels.source != "human") & (labels.class_index == int(class_index))]
    machine = machine.sort_values("id" if "id" in machine else "created", kind="stable")
    latest = machine.groupby("feature").tail(1).set_index("feature")
    rows = []
    for j in todo.feature.astype(int):
        if j not in latest.index:
            continue
        r = latest.loc[j]
        score = r.get("score")
        score_txt = f", score {float(score):.3f}" if score is not None and pd.notna(score) else ""
        rows.append({"class_index": int(class_index), "feature": int(j), "answer": str(r["answer"]),
                     "annotator": str(annotator).strip(), "source": "human",
                     "note": f"accepted the {r['source']} suggestion{score_txt} (bulk accept)"})
    return rows


def class_table(num_classes: int, class_names: Sequence[str], *, labels_per_class: np.ndarray,
                accuracy: np.ndarray | None = None, gaps: pd.DataFrame | None = None,
                progress: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per class for the navigator: class_index, name, n_images, accuracy, gap, ranked, reason,
    status, human, machine, none, needs_person (columns absent from the inputs are NaN / "")."""
    K = int(num_classes)
    t = pd.DataFrame({"class_index": np.arange(K),
                      "name": [str(class_names[c]) if c < len(class_names) else str(c) for c in range(K)],
                      "n_images": np.asarray(labels_per_class, dtype=np.int64)[:K]})
    t["accuracy"] = np.asarray(accuracy, dtype=float)[:K] if accuracy is not None else np.nan
    if gaps is not None and len(gaps):
        g = gaps[["class_index", "gap"] + [c for c in ("ranked", "reason") if c in gaps]].copy()
        g["class_index"] = g["class_index"].astype(np.int64)
        t = t.merge(g, on="class_index", how="left")
    else:
        t["gap"] = np.nan
    if progress is not None and len(progress):
        t = t.merge(progress, on="class_index", how="left")
        t["status"] = t["status"].fillna("unlabelled")
    else:
        t["status"] = "unlabelled"
    return t


def sort_classes(table: pd.DataFrame, *, order: str = "index", search: str = "",
                 statuses: Sequence[str] | None = None) -> pd.DataFrame:
    """``table`` (from `class_table`) filtered by ``search`` (a class index, or text in the name,
    case-insensitive) and ``statuses``, sorted by ``order`` (one of `ORDERS`; NaN last, ties by index)."""
    if order not in ORDERS:
        raise SpurAuditError(f"unknown order {order!r}; choose one of {', '.join(ORDERS)}")
    t = table
    q = str(search or "").strip()
    if q:
        hit = t["name"].str.contains(q, case=False, regex=False)
        if q.isdigit():
            hit |= t["class_index"] == int(q)
        t = t[hit]
    if statuses:
        t = t[t["status"].isin(list(statuses))]
    col, asc = ORDERS[order]
    if col not in t:
        return t
    return t.sort_values([col, "class_index"], ascending=[asc, True], na_position="last", kind="stable")
