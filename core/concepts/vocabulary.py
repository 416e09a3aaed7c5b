"""The default concept vocabulary (``assets/concepts/vocabulary.json``): the spurious context concepts
and the prompt-template ensemble the Automation page and the audit chain pre-fill, and the core
concepts made from a dataset's class names."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from core.errors import SpurAuditError

VOCABULARY_PATH = Path(__file__).resolve().parents[2] / "assets" / "concepts" / "vocabulary.json"


@lru_cache(maxsize=1)
def load_vocabulary() -> dict:
    """``{"templates": [...], "core_template": "a {}", "spurious": [...]}`` from the assets file."""
    try:
        data = json.loads(VOCABULARY_PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SpurAuditError(f"cannot read the concept vocabulary {VOCABULARY_PATH} ({exc}); restore the file "
                             "from the repository") from exc
    for key in ("templates", "spurious", "core_template"):
        if key not in data:
            raise SpurAuditError(f"{VOCABULARY_PATH} lacks {key!r}; restore the file from the repository")
    return data


def default_spurious_concepts() -> list[str]:
    return list(load_vocabulary()["spurious"])


def default_templates() -> list[str]:
    return list(load_vocabulary()["templates"])


def core_concepts(class_names: list[str]) -> list[str]:
    """One core concept per class name (``"a {}"`` filled with the name, underscores as spaces)."""
    template = load_vocabulary()["core_template"]
    return [template.format(str(c).replace("_", " ")) for c in class_names]


def parse_concepts(text: str) -> list[str]:
    """Concept texts from a box: one per line or comma-separated; blanks dropped, order kept, no repeats."""
    out: list[str] = []
    for line in str(text).replace(",", "\n").splitlines():
        t = line.strip()
        if t and t not in out:
            out.append(t)
    return out


def check_templates(templates: list[str]) -> list[str]:
    """Templates each holding one ``{}`` (where the concept goes); `SpurAuditError` naming a bad one."""
    templates = [t.strip() for t in templates if t and t.strip()]
    if not templates:
        raise SpurAuditError("give at least one prompt template, e.g. 'a photo of {}.'")
    for t in templates:
        if t.count("{}") != 1:
            raise SpurAuditError(f"prompt template {t!r} must hold exactly one {{}} where the concept goes")
    return templates


__all__ = ["load_vocabulary", "default_spurious_concepts", "default_templates", "core_concepts", "parse_concepts",
           "check_templates", "VOCABULARY_PATH"]
