"""Form validation shared by the pages that start work (New audit, Automation).

Every form's values become the config dataclass of the job they start through `core.config`
(`checked`: typed, ranges checked by the dataclass's own ``validate()``), plus the few checks of what a
person typed that only the machine running the dashboard can answer (`check_file`, `check_folder`,
`check_weights`). A failed check is shown as one ``st.error`` naming the field and the fix
(`show_error`), never a traceback; the form stays on screen with what was typed.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable, TypeVar

import streamlit as st

from core.config import config_from_mapping
from core.errors import SpurAuditError

T = TypeVar("T")

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
#: optional backends: import name -> the pip install that brings it
OPTIONAL_PACKAGES = {"open_clip": "pip install open-clip-torch", "segment_anything": "pip install segment-anything",
                     "timm": "pip install timm"}


def checked(cls: type[T], values: dict[str, Any], *, what: str) -> T:
    """``values`` as dataclass ``cls`` (`core.config.config_from_mapping`; `SpurAuditError` on a bad one)."""
    return config_from_mapping(cls, values, what=what)


def _existing(path: str, *, what: str, kind: str) -> Path:
    """``path`` (``~`` expanded) when it exists; `SpurAuditError` naming ``what`` when it is blank or missing."""
    text = str(path or "").strip()
    if not text:
        raise SpurAuditError(f"{what}: type a {kind} path")
    p = Path(text).expanduser()
    if not p.exists():
        raise SpurAuditError(f"{what}: {p} does not exist; check the path (it is read on the machine running "
                             "the dashboard)")
    return p


def check_file(path: str, *, what: str, suffixes: tuple[str, ...] = ()) -> Path:
    """An existing file at ``path`` (``~`` expanded); `SpurAuditError` naming ``what`` otherwise."""
    p = _existing(path, what=what, kind="file")
    if not p.is_file():
        raise SpurAuditError(f"{what}: {p} is a folder; type the path of the file")
    if suffixes and p.suffix.lower() not in suffixes:
        raise SpurAuditError(f"{what}: {p.name} is not a {' / '.join(suffixes)} file")
    return p


def check_folder(path: str, *, what: str) -> Path:
    """An existing folder at ``path``; `SpurAuditError` naming ``what`` otherwise."""
    p = _existing(path, what=what, kind="folder")
    if not p.is_dir():
        raise SpurAuditError(f"{what}: {p} is a file; type the path of the folder")
    return p


def check_package(module: str, *, what: str) -> None:
    """`SpurAuditError` naming the ``pip install`` when optional package ``module`` is missing."""
    if importlib.util.find_spec(module) is None:
        raise SpurAuditError(f"{what} needs the optional package {module}: {OPTIONAL_PACKAGES.get(module, 'pip install ' + module)}")


def check_weights(value: str, *, what: str, tags: tuple[str, ...] = ()) -> str | None:
    """A weights field: blank -> None; a known tag (e.g. ``openai``) as is; anything that looks like a
    path must be an existing weights file (``.pt``/``.pth``/``.bin``/``.safetensors``)."""
    text = str(value or "").strip()
    if not text:
        return None
    if text in tags:
        return text
    looks_like_path = "/" in text or "\\" in text or Path(text).suffix != ""
    if not looks_like_path:
        raise SpurAuditError(f"{what}: {text!r} is neither a weights file nor a known tag "
                             f"({', '.join(tags) or 'none'}); type the path of a {'/'.join(WEIGHT_SUFFIXES)} file")
    return str(check_file(text, what=what, suffixes=WEIGHT_SUFFIXES))


def show_error(exc: SpurAuditError) -> None:
    st.error(str(exc), icon=":material/error:")


def attempt(fn: Callable[[], T]) -> T | None:
    """``fn()``, or None after showing its `SpurAuditError` as a message (the page goes on rendering)."""
    try:
        return fn()
    except SpurAuditError as exc:
        show_error(exc)
        return None


__all__ = ["checked", "check_file", "check_folder", "check_package", "check_weights", "show_error", "attempt"]
