"""User strings inside Plotly figures, made literal.

Plotly's text (titles, tick labels, legend names, hover text, annotations) is a small HTML dialect:
``<a href=...>`` becomes a real link, ``<b>``/``<span style>`` restyle it, and entities are decoded.
A class, dataset, model or concept name can therefore inject a link into every chart that shows it
(the injection browser test found ``<a xlink:href="http://...">`` on the Dataset and Gaps pages).
`safe_figure` escapes ``& < >`` in every string of a figure except the hover/text templates, which are
SpurAudit's own markup (``<br>``, ``<extra>``) — the values they substitute (``%{text}``, ``%{x}``)
come from the escaped arrays. Plotly decodes the entities back, so the name is shown as typed.
"""
from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

#: keys whose strings are our own Plotly markup, not data
_TEMPLATE_KEYS = frozenset({"hovertemplate", "texttemplate", "hovertemplatefallback"})


def escape_plotly_text(text: str) -> str:
    """``text`` with ``& < >`` as entities, so Plotly shows it literally (never as a tag)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_tree(node: Any) -> Any:
    if isinstance(node, str):
        return escape_plotly_text(node)
    if isinstance(node, dict):
        return {k: (v if k in _TEMPLATE_KEYS else _escape_tree(v)) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_escape_tree(v) for v in node]
    if hasattr(node, "dtype") and getattr(node.dtype, "kind", "") in "OUS":   # numpy string/object arrays
        return [_escape_tree(v) for v in node.tolist()]
    return node


def safe_figure(fig):
    """A copy of Plotly figure ``fig`` whose data and layout strings are escaped (see the module
    docstring); numbers, colours and our hover templates are unchanged. Idempotence is not needed:
    call it once, where the figure is shown or written."""
    spec = fig.to_plotly_json()
    return go.Figure({"data": _escape_tree(spec.get("data", [])), "layout": _escape_tree(spec.get("layout", {}))})


__all__ = ["escape_plotly_text", "safe_figure"]
