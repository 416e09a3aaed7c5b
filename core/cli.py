"""`python -m core ...`: the headless face of SpurAudit.

Each area of the engine registers its subcommands from a module in `core/commands/` (one
``register(subparsers, common)`` function each). Every command accepts ``--workspace DIR``
(default ``$SPURAUDIT_WORKSPACE``, else ``./workspace``) and ``--json`` (print exactly one JSON
object with the result on stdout, nothing else). Progress bars go to stderr.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from core.errors import SpurAuditError
from core.progress import ProgressFn
from core.serialize import to_plain

# Order is the order shown in --help.
COMMAND_MODULES = ["demo", "data", "model", "extract", "audit", "concepts", "mitigate", "rare", "jobs", "workspace"]


def default_workspace() -> Path:
    return Path(os.environ.get("SPURAUDIT_WORKSPACE", "workspace"))


@dataclass
class CommandContext:
    """What a command handler gets: parsed args, the workspace, progress and output helpers."""

    args: argparse.Namespace
    as_json: bool
    workspace_dir: Path
    _workspace: Any = field(default=None, repr=False)
    _bars: list = field(default_factory=list, repr=False)

    def workspace(self):
        """The `core.workspace.Workspace` named by ``--workspace`` (created if missing)."""
        if self._workspace is None:
            from core.workspace import Workspace

            self._workspace = Workspace(self.workspace_dir)
        return self._workspace

    def progress(self, description: str = "") -> ProgressFn:
        """A progress callback drawing a tqdm bar on stderr (silent when stderr is not a TTY
        and --json is set, so machine output stays clean)."""
        from tqdm.auto import tqdm

        disable = self.as_json and not sys.stderr.isatty()
        bar = tqdm(total=1000, desc=description, disable=disable, file=sys.stderr,
                   bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed} {postfix}")
        self._bars.append(bar)

        def report(fraction: float, message: str = "") -> None:
            target = int(round(min(max(fraction, 0.0), 1.0) * 1000))
            if target > bar.n:
                bar.update(target - bar.n)
            if message:
                bar.set_postfix_str(message[:60], refresh=False)

        return report

    def close_bars(self) -> None:
        for bar in self._bars:
            bar.close()
        self._bars.clear()

    def emit(self, result: dict, text: str | None = None) -> None:
        """Print ``result`` as one JSON object (``--json``) or ``text`` (default: pretty JSON)."""
        self.close_bars()
        if self.as_json:
            print(json.dumps(to_plain(result)))
        else:
            print(text if text is not None else json.dumps(to_plain(result), indent=2))


def common_parser(*, suppress_defaults: bool = True) -> argparse.ArgumentParser:
    """Options every command takes; pass as ``parents=[common]`` to each subparser.

    In subparsers the defaults are suppressed, so ``--json``/``--workspace`` given before the
    command (``python -m core --json dataset list``) are not reset by the subcommand's defaults.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workspace", type=Path, default=argparse.SUPPRESS if suppress_defaults else None,
                        help="workspace folder (default: $SPURAUDIT_WORKSPACE or ./workspace)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress_defaults else False,
                        help="print one JSON object with the result")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = common_parser()
    parser = argparse.ArgumentParser(
        prog="python -m core",
        description="SpurAudit: audit image classifiers for spurious correlations and remove them.",
        parents=[common_parser(suppress_defaults=False)],
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"core.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"core.commands.{name}":
                continue
            raise
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
