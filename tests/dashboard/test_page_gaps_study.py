"""Gaps page, the many-model study block (issue 14; AppTest): with a finished study the scatter (models,
y = x, fitted line) and the heat map are drawn with the models table; the Run study form queues a
"study" job through the job queue."""
from __future__ import annotations

import json
import shutil

from core import jobs
from core.study import run_study
from core.workspace import Workspace
from tests.dashboard.app_helpers import open_app, texts
from tests.dashboard.populate import DATASET, MODEL, SECOND_MODEL


def test_study_block_draws_scatter_heatmap_and_queues_a_study(populated, tmp_path):
    root = tmp_path / "ws"
    shutil.copytree(populated["root"], root)         # the shared workspace stays without a study
    ws = Workspace(root)
    run_study(ws, {"dataset": DATASET, "ranking_model": MODEL, "models": [SECOND_MODEL], "split": "test",
                   "n_boot": 100, "device": "cpu", "num_workers": 0})
    at = open_app(str(root), "gaps")
    charts = at.get("plotly_chart")
    assert len(charts) == 3                               # the page's gap bars, then the study's two figures
    scatter = json.loads(charts[1].proto.spec)
    assert [t["name"] for t in scatter["data"]][:2] == ["models", "y = x"]
    assert [str(v) for v in scatter["data"][0]["text"]] == [MODEL, SECOND_MODEL]
    assert json.loads(charts[2].proto.spec)["data"][0]["type"] == "heatmap"
    assert {"Models", "Mean pairwise Pearson", "Fit slope", "Common classes"} <= {m.label for m in at.metric}
    table = at.dataframe[-1].value
    assert list(table.model) == [MODEL, SECOND_MODEL] and {"acc_high", "acc_low", "gap"} <= set(table.columns)

    jobs.set_job_slots(ws, "cpu", 1)
    holder = ws.add_job("sleep", {"seconds": 0.1, "device": "cpu"}, device="cpu")
    ws.update_job(holder, pid=-1)                       # holds the CPU slot, so the study job waits
    at.selectbox(key="study_device").set_value("cpu")
    at.multiselect(key="study_models").set_value([SECOND_MODEL])
    at.button(key="study_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    queued = [j for j in ws.list_jobs(status="queued") if j.kind == "study"]
    assert len(queued) == 1 and queued[0].params["models"] == [SECOND_MODEL]
    assert "position 1 in its queue" in texts(at.info)
    for j in (queued[0].id, holder):
        jobs.cancel(ws, j)
