"""AppTest of the "Rare patterns" page: an empty workspace, a finished sweep and canary audit (curve,
tables, regularisation, membership, deletion, verdict, preview), form errors as messages, and a launch."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.rare.fixtures import populate_rare_workspace

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def rare_ws(tmp_path_factory) -> dict:
    return populate_rare_workspace(tmp_path_factory.mktemp("rare") / "ws")


def open_rare(workspace: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["sa_workspace"] = workspace
    at.run(timeout=60)
    at.switch_page("app_pages/rare.py").run(timeout=60)
    assert not at.exception, [e.value for e in at.exception]
    return at


def frame_with(at: AppTest, *columns: str):
    """The first dataframe on the page holding all ``columns``."""
    for df in at.dataframe:
        if set(columns) <= set(df.value.columns):
            return df.value
    raise AssertionError(f"no dataframe with columns {columns}")


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_empty_workspace_explains_what_to_do(empty_workspace):
    at = open_rare(empty_workspace)
    assert not at.error, texts(at.error)
    assert "No rare-pattern run in this workspace yet" in texts(at.info)
    assert "dataset build colored-mnist" in texts(at.code)            # the canary tab needs a dataset
    assert at.button(key="rare_sw_go") is not None


def test_finished_runs_are_listed_drawn_and_reloadable(rare_ws):
    at = open_rare(rare_ws["root"])
    assert not at.error, texts(at.error)
    runs = frame_with(at, "id", "method", "cells_done")
    assert set(runs["id"]) == {rare_ws["sweep"], rare_ws["canary"]}
    assert at.selectbox(key="rare_selected_run").value == rare_ws["canary"]      # newest first
    # the canary audit: verdict metrics and its curve
    assert [m.label for m in at.metric][:1] == ["Smallest learned n"]
    # the sweep: curve per pattern with error bars and the n = 0 band, tables, regularisers, membership, deletion
    at.selectbox(key="rare_selected_run").set_value(rare_ws["sweep"]).run(timeout=60)
    assert not at.exception, [e.value for e in at.exception]
    specs = {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    curve = next(s for s in specs.values() if "Spurious score vs n" in s["layout"]["title"]["text"])
    assert {t["name"] for t in curve["data"]} == {"s3", "r3"}
    assert all(t["error_y"]["visible"] for t in curve["data"])
    assert any(shape.get("fillcolor") == "gray" for shape in curve["layout"]["shapes"])      # the n = 0 band
    assert any("Regularisation" in s["layout"]["title"]["text"] for s in specs.values())
    assert any("Membership" in s["layout"]["title"]["text"] for s in specs.values())
    cells = frame_with(at, "pattern", "n", "score_mean", "p_value", "l2_norm")
    assert set(cells.pattern) == {"s3", "r3"} and set(cells.n) == {0, 5} and "p_value" in cells.columns
    assert len(frame_with(at, "score_before", "score_after_retraining", "still_learned_after_influence")) == 2
    assert at.selectbox(key=f"rare_reg_{rare_ws['sweep']}").options == ["none", "wd=0.01"]
    at.selectbox(key=f"rare_reg_{rare_ws['sweep']}").set_value("wd=0.01").run(timeout=60)
    assert not at.exception
    assert any(e.value.startswith("Run #") for e in at.text)
    at.button(key="rare_reload").click().run(timeout=60)
    assert not at.exception


def test_form_errors_are_messages_and_a_valid_form_launches_a_job(rare_ws):
    from core.workspace import Workspace

    ws = Workspace(rare_ws["root"])
    at = open_rare(rare_ws["root"])
    n_jobs = len(ws.list_jobs())
    at.selectbox(key="rare_sw_data").set_value("digits")
    at.text_input(key="rare_sw_counts").set_value("0,5000")
    at.button(key="rare_sw_go").click().run(timeout=60)
    assert not at.exception and "larger than class 0" in texts(at.error)
    at.text_input(key="rare_sw_counts").set_value("0,3")
    at.text_input(key="rare_sw_regs").set_value("dropout=0.5")
    at.button(key="rare_sw_go").click().run(timeout=60)
    assert "bad regulariser" in texts(at.error) and len(ws.list_jobs()) == n_jobs
    at.text_input(key="rare_sw_regs").set_value("none,wd=0.001")
    at.multiselect(key="rare_sw_patterns").set_value(["s1"])
    at.number_input(key="rare_sw_epochs").set_value(1)
    at.number_input(key="rare_sw_seeds").set_value(2)
    at.checkbox(key="rare_sw_mia").uncheck()
    at.selectbox(key="rare_sw_device").set_value("cpu")
    at.button(key="rare_sw_go").click().run(timeout=60)
    assert not at.exception and not at.error, texts(at.error)
    job = ws.list_jobs()[0]
    assert len(ws.list_jobs()) == n_jobs + 1 and job.kind == "rare-sweep"
    assert job.params["data"] == "digits" and job.params["patterns"] == ["s1"] and job.params["counts"] == "0,3"
    assert job.params["regularisers"] == "none,wd=0.001" and job.params["device"] == "cpu"
    assert f"Job #{job.id}" in texts(at.markdown)
    if ws.get_job(job.id).active:
        at.button(key=f"rare_jobs__cancel_{job.id}").click().run(timeout=60)
        assert ws.get_job(job.id).status == "cancelled"
    # the canary form with the patch pattern but no patch stored: a message, no job
    at.selectbox(key="rare_ca_pattern").set_value("patch")
    at.button(key="rare_ca_go").click().run(timeout=60)
    assert not at.exception
    assert "Pattern 'patch' needs a patch" in texts(at.error) or "needs the patch image" in texts(at.error)
