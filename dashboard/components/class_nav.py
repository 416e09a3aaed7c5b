"""The class navigator: one selectbox bound to the shared current class (``sa_class``,
`dashboard.components.state.CLASS_KEY`), so a class picked on one page is the class of the next."""
from __future__ import annotations

from typing import Any, Sequence

import streamlit as st

from dashboard.components.state import CLASS_KEY


def class_label(class_names: Sequence[str], c: int) -> str:
    """``"3: cat"`` (the index alone when the class has no name)."""
    return f"{c}: {class_names[c]}" if c < len(class_names) else str(c)


def class_select(container: Any, class_names: Sequence[str], num_classes: int, *, label: str = "Class") -> int:
    """Draw the class selectbox in ``container`` (``st`` or a column) and return the chosen index;
    a current class that this dataset does not have falls back to class 0."""
    if st.session_state.get(CLASS_KEY) not in range(num_classes):
        st.session_state[CLASS_KEY] = 0
    return int(container.selectbox(label, range(num_classes), key=CLASS_KEY,
                                   format_func=lambda c: class_label(class_names, c)))
