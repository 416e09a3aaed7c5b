"""Mitigate page (AppTest): the finished comparison and single-method runs, launching and cancelling a
"compare" job with the form's methods and parameters."""
from __future__ import annotations

import json

from tests.dashboard.app_helpers import assert_empty_workspace_is_friendly, open_app, texts


def test_empty_workspace_is_friendly(empty_workspace):
    assert_empty_workspace_is_friendly("mitigate", empty_workspace)


def test_mitigate_page_compares_runs_and_launches_a_job(populated):
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    at = open_app(populated["root"], "mitigate")
    assert at.multiselect(key="mit_methods").value == ["head-tuning", "error-tuning"]
    assert "cpu" in at.selectbox(key="mit_device").options
    # the newest finished comparison opens first; other tests of this worker may have launched
    # comparisons on the shared workspace, so the fixture's one is chosen explicitly
    compare_run, single_run = populated["runs"]
    newest = max(r.id for r in ws.list_runs(dataset=populated["dataset"]) if r.method == "compare" and r.status == "done")
    assert at.selectbox(key="mit_cmp_run").value == newest
    if newest != compare_run:
        at.selectbox(key="mit_cmp_run").set_value(compare_run).run()
    # the finished comparison from the fixture: table (vanilla + head-tuning) and the engine's figure
    assert "Finished runs" in texts(at.subheader)
    table = at.dataframe[0].value
    assert list(table["method"]) == ["vanilla", "head-tuning"]
    assert {"accuracy", "unbiased_accuracy", "pooled gap"} <= set(table.columns)
    assert at.selectbox(key="mit_cmp_run").value == compare_run
    # the single-method run: metrics, pooled gaps before/after, and the per-class before/after chart
    assert "Single-method runs" in texts(at.subheader)
    single = at.dataframe[1].value
    assert list(single["run"]) == [single_run] and list(single["method"]) == ["head-tuning"]
    assert single["gap before"].notna().all() and single["gap after"].notna().all()
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(specs) == 3                     # comparison figure, single-run bars, gaps before/after
    assert [t["name"] for t in specs[2]["data"]] == ["before", f"head-tuning #{single_run}"]

    # launching: one "compare" job with the chosen methods and parameters, then cancel it from the UI
    n_jobs = len(ws.list_jobs())
    at.multiselect(key="mit_methods").set_value(["head-tuning"])
    at.selectbox(key="mit_device").set_value("cpu")
    at.number_input(key="mit_head_epochs").set_value(1)
    at.button(key="mit_go").click().run()
    assert not at.exception
    jobs_now = ws.list_jobs()
    assert len(jobs_now) == n_jobs + 1
    job = jobs_now[0]
    assert job.kind == "compare"
    assert job.params["methods"] == ["head-tuning"] and job.params["device"] == "cpu"
    assert job.params["configs"] == {"head-tuning": {"epochs": 1, "k_per_class": 100}}
    assert f"Job #{job.id}" in texts(at.markdown)
    if ws.get_job(job.id).active:
        at.button(key=f"mit_jobs__cancel_{job.id}").click().run()
        assert ws.get_job(job.id).status == "cancelled"

    # the FFW variant chosen in the form becomes the FFW config of the job
    at.multiselect(key="mit_methods").set_value(["ffw"])
    at.selectbox(key="mit_ffw_variant").set_value("bias-ranked neurons + head re-fit")
    at.number_input(key="mit_ffw_epochs").set_value(2)
    at.slider(key="mit_ffw_budget").set_value(0.3)
    at.button(key="mit_go").click().run()
    assert not at.exception
    job = ws.list_jobs()[0]
    assert job.params["configs"] == {"ffw": {"max_epochs": 2, "structured": True, "structured_rule": "bias-rank",
                                             "refit_head": True, "bias_budget": 0.3}}
    if ws.get_job(job.id).active:
        at.button(key=f"mit_jobs__cancel_{job.id}").click().run()


def test_failed_runs_can_be_relaunched_with_their_settings_or_cleared(populated):
    """A run whose process died (or that failed) is listed with its reason; Re-launch starts a new job of
    the same kind with the run's own settings; Clear removes the run's record and files."""
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    dataset, model = ws.list_runs()[0].dataset, ws.list_runs()[0].model
    dead = ws.add_run(method="compare", dataset=dataset, model=model,
                      params={"methods": ["head-tuning"], "seeds": [0, 1], "device": "cpu",
                              "configs": {"head-tuning": {"epochs": 2}}, "sweep": None})
    ws.update_run(dead, status="failed", error="marked failed when runs were listed: owner process 4242 is gone")
    broken = ws.add_run(method="head-tuning", dataset=dataset, model=model,
                        params={"config": {"epochs": 3}, "seed": 1, "device": "cpu"})
    ws.update_run(broken, status="failed", error="ValueError: planted **failure** ![x](http://example.invalid/p.png)")
    ws.write_json(f"{ws.run_dir(broken)}/partial.json", {"epoch": 0})
    try:
        at = open_app(populated["root"], "mitigate")
        assert "Failed or cancelled runs" in texts(at.subheader)
        shown = [t.value for t in at.text]
        assert "marked failed when runs were listed: owner process 4242 is gone" in shown
        assert any("![x](http://example.invalid/p.png)" in t for t in shown)   # as text, not Markdown

        n_jobs = len(ws.list_jobs())
        at.button(key=f"mit_relaunch_{dead}").click().run()
        assert not at.exception
        job = ws.list_jobs()[0]
        assert len(ws.list_jobs()) == n_jobs + 1 and job.kind == "compare" and job.device == "cpu"
        assert job.params["methods"] == ["head-tuning"] and job.params["seeds"] == [0, 1]
        assert job.params["configs"] == {"head-tuning": {"epochs": 2}}
        if ws.get_job(job.id).active:
            at.button(key=f"mit_jobs__cancel_{job.id}").click().run()

        at.button(key=f"mit_clear_{broken}").click().run()
        assert not at.exception
        assert broken not in [r.id for r in ws.list_runs()]
        assert not ws.path(ws.run_dir(broken)).exists()
        assert dead in [r.id for r in ws.list_runs()]                    # only the run cleared is gone
    finally:
        for run_id in (dead, broken):
            if run_id in [r.id for r in ws.list_runs()]:
                ws.delete_run(run_id)
