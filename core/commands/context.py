"""What every command handler gets: `CommandContext` (parsed args, the workspace, progress bars,
output), the options every command takes (`common_parser`) and the default workspace folder."""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from core.progress import ProgressFn
from core.serialize import to_plain
from core.workspace import Workspace


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
            self._workspace = Workspace(self.workspace_dir)
        return self._workspace

    def progress(self, description: str = "") -> ProgressFn:
        """A progress callback drawing a tqdm bar on stderr (silent when stderr is not a TTY
        and --json is set, so machine output stays clean)."""
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
