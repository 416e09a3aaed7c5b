"""The random-init tiny open_clip model the tests use ("spuraudit-tiny-clip"): no weights can be
downloaded here, so tests that use it check the code path, not CLIP's semantics."""
from __future__ import annotations

import json
from pathlib import Path

TINY_CLIP_NAME = "spuraudit-tiny-clip"
TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}


def register_tiny_clip(folder: Path) -> str:
    """Write the tiny config into ``folder`` and add it to open_clip's model configs; returns its name."""
    import open_clip  # noqa: PLC0415 - optional backend, imported by the tests that need it

    (Path(folder) / f"{TINY_CLIP_NAME}.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder)
    return TINY_CLIP_NAME
