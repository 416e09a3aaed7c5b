"""Automation page (AppTest), per-class concept overrides: the table lists only the classes added
from the class picker (pre-filled with the shared spurious list and the class's own name), the
overrides reach the clip-rank job's params, and a bad row (unknown class, empty cell) is a message,
not a traceback or a job. AppTest cannot type into a data_editor, so the edited rows are planted in
the page's session state (`_override_rows_key`) as the editor would leave them."""
from __future__ import annotations

import pytest

from core import jobs
from tests.audit.audited_workspace import build_audited_workspace
from tests.dashboard.app_helpers import open_app, texts


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    ws, _ = build_audited_workspace(tmp_path_factory.mktemp("ws"))
    return ws


def _ready(at):
    at.checkbox(key="au_rank_clip_random").check().run()
    at.selectbox(key="au_device").set_value("cpu").run()
    return at


def test_an_added_override_reaches_the_job_params(audited):
    ws = audited
    at = _ready(open_app(str(ws.root), "automation"))
    picker = at.selectbox(key="au_override_class::tex")
    assert picker.value is None and len(picker.options) == 10          # every class, none overridden yet
    picker.set_value("3").run()
    at.button(key="au_override_add").click().run()
    assert not at.exception, [e.value for e in at.exception]
    rows = at.session_state["au_overrides::tex"]
    assert [r["class"] for r in rows] == ["3"] and rows[0]["core"] == "a 3" and "water" in rows[0]["spurious"]
    assert "3" not in at.selectbox(key="au_override_class::tex").options     # picked classes leave the picker
    at.button(key="au_rank_go").click().run()
    assert not at.error, texts(at.error)
    (job,) = [j for j in ws.list_jobs() if j.kind == "clip-rank"]
    assert job.params["per_class"] == {"3": {"spurious": rows[0]["spurious"].split(", "), "core": ["a 3"]}}
    assert job.params["core_concepts"] is None
    jobs.cancel(ws, job.id)               # the page's job would build ViT-B-32; its params are what is checked


@pytest.mark.parametrize("row, message", [
    ({"class": "zebra", "spurious": "water", "core": "a zebra"}, "unknown class 'zebra'"),
    ({"class": "3", "spurious": " , ", "core": "a 3"}, "class '3': the spurious concept list is empty"),
    ({"class": "", "spurious": "water", "core": ""}, "override row 1: type the class"),
])
def test_a_bad_override_row_is_a_message(audited, row, message):
    ws = audited
    before = len(ws.list_jobs())
    at = open_app(str(ws.root), "automation")
    at.session_state["au_overrides::tex"] = [row]
    at.run()
    _ready(at).button(key="au_rank_go").click().run()
    assert message in texts(at.error) and not at.exception
    assert len(ws.list_jobs()) == before
