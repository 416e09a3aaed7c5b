"""`dashboard.components.state` (AppTest and plain): the missing-setup messages with their commands,
the sidebar inside the page guard, `md_escape`."""
from __future__ import annotations

import pytest

from dashboard.components.state import md_escape
from tests.dashboard.app_helpers import open_app, texts
from tests.dashboard.populate import DATASET, MODEL


def test_missing_folder_names_the_command(tmp_path):
    at = open_app(str(tmp_path / "nowhere"), "gaps")
    assert "does not exist" in texts(at.info)
    assert f"python -m core demo --workspace {tmp_path / 'nowhere'}" in texts(at.code)
    assert not (tmp_path / "nowhere").exists()          # the dashboard never creates a folder by itself


def test_each_missing_step_names_its_command(populated, tmp_path):
    """A workspace with a dataset but no model, then a model but no features: every data page says
    which step is missing and the exact command, and nothing raises."""
    from core.workspace import Workspace

    src = Workspace(populated["root"])
    drec, mrec = src.get_dataset(DATASET), src.get_model(MODEL)
    ws = Workspace(tmp_path / "partial")
    ws.add_dataset(DATASET, manifest_rel=drec.manifest_path, root_rel=drec.root, source=drec.source,
                   params=drec.params, class_names=drec.class_names, bias_columns=drec.bias_columns)
    for page in ("features", "gaps", "mitigate"):
        at = open_app(str(ws.root), page)
        assert "No model is registered for dataset" in texts(at.info), page
        assert "python -m core model train" in texts(at.code)
    ws.add_model(MODEL, dataset=DATASET, arch=mrec.arch, checkpoint_rel=mrec.checkpoint, config=mrec.config,
                 metrics={})
    for page in ("features", "rankings", "gaps", "crops", "report"):
        at = open_app(str(ws.root), page)
        assert "No features extracted" in texts(at.info), page
        assert f"python -m core extract --workspace {ws.root} --dataset {DATASET} --model {MODEL}" in texts(at.code)
    at = open_app(str(ws.root))
    assert "Extract features" in texts(at.markdown)                      # home: the next step


def test_a_failing_sidebar_is_a_message_and_the_page_still_renders(populated, monkeypatch):
    from dashboard.components import state

    def broken(ws):
        raise RuntimeError("selectors broke")

    monkeypatch.setattr(state, "_selectors", broken)
    at = open_app(populated["root"])
    assert "RuntimeError: selectors broke" in texts(at.sidebar.error)
    assert "Feature sets" in {m.label for m in at.metric}                  # the page body rendered anyway


def test_the_sidebar_counts_active_jobs(empty_workspace):
    from core import jobs
    from core.workspace import Workspace

    at = open_app(empty_workspace)
    assert "No active jobs." in texts(at.sidebar.caption)
    ws = Workspace(empty_workspace)
    job_id = jobs.submit(ws, "sleep", {"seconds": 60, "steps": 60}, device="cpu")
    try:
        at = open_app(empty_workspace)
        assert "Active jobs: 1" in texts(at.sidebar.caption)
    finally:
        jobs.cancel(ws, job_id, grace_s=1.0)


@pytest.mark.parametrize("text, shown", [
    ("cat_dog", r"cat\_dog"), ("**bold**", r"\*\*bold\*\*"), ("[x](http://e)", "\\[x\\]\\(http\\://\u2060e\\)"),
    ("www.e.org", "www\u2060\\.e\\.org"), ("a@b.c", "a@\u2060b\\.c"),
    ("<b>hi</b>", r"\<b\>hi\</b\>"), (":red[x]", r"\:red\[x\]"), ("$1$", r"\$1\$"), ("a\nb", "a b"),
    ("plain 9", "plain 9"), (3, "3"),
])
def test_md_escape(text, shown):
    assert md_escape(text) == shown
