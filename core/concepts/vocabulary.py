"""The default concept vocabulary (``assets/concepts/vocabulary.json``): the spurious context concepts
and the prompt-template ensemble the Automation page and the audit chain pre-fill, and the core
concepts made from a dataset's class names.

Per-class concepts: every class is measured with its own spurious and core concept texts. The
defaults are the global spurious list for every class and, as core, the class's own name
(`core_concepts`); ``per_class`` overrides either list for the classes it names
(`check_per_class`, `class_concepts`), and `read_per_class_csv` reads overrides from a CSV file with
the header ``class,kind,text`` (one concept text per row, ``kind`` = spurious or core).
"""
from __future__ import annotations

import csv
import io
import json
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from core.errors import SpurAuditError
from core.workspace import CONCEPT_KINDS

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


PER_CLASS_HEADER = ("class", "kind", "text")
#: the columns of the Automation page's override table (`per_class_from_rows`)
PER_CLASS_COLUMNS = ("class", "spurious", "core")


def _class_index(key: object, class_names: Sequence[str]) -> int:
    """Class ``key`` (a class name, or a class index as int / digits) -> its index; error naming the known ones."""
    names = [str(n) for n in class_names]
    text = str(key).strip()
    if text in names:
        return names.index(text)
    if isinstance(key, (int, np.integer)) or text.isdigit():
        i = int(text)
        if 0 <= i < len(names):
            return i
    shown = ", ".join(names[:12]) + (f", ... ({len(names)} classes)" if len(names) > 12 else "")
    raise SpurAuditError(f"per-class concepts: unknown class {text!r}; use a class name or index of this dataset "
                         f"({shown})")


def _concept_list(value: object, *, where: str, kind: str) -> list[str]:
    if isinstance(value, str):
        texts = parse_concepts(value)
    elif isinstance(value, (list, tuple)):
        texts = []
        for t in value:
            if not isinstance(t, str):
                raise SpurAuditError(f"{where}: {kind} concepts must be texts, got {t!r}")
            if t.strip() and t.strip() not in texts:
                texts.append(t.strip())
    else:
        raise SpurAuditError(f"{where}: {kind} concepts must be a list of texts, got {type(value).__name__}")
    if not texts:
        raise SpurAuditError(f"{where}: the {kind} concept list is empty; give at least one concept text "
                             f"(or leave {kind} out to use the default)")
    return texts


def check_per_class(per_class: Mapping[object, Mapping[str, object]] | None,
                    class_names: Sequence[str]) -> dict[int, dict[str, list[str]]]:
    """Validated overrides: ``{class name or index: {"spurious": [...], "core": [...]}}`` (either key may
    be left out: that list keeps its default) -> ``{class index: {kind: [texts]}}`` with only the kinds
    given. `SpurAuditError` naming the class for an unknown class, a class named twice, an unknown kind,
    an empty list or a non-text concept."""
    out: dict[int, dict[str, list[str]]] = {}
    for key, entry in (per_class or {}).items():
        c = _class_index(key, class_names)
        where = f"per-class concepts of class {class_names[c]!r}"
        if c in out:
            raise SpurAuditError(f"{where}: the class is named twice ({key!r}); give each class once")
        if not isinstance(entry, Mapping):
            raise SpurAuditError(f"{where}: expected {{\"spurious\": [...], \"core\": [...]}}, got {entry!r}")
        unknown = sorted(set(map(str, entry)) - set(CONCEPT_KINDS))
        if unknown or not entry:
            raise SpurAuditError(f"{where}: kinds must be spurious and/or core, got {sorted(map(str, entry)) or 'none'}")
        out[c] = {kind: _concept_list(entry[kind], where=where, kind=kind) for kind in CONCEPT_KINDS if kind in entry}
    return out


def class_concepts(class_names: Sequence[str], *, spurious: Sequence[str], core: Sequence[str] | None = None,
                   per_class: Mapping[object, Mapping[str, object]] | None = None) -> list[dict[str, list[str]]]:
    """Each class's concept texts, one ``{"spurious": [...], "core": [...]}`` per class index.

    Defaults: ``spurious`` for every class; ``core`` for every class when given, else the class's own
    name (`core_concepts`); ``per_class`` (validated by `check_per_class`) replaces either list for the
    classes it names."""
    spurious = [t.strip() for t in spurious if t and t.strip()]
    if not spurious:
        raise SpurAuditError("name at least one spurious concept, e.g. water")
    shared_core = None if core is None else [t.strip() for t in core if t and t.strip()]
    overrides = check_per_class(per_class, class_names)
    own = core_concepts(list(class_names)) if shared_core is None else None
    out = []
    for c in range(len(class_names)):
        entry = {"spurious": list(spurious), "core": list(shared_core) if shared_core is not None else [own[c]]}
        entry.update({k: list(v) for k, v in overrides.get(c, {}).items()})
        out.append(entry)
    return out


def per_class_from_rows(rows: Sequence[Mapping[str, object]]) -> dict[str, dict[str, str]]:
    """Overrides from table rows ``{"class": ..., "spurious": "a, b", "core": "c"}`` (the Automation
    page's editor: comma-separated cells) -> ``{class: {"spurious": text, "core": text}}`` for
    `check_per_class` (which splits the texts and refuses an empty cell). Fully blank rows are
    dropped; a row without a class, or a class in two rows, is a `SpurAuditError` naming the row."""
    def cell(value: object) -> str:
        return "" if value is None or (isinstance(value, float) and value != value) else str(value).strip()

    out: dict[str, dict[str, str]] = {}
    for i, row in enumerate(rows, start=1):
        cls, spurious, core = (cell(row.get(k)) for k in PER_CLASS_COLUMNS)
        if not (cls or spurious or core):
            continue
        if not cls:
            raise SpurAuditError(f"override row {i}: type the class it is for (or delete the row)")
        if cls in out:
            raise SpurAuditError(f"override row {i}: class {cls!r} already has an override above; keep one row per class")
        out[cls] = {"spurious": spurious, "core": core}
    return out


def read_per_class_csv(text: str, *, source: str = "per-class file") -> dict[str, dict[str, list[str]]]:
    """Per-class overrides from CSV text with the header ``class,kind,text`` (one concept per row,
    ``kind`` spurious or core; rows of one class and kind are collected in order) ->
    ``{class: {kind: [texts]}}`` for `check_per_class`. `SpurAuditError` naming the line of a bad row."""
    rows = list(csv.reader(io.StringIO(text)))
    rows = [(i + 1, r) for i, r in enumerate(rows) if any(cell.strip() for cell in r)]
    if not rows:
        raise SpurAuditError(f"{source} is empty; its first line must be the header class,kind,text")
    line, header = rows[0]
    if tuple(h.strip().lower() for h in header) != PER_CLASS_HEADER:
        raise SpurAuditError(f"{source} line {line}: the header must be class,kind,text, got {','.join(header)!r}")
    out: dict[str, dict[str, list[str]]] = {}
    for line, row in rows[1:]:
        if len(row) != 3:
            raise SpurAuditError(f"{source} line {line}: expected 3 cells (class,kind,text), got {len(row)}; "
                                 "quote a text that holds a comma")
        cls, kind, concept = (cell.strip() for cell in row)
        if not cls:
            raise SpurAuditError(f"{source} line {line}: the class cell is empty")
        if kind.lower() not in CONCEPT_KINDS:
            raise SpurAuditError(f"{source} line {line} (class {cls!r}): kind {kind!r} must be spurious or core")
        if not concept:
            raise SpurAuditError(f"{source} line {line} (class {cls!r}): the concept text is empty")
        texts = out.setdefault(cls, {}).setdefault(kind.lower(), [])
        if concept not in texts:
            texts.append(concept)
    if not out:
        raise SpurAuditError(f"{source} has a header but no rows; add lines such as: waterbird,spurious,water")
    return out


def load_per_class_file(path: str | Path) -> dict[str, dict[str, list[str]]]:
    """`read_per_class_csv` of the file at ``path`` (an error naming the file when it cannot be read)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise SpurAuditError(f"per-class concepts file {p} does not exist; give a CSV with the header class,kind,text")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpurAuditError(f"cannot read the per-class concepts file {p} ({exc}); save it as UTF-8 CSV") from exc
    return read_per_class_csv(text, source=f"per-class concepts file {p.name}")


__all__ = ["PER_CLASS_HEADER", "PER_CLASS_COLUMNS", "per_class_from_rows", "check_per_class", "class_concepts", "read_per_class_csv",
           "load_per_class_file", "load_vocabulary", "default_spurious_concepts", "default_templates", "core_concepts", "parse_concepts",
           "check_templates", "VOCABULARY_PATH"]
