"""The shared tail of the benchmarks: write the result JSON, then print it as one JSON line or leave the
table to the caller."""
from __future__ import annotations

import json
from pathlib import Path


def write_result(result: dict, out: "str | Path | None", *, as_json: bool) -> bool:
    """Write ``result`` (indented JSON) to ``out`` when given (parents created); print it as one JSON line
    when ``as_json``. Returns True when the caller should print its human-readable table instead."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        print(json.dumps(result))
        return False
    return True
