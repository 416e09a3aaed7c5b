"""The class navigator: the class selector of Features / Rankings / Crops (and the class links of Gaps),
bound to the shared current class (``sa_class``, `dashboard.components.state.CLASS_KEY`), so a class
picked on one page is the class of the next.

At 1,000 classes a plain selectbox is unusable, so `class_navigator` adds a search (class index or
text in the name), an order (index, largest gap, most images, lowest accuracy, most features needing
a person) and a labelling-status filter (unlabelled / machine-only / partly human / human), computed
by `core.audit.labelling` over the class table `dashboard.resources.class_table` caches. The current
class always stays among the options (shown first when a filter would hide it).

`open_class(c, page)` makes ``c`` the current class and switches page (Gaps' bar click, "next
unlabelled"); it goes through `PENDING_KEY` because a widget's own key cannot be set after the widget
was drawn in the same run.
"""
from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import streamlit as st

from core.audit.labelling import ORDERS, STATUSES, sort_classes
from dashboard import resources
from dashboard.components.state import CLASS_KEY

PENDING_KEY = "sa_class_pending"
RANKINGS_PAGE = "app_pages/rankings.py"
FEATURES_PAGE = "app_pages/features.py"


def class_label(class_names: Sequence[str], c: int) -> str:
    """``"3: cat"`` (the index alone when the class has no name)."""
    return f"{c}: {class_names[c]}" if c < len(class_names) else str(c)


def apply_pending(num_classes: int) -> None:
    """Make a class chosen elsewhere (`open_class`) current, before the selector is drawn; a current
    class that this dataset does not have falls back to class 0."""
    pending = st.session_state.pop(PENDING_KEY, None)
    if pending is not None and int(pending) in range(num_classes):
        st.session_state[CLASS_KEY] = int(pending)
    if st.session_state.get(CLASS_KEY) not in range(num_classes):
        st.session_state[CLASS_KEY] = 0


def set_class(c: int) -> None:
    """Make ``c`` the current class from the next run on (safe after the selector was drawn)."""
    st.session_state[PENDING_KEY] = int(c)


def open_class(c: int, page: str | None = None) -> None:
    """Make ``c`` the current class and show ``page`` (a path like `RANKINGS_PAGE`; None = rerun here)."""
    set_class(c)
    if page is None:
        st.rerun()
    st.switch_page(page)


def class_select(container: Any, class_names: Sequence[str], num_classes: int, *, label: str = "Class") -> int:
    """A plain class selectbox bound to the current class (for small class counts and tests)."""
    apply_pending(num_classes)
    return int(container.selectbox(label, range(num_classes), key=CLASS_KEY,
                                   format_func=lambda c: class_label(class_names, c)))


def _option_text(row) -> str:
    gap = f" · gap {row.gap * 100:+.1f}" if pd.notna(row.gap) else ""
    lab = f" · {int(row.human)}/{int(row.n_features)} by a person" if pd.notna(getattr(row, "n_features", None)) else ""
    return f"{int(row.class_index)}: {row.name}{gap}{lab}"


def class_navigator(ws, dataset: str, model: str, class_names: Sequence[str], num_classes: int, *,
                    split: str | None = None, key: str = "nav", label: str = "Class",
                    gaps: pd.DataFrame | None = None, gaps_from: str | None = None) -> int:
    """Search / order / status filter and the class selector; returns the current class index. With
    no current class yet, the class with the largest saved gap is opened (else class 0).

    ``split``: the split whose image counts and accuracy the order uses (default: the held-out one).
    ``gaps``: per-class gaps (columns class_index, gap) that replace the feature ranking's in the options
    and the "largest gap" order — the page's concept ranking; ``gaps_from`` names it in the caption."""
    table = resources.class_table(ws, dataset, model, split)
    if gaps is not None:
        table = table.copy()
        by_class = pd.Series(gaps["gap"].to_numpy(float), index=gaps["class_index"].astype(int).to_numpy())
        table["gap"] = table["class_index"].astype(int).map(by_class)
    if CLASS_KEY not in st.session_state and PENDING_KEY not in st.session_state:
        best = sort_classes(table, order="largest gap")     # open on the class that matters most, not on 0
        if len(best) and pd.notna(best["gap"].iloc[0]):
            set_class(int(best["class_index"].iloc[0]))
    apply_pending(num_classes)
    c1, c2, c3 = st.columns([2, 1.3, 2])
    search = c1.text_input("Find a class", key=f"{key}_search", placeholder="name or index")
    order = c2.selectbox("Order", list(ORDERS), key=f"{key}_order",
                         help="gap: the saved audit's gaps (or the live ones); accuracy and images: on the "
                              f"{table.attrs.get('split', 'held-out')} split")
    statuses = c3.multiselect("Labelling status", list(STATUSES), key=f"{key}_status",
                              placeholder="any status",
                              help="unlabelled: no answer; machine-only: only machine suggestions; "
                                   "partly human / human: some / every top feature answered by a person")
    view = sort_classes(table, order=order, search=search, statuses=statuses)
    options = view.class_index.astype(int).tolist()
    st.session_state[f"{key}_view"] = options           # the order "next unlabelled" walks
    current = int(st.session_state[CLASS_KEY])
    hidden = current not in options
    if hidden:
        options = [current] + options
    text = {int(r.class_index): _option_text(r) for r in table.itertuples()}
    chosen = int(st.selectbox(label, options, key=CLASS_KEY, format_func=lambda c: text.get(c, str(c))))
    n = len(view)
    note = f"{n:,} of {num_classes:,} classes match" if (search or statuses) else f"{num_classes:,} classes"
    if hidden:
        note += " (the current class does not match and is listed first)"
    st.caption(note + f", ordered by {order}" + (f"; gaps {gaps_from}" if gaps is not None and gaps_from else "")
               + ".")
    return chosen


def progress_line(table: pd.DataFrame, class_index: int | None = None) -> str:
    """"312 of 5,000 features labelled (300 by a person, 12 by machine only)" overall, then the class."""
    t = table.dropna(subset=["n_features"]) if "n_features" in table else table.iloc[:0]
    total = int(t.n_features.sum()) if len(t) else 0
    human, machine = (int(t.human.sum()), int(t.machine.sum())) if len(t) else (0, 0)
    out = (f"{human + machine:,} of {total:,} features labelled ({human:,} by a person, {machine:,} by machine "
           "only)")
    if class_index is not None and len(t) and (t.class_index == class_index).any():
        r = t[t.class_index == class_index].iloc[0]
        out += (f" · this class: {int(r.human) + int(r.machine)} of {int(r.n_features)} ({int(r.human)} by a "
                f"person, {int(r.machine)} by machine only)")
    return out
