"""User-facing errors.

`SpurAuditError` is raised for anything the user can fix (bad input, missing files, unknown names,
absurd parameters). Its message names the problem *and* the fix. The CLI prints it without a
traceback (exit code 2); the dashboard shows it with ``st.error``. It subclasses ``ValueError`` so
callers validating arguments can catch either.
"""
from __future__ import annotations

import inspect
from typing import Callable, Iterable


class SpurAuditError(ValueError):
    """A problem with the user's input, with a message that says how to fix it."""


def check_choice(name: str, value: object, choices: "list[str] | tuple[str, ...] | set[str]") -> None:
    """Raise `SpurAuditError` naming the valid choices when ``value`` is not one of them."""
    if value not in choices:
        valid = ", ".join(sorted(map(str, choices)))
        raise SpurAuditError(f"unknown {name} {value!r}; valid choices: {valid}")


def check_options(what: str, given: "Iterable[str]", valid: "Iterable[str]") -> None:
    """Raise `SpurAuditError` naming the unknown keys of ``given`` and listing ``valid`` (options of a
    config, keyword arguments of a builder, fields of a record)."""
    valid = sorted(valid) if isinstance(valid, (set, frozenset)) else list(valid)   # else: the caller's order
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise SpurAuditError(f"unknown {what} option(s) {unknown}; valid options: "
                             f"{', '.join(map(str, valid)) or 'none'}")


def check_call_options(what: str, fn: "Callable[..., object]", options: "Iterable[str]", *,
                       unlisted: "Iterable[str]" = ()) -> None:
    """`check_options` against the keyword parameters of ``fn``; names in ``unlisted`` (the ones the
    caller fills in itself) are accepted but not offered in the message. A function taking
    ``**kwargs`` accepts anything."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    hidden = set(unlisted)
    names = [n for n, p in params.items() if p.kind in keyword]
    check_options(what, set(options) - hidden, [n for n in names if n not in hidden])
