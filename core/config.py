"""Config dataclasses from plain mappings: CLI ``--set key=value`` pairs, job params (JSON), dashboard
forms and presets in ``assets/`` all become a component's config dataclass through one function,
`config_from_mapping`, which checks every value against the field's type hint.

Rules (the same for every caller):

* unknown keys raise `SpurAuditError` listing the valid options;
* ``int`` fields take integers (or an integral float such as ``2.0``, or a string such as ``"20"``);
  ``float`` fields take numbers or numeric strings; NaN and infinities are refused;
* ``bool`` fields take booleans or ``true/false/yes/no/on/off/1/0``;
* ``str`` fields take strings; ``Literal[...]`` fields one of their values;
* ``tuple[...]``/``list[...]`` fields take sequences or comma-separated strings, element by element;
* ``X | None`` fields also take None (or the strings ``none``/``null``); nested dataclass fields take
  nested mappings; fields typed ``Any`` (or with hints that do not resolve) take anything.

The message of a refused value names the option, the expected type and the value given. After
construction the dataclass's own ``validate()`` (ranges, choices) runs when it has one.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.errors import SpurAuditError, check_options

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", ""}


class _Refused(Exception):
    """A value that does not fit a type (internal; turned into a `SpurAuditError` naming the option)."""


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if hint is type(None):
        return "None"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        inner = _type_name(args[0]) if args else "values"
        return f"a list of {inner}"
    if isinstance(hint, type):
        return {"int": "an integer", "float": "a number", "bool": "true or false", "str": "text",
                "dict": "a mapping"}.get(hint.__name__, hint.__name__)
    return str(hint)


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """``value`` converted to ``hint`` (see the module rules); `_Refused` when it does not fit."""
    if hint is Any or hint is None:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if type(None) in args and (value is None or (isinstance(value, str) and str not in args
                                                     and value.strip().lower() in _NONE)):
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name)
            except _Refused:
                continue
        raise _Refused
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value in choices:
            return value
        raise _Refused
    if origin in (tuple, list) or hint in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
            raise _Refused
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis or len(args) == 1:
            items = [_coerce(v, args[0], name) for v in value]
        elif args:
            if len(args) != len(value):
                raise _Refused
            items = [_coerce(v, a, name) for v, a in zip(value, args)]
        else:
            items = list(value)
        return tuple(items) if (origin or hint) is tuple else items
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):
            return config_from_mapping(hint, value, what=name)
        raise _Refused
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise _Refused
    if hint is int:
        if isinstance(value, bool):
            raise _Refused
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                try:
                    f = float(value)
                except ValueError:
                    raise _Refused from None
                if math.isfinite(f) and f.is_integer():
                    return int(f)
        raise _Refused
    if hint is float:
        if isinstance(value, bool):
            raise _Refused
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise _Refused from None
        if isinstance(value, (int, float)) or _is_number(value):
            f = float(value)
            if not math.isfinite(f):
                raise _Refused
            return f
        raise _Refused
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Refused
    if hint in (dict, Mapping) or origin in (dict, Mapping):
        if isinstance(value, Mapping):
            return dict(value)
        raise _Refused
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise _Refused
    return value  # a hint this module does not model (a Protocol, a TypeVar, ...): leave it


def _is_number(value: Any) -> bool:
    return isinstance(value, (np.integer, np.floating)) and not isinstance(value, np.bool_)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def config_fields(cls: type) -> dict[str, Any]:
    """``{field name: resolved type hint}`` of a config dataclass (``Any`` where a hint does not resolve)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation naming a type that is not importable here
        hints = {}
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def coerce_option(cls: type, name: str, value: Any, *, what: str = "") -> Any:
    """One option of ``cls`` checked and converted (the rules of the module docstring)."""
    fields = config_fields(cls)
    label = f"{what}.{name}" if what else name
    check_options(what or cls.__name__, [name], fields)
    try:
        return _coerce(value, fields[name], label)
    except _Refused:
        raise SpurAuditError(f"option {label} expects {_type_name(fields[name])}, got {_describe(value)}") from None


def config_from_mapping(cls: type, values: Mapping[str, Any] | None, *, what: str = "") -> Any:
    """``cls(**values)`` with every value type-checked and converted (module docstring), nested
    dataclasses from nested mappings, unknown keys refused, then ``validate()`` when ``cls`` has it.

    ``what`` names the component in messages (e.g. ``"ffw"`` → "option ffw.gamma expects a number").
    """
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"config_from_mapping needs a dataclass type, got {cls!r}")
    values = dict(values or {})
    fields = config_fields(cls)
    check_options(what or cls.__name__, values, fields)
    kwargs = {key: coerce_option(cls, key, value, what=what) for key, value in values.items()}
    try:
        config = cls(**kwargs)
    except TypeError as exc:  # a required field left out
        raise SpurAuditError(f"bad {what or cls.__name__} options: {exc}") from None
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config


__all__ = ["config_from_mapping", "coerce_option", "config_fields"]
