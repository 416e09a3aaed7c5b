"""Paginated thumbnail grid (with optional activation-map overlays).

Only thumbnails go to the browser: every image is shrunk by `dashboard.resources.thumb` (cached) and a
page shows at most ``per_page`` of them. ``GridItem.overlay`` is the path of an overlay image that
`core.features.maps` wrote into the workspace cache (activation map over the image, or a feature
attack); with ``show_overlay=True`` it is shown instead of the plain image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import streamlit as st

from dashboard import resources
from dashboard.components.state import md_escape


@dataclass
class GridItem:
    """One cell: ``path`` of the image, a short ``caption``, an optional ``overlay`` image path."""

    path: str | Path
    caption: str = ""
    overlay: str | Path | None = None


def _cell_image(item: GridItem, size: int, show_overlay: bool) -> bytes | None:
    path = Path(item.path)
    if show_overlay and item.overlay is not None and Path(item.overlay).exists():
        path = Path(item.overlay)
    if not path.exists():
        return None
    return resources.thumb(path, size)


def pager(total: int, *, per_page: int, key: str) -> tuple[int, int]:
    """Page selector; returns the (start, stop) slice of the current page."""
    pages = max(1, math.ceil(total / per_page))
    state_key = f"{key}__page"
    page = min(max(int(st.session_state.get(state_key, 1)), 1), pages)
    if pages > 1:
        c1, c2, c3 = st.columns([1, 2, 1])
        if c1.button("◀ Previous", key=f"{key}__prev", disabled=page <= 1, width="stretch"):
            page -= 1
        if c3.button("Next ▶", key=f"{key}__next", disabled=page >= pages, width="stretch"):
            page += 1
        c2.markdown(f"<div style='text-align:center'>page {page} of {pages} · {total} images</div>",
                    unsafe_allow_html=True)
    st.session_state[state_key] = page
    start = (page - 1) * per_page
    return start, min(start + per_page, total)


def image_grid(items: Sequence[GridItem], *, key: str, per_page: int = 24, columns: int = 6,
               size: int = resources.THUMB_SIZE, show_overlay: bool = False, paginate: bool = True) -> None:
    """Draw ``items`` as a grid of thumbnails, ``per_page`` at a time (pager above the grid)."""
    if not items:
        st.caption("No images.")
        return
    if paginate:
        start, stop = pager(len(items), per_page=per_page, key=key)
    else:
        start, stop = 0, min(len(items), per_page)
    page_items = list(items[start:stop])
    for row in range(0, len(page_items), columns):
        cols = st.columns(columns)
        for col, item in zip(cols, page_items[row:row + columns]):
            with col:
                png = _cell_image(item, size, show_overlay)
                if png is None:
                    st.caption(f"missing: {md_escape(Path(item.path).name)}")
                else:
                    st.image(png, caption=md_escape(item.caption) if item.caption else None, width=size)  # Markdown
