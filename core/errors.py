"""User-facing errors.

`SpurAuditError` is raised for anything the user can fix (bad input, missing files, unknown names,
absurd parameters). Its message names the problem *and* the fix. The CLI prints it without a
traceback (exit code 2); the dashboard shows it with ``st.error``. It subclasses ``ValueError`` so
callers validating arguments can catch either.
"""
from __future__ import annotations


class SpurAuditError(ValueError):
    """A problem with the user's input, with a message that says how to fix it."""


def check_choice(name: str, value: object, choices: "list[str] | tuple[str, ...] | set[str]") -> None:
    """Raise `SpurAuditError` naming the valid choices when ``value`` is not one of them."""
    if value not in choices:
        valid = ", ".join(sorted(map(str, choices)))
        raise SpurAuditError(f"unknown {name} {value!r}; valid choices: {valid}")
