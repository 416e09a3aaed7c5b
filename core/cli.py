"""`python -m core ...`: the headless face of SpurAudit.

Each area of the engine registers its subcommands from a module in `core/commands/` (one
``register(subparsers, common)`` function each, listed in `COMMAND_MODULES`; handlers get a
`core.commands.context.CommandContext`). Every command accepts ``--workspace DIR``
(default ``$SPURAUDIT_WORKSPACE``, else ``./workspace``) and ``--json`` (print exactly one JSON
object with the result on stdout, nothing else). Progress bars go to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Callable

from core.commands import audit, concepts, data, demo, extract, jobs, mitigate, model, rare, workspace
from core.commands import study   # issue 14
from core.commands.context import CommandContext, common_parser, default_workspace
from core.errors import SpurAuditError

# Order is the order shown in --help.
COMMAND_MODULES = (demo, data, model, extract, audit, concepts, mitigate, rare, jobs, workspace)
COMMAND_MODULES += (study,)   # issue 14


def build_parser() -> argparse.ArgumentParser:
    common = common_parser()
    parser = argparse.ArgumentParser(
        prog="python -m core",
        description="SpurAudit: audit image classifiers for spurious correlations and remove them.",
        parents=[common_parser(suppress_defaults=False)],
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[CommandContext], int | None] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0 if args.command is None else 2
    ctx = CommandContext(args=args, as_json=bool(args.json),
                         workspace_dir=Path(args.workspace) if args.workspace else default_workspace())
    try:
        try:
            code = handler(ctx)
            ctx.close_bars()
            sys.stdout.flush()   # a closed pipe shows here, not at interpreter exit
        except sqlite3.DatabaseError as exc:  # a database fault the store did not translate (it translates them)
            raise SpurAuditError(f"the workspace database {ctx.workspace_dir / 'audit.db'} failed (SQLite: {exc}); "
                                 f"check it with `python -m core workspace check --workspace {ctx.workspace_dir}` "
                                 "or restore a backup") from exc
    except SpurAuditError as exc:
        ctx.close_bars()
        try:
            if ctx.as_json:
                print(json.dumps({"error": str(exc)}))
            print(f"error: {exc}", file=sys.stderr)
        except BrokenPipeError:
            return _closed_pipe()
        return 2
    except BrokenPipeError:   # e.g. `python -m core label export ... | head`: the reader is done
        return _closed_pipe()
    except KeyboardInterrupt:
        ctx.close_bars()
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def _closed_pipe() -> int:
    """The reader of stdout went away: stop quietly with the status a Unix filter killed by SIGPIPE has.
    stdout is pointed at /dev/null so the interpreter's final flush does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 128 + int(getattr(signal, "SIGPIPE", 13))
