"""Workspace picker, the session-state keys shared by pages, and the page context.

Session-state keys shared by pages (one name each, defined here):

- ``sa_workspace`` (`WS_KEY`): the workspace folder typed in the sidebar;
- ``sa_dataset`` (`DATASET_KEY`), ``sa_model`` (`MODEL_KEY`): the sidebar's selection;
- ``sa_class`` (`CLASS_KEY`): the current class, kept across Features / Rankings / Gaps / Crops
  (`dashboard.components.class_nav`; `keep_shared_state` keeps it while a page without the selector
  is shown).

The sidebar (`sidebar`, drawn by ``app.py`` on every rerun inside the page guard) holds the workspace
folder, the dataset and model selectors and the active-jobs count. Pages call `context()` (or
`features_page()`) to get a `PageContext`; it raises `NeedsSetup` (rendered as a friendly message with
the exact command) when the workspace is missing or has no dataset/model yet. User strings shown inside
Markdown go through `md_escape`.
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from core.audit.artifacts import audited_models
from core.errors import SpurAuditError
from dashboard import resources
from dashboard.components.guard import NeedsSetup

WS_KEY = "sa_workspace"
DATASET_KEY = "sa_dataset"
MODEL_KEY = "sa_model"
CLASS_KEY = "sa_class"
#: keys of widgets that only some pages draw: re-assigned every run so Streamlit keeps them
SHARED_WIDGET_KEYS = (CLASS_KEY,)

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$&])")
#: where GitHub-flavoured Markdown starts an auto-link (``http://``, ``www.``, ``user@host``): its
#: auto-link pass reads the text *after* backslash escapes are undone, so escaping cannot stop it; a
#: word joiner (U+2060, invisible, no line break) after the trigger does
_AUTOLINK_TRIGGER = re.compile(r"(?i)(://|\bwww(?=\.)|@)")
WORD_JOINER = "\u2060"


def md_escape(text: object) -> str:
    """``text`` made literal inside Markdown: every character Markdown (or Streamlit's ``:color[...]``,
    ``:emoji:`` and ``$math$`` extensions, or inline HTML) could read is backslash-escaped and line
    breaks become spaces; URLs, ``www.`` hosts and e-mail addresses get a `WORD_JOINER` after their
    trigger so they are not auto-linked. For user strings (class, dataset, model names) inside
    ``st.markdown``, ``st.caption``, ``st.info`` and friends."""
    flat = _AUTOLINK_TRIGGER.sub(lambda m: m.group(1) + WORD_JOINER, " ".join(str(text).splitlines()))
    return _MD_SPECIAL.sub(r"\\\1", flat)


def default_workspace() -> str:
    """``$SPURAUDIT_WORKSPACE``, else ``./workspace`` (the same default as the CLI)."""
    return os.environ.get("SPURAUDIT_WORKSPACE") or "workspace"


def workspace_text() -> str:
    st.session_state.setdefault(WS_KEY, default_workspace())
    return str(st.session_state[WS_KEY]).strip()


def demo_command(root: str | Path) -> str:
    return f"python -m core demo --workspace {shlex.quote(str(root))}"


@dataclass
class PageContext:
    """What a page needs: the workspace and the current (dataset, model) choice (may be None)."""

    ws: object                  # core.workspace.Workspace
    dataset: str | None
    model: str | None

    def require_dataset(self) -> str:
        if not self.dataset:
            raise NeedsSetup(
                "This workspace has no dataset yet. Build the demo (a small Colored-MNIST dataset, a "
                "small CNN, features, an audit and a mitigation run) with:",
                demo_command(self.ws.root))
        return self.dataset

    def require_model(self) -> tuple[str, str]:
        dataset = self.require_dataset()
        if not self.model:
            raise NeedsSetup(
                f"No model is registered for dataset **{md_escape(dataset)}** yet. Train one (or run the demo):",
                f"python -m core model train {shlex.quote(dataset)}-cnn --workspace "
                f"{shlex.quote(str(self.ws.root))} --dataset {shlex.quote(dataset)} --arch small_cnn")
        return dataset, self.model

    def require_features(self) -> tuple[str, str, list[str]]:
        """(dataset, model, splits with extracted features); `NeedsSetup` naming the extract command."""
        dataset, model = self.require_model()
        splits = resources.feature_splits(self.ws, dataset, model)
        if not splits:
            raise NeedsSetup(f"No features extracted for **{md_escape(dataset)}** / **{md_escape(model)}** yet. "
                             "Extract them:",
                             f"python -m core extract --workspace {self.ws.root} --dataset {dataset} --model {model}")
        return dataset, model, splits


def open_workspace() -> object:
    """The `Workspace` named in the sidebar; `NeedsSetup` when the folder is not a workspace."""
    text = workspace_text()
    if not text:
        raise NeedsSetup("Type a workspace folder in the sidebar.")
    root = Path(text).expanduser()
    if not (root / "audit.db").exists():
        where = "does not exist" if not root.exists() else "is not a SpurAudit workspace yet (no audit.db)"
        raise NeedsSetup(
            f"The folder `{root}` {where}. Create a workspace with the demo data (or pick another "
            "folder in the sidebar):", demo_command(root))
    return resources.workspace(str(root.resolve()))


def models_for(ws, dataset: str | None) -> list[str]:
    """Models that make sense with ``dataset``: trained on it, dataset-agnostic, or with its features."""
    if dataset is None:
        return []
    with_features = {fs.model for fs in ws.list_feature_sets(dataset=dataset)}
    return [m.name for m in ws.list_models() if m.dataset in (dataset, None) or m.name in with_features]


def default_dataset(ws, datasets: list[str]) -> str | None:
    """The dataset to open first: one with a finished audit (its pages have the most to show), else the first."""
    audited = [d for d in datasets if audited_models(ws, d)]
    return (audited or datasets or [None])[0]


def sidebar() -> None:
    """Draw the workspace picker, the (dataset, model) selectors and the active-jobs count; problems
    are shown inline (``app.py`` runs this inside the page guard, so nothing escapes as a traceback)."""
    with st.sidebar:
        workspace_text()  # sets the default on the first run
        st.text_input("Workspace folder", key=WS_KEY,
                      help="A SpurAudit workspace: audit.db + artifacts. "
                           "Default: $SPURAUDIT_WORKSPACE or ./workspace.")
        try:
            ws = open_workspace()
        except NeedsSetup:
            st.caption("No workspace at this path yet.")
            return
        except SpurAuditError as exc:
            st.error(str(exc))
            return
        _selectors(ws)
        active = ws.summary()["jobs_active"]
        st.caption(f"Active jobs: {active}" if active else "No active jobs.")


def _selectors(ws) -> None:
    """The dataset and model selectboxes (a caption instead when there is nothing to select)."""
    datasets = [d.name for d in ws.list_datasets()]
    if not datasets:
        st.caption("Workspace is empty.")
        return
    if st.session_state.get(DATASET_KEY) not in datasets:
        st.session_state[DATASET_KEY] = default_dataset(ws, datasets)
    st.selectbox("Dataset", datasets, key=DATASET_KEY)
    models = models_for(ws, st.session_state[DATASET_KEY])
    if not models:
        st.session_state.pop(MODEL_KEY, None)
        st.caption("No model for this dataset yet.")
        return
    if st.session_state.get(MODEL_KEY) not in models:
        st.session_state[MODEL_KEY] = models[0]
    st.selectbox("Model", models, key=MODEL_KEY)


def keep_shared_state() -> None:
    """Re-assign the shared widget keys (`SHARED_WIDGET_KEYS`) so Streamlit keeps their values while a
    page that does not draw their widget is shown (it forgets the state of widgets not drawn in a run)."""
    for key in SHARED_WIDGET_KEYS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def context() -> PageContext:
    """The current page context (raises `NeedsSetup` without a workspace)."""
    ws = open_workspace()
    datasets = [d.name for d in ws.list_datasets()]
    dataset = st.session_state.get(DATASET_KEY)
    if dataset not in datasets:
        dataset = default_dataset(ws, datasets)
    models = models_for(ws, dataset)
    model = st.session_state.get(MODEL_KEY)
    if model not in models:
        model = models[0] if models else None
    return PageContext(ws=ws, dataset=dataset, model=model)


@dataclass
class FeaturesPage:
    """The context of a page about an audited model's features: workspace, dataset, model and the
    splits with extracted features (all present)."""

    ws: object                  # core.workspace.Workspace
    dataset: str
    model: str
    splits: list[str]

    @property
    def class_names(self) -> list[str]:
        return resources.manifest(self.ws, self.dataset).class_names


def features_page(title: str) -> FeaturesPage:
    """Title the page and return its `FeaturesPage` (`NeedsSetup` naming the missing step's command)."""
    st.title(title)
    ctx = context()
    dataset, model, splits = ctx.require_features()
    return FeaturesPage(ws=ctx.ws, dataset=dataset, model=model, splits=splits)
