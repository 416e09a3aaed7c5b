"""AppTest checks of every dashboard page: (a) an empty workspace and a missing folder render a friendly
message with the exact command, no exception; (b) the shared populated workspace renders real content,
and a label recorded through the features page lands in the workspace database."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard.populate import DATASET, MODEL, NO_SPURIOUS_CLASS, SECOND_MODEL

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
PAGES = ["home", "features", "rankings", "gaps", "crops", "mitigate", "report"]
TIMEOUT = 120


def open_app(workspace: str, page: str = "home") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["sa_workspace"] = workspace
    at.run()
    if page != "home":
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


@pytest.mark.parametrize("page", PAGES)
def test_empty_workspace_is_friendly(page, empty_workspace):
    at = open_app(empty_workspace, page)
    assert not at.error, texts(at.error)
    assert "python -m core demo --workspace" in texts(at.code)
    if page == "home":
        assert "This workspace is empty" in texts(at.info)
        assert [m.value for m in at.metric] == ["0"] * 6
    else:
        assert "no dataset yet" in texts(at.info)


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


def test_home_summarises_the_workspace(populated):
    at = open_app(populated["root"])
    from core.workspace import Workspace

    summary = Workspace(populated["root"]).summary()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Datasets"] == "1" and metrics["Models"] == "2"
    assert metrics["Feature sets"] == str(summary["feature_sets"]) == "4"
    assert metrics["Labels"] == str(summary["labels"])
    assert "What to do next" in texts(at.subheader)
    assert at.selectbox(key="sa_dataset").value == DATASET
    assert at.selectbox(key="sa_model").value == MODEL


def test_features_page_shows_top_features_and_records_a_label(populated):
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    at = open_app(populated["root"], "features")
    top0 = populated["top_features"][0]
    headers = [s.value for s in at.subheader]
    assert headers == [f"#{r + 1} · feature {f}" for r, f in enumerate(top0)]
    md = texts(at.markdown)
    assert "Verdict: spurious (spurious_background)" in md and "Verdict: core" in md
    assert "Machine suggestions" in texts(at.caption)                    # sam_iou suggestion shown apart
    assert len(at.get("image")) >= 1                                       # top-activating thumbnails

    # saving without a name is refused, nothing written
    n0 = len(ws.labels(DATASET, MODEL))
    feature = top0[3]
    at.radio(key=f"answer_0_{feature}").set_value("spurious_object")
    at.button(key=f"save_0_{feature}").click().run()
    assert "Annotator" in texts(at.warning)
    assert len(ws.labels(DATASET, MODEL)) == n0

    at.text_input(key="sa_annotator").set_value("alice").run()
    at.radio(key=f"answer_0_{feature}").set_value("spurious_object")
    at.text_input(key=f"note_0_{feature}").set_value("a red blob")
    at.button(key=f"save_0_{feature}").click().run()
    assert not at.exception
    labels = ws.labels(DATASET, MODEL)
    assert len(labels) == n0 + 1
    row = labels.iloc[-1]
    assert (row.class_index, row.feature, row.answer, row.annotator, row.source, row.note) == \
        (0, feature, "spurious_object", "alice", "human", "a red blob")
    assert "Verdict: spurious (spurious_object)" in texts(at.markdown)   # verdict re-derived on rerun
    ws.delete_labels([int(row.id)])                                       # keep the shared workspace as built


def test_features_page_shows_activation_maps_and_attacks_from_the_cache(populated):
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    ws.remove_path("cache/overlays")                          # the report rendered some; start clean
    feature = populated["top_features"][0][0]
    at = open_app(populated["root"], "features")
    at.number_input(key="features_k").set_value(1).run()
    at.radio(key="features_mode").set_value("activation maps").run()
    assert not at.exception and not at.error
    overlays = [p for p in ws.path("cache/overlays").rglob("*.png") if f"_f{feature}_" in p.name]
    assert len(overlays) == 6                                  # class 0's top feature over its 6 top images
    assert len(at.get("image")) == 6
    at.radio(key="features_mode").set_value("feature attacks").run()
    assert not at.exception and not at.error
    attacks = [p for p in ws.path("cache/attacks").rglob("*.png") if f"_f{feature}_" in p.name]
    assert len(attacks) == 3


def test_rankings_page_paginates_and_says_when_a_class_is_unranked(populated):
    at = open_app(populated["root"], "rankings")
    at.selectbox(key="rank_split").set_value("train").run()
    pager = texts(at.markdown)
    assert "page 1 of 2 · 40 images" in pager                              # 400 train images, 10 classes
    assert len(at.get("image")) >= 2
    at.button(key="rank_low_train_0__next").click().run()
    assert "page 2 of 2" in texts(at.markdown)
    at.selectbox(key="rank_class").set_value(NO_SPURIOUS_CLASS).run()
    assert "has no spurious features" in texts(at.info)


def test_large_splits_use_the_saved_audit_instead_of_live_passes(populated, monkeypatch):
    """Above LIVE_MAX_ROWS rows the pages read the rankings/discovery the audit job saved (a pass over
    an ImageNet-sized store is long work) and offer to re-rank as a job."""
    from core.audit.pipeline import load_rankings
    from core.workspace import Workspace
    from dashboard import resources

    monkeypatch.setattr(resources, "LIVE_MAX_ROWS", 10)
    at = open_app(populated["root"], "rankings")
    assert "shows the ranking the audit saved" in texts(at.caption)
    assert at.button(key="rerank_train").label == "Re-rank as a job"
    saved = load_rankings(Workspace(populated["root"]), DATASET, MODEL, "train")
    assert "page 1 of 2 · 40 images" in texts(at.markdown) and len(saved.ranking(0)) == 40
    at = open_app(populated["root"], "gaps")
    assert len(at.get("plotly_chart")) == 1 and not at.error
    at = open_app(populated["root"], "features")
    assert [s.value for s in at.subheader][0] == f"#1 · feature {populated['top_features'][0][0]}"
    at.number_input(key="features_k").set_value(7).run()              # more than the audit saved (5)
    assert "python -m core discover" in texts(at.code) and "--k 7" in texts(at.code)


def test_gaps_page_draws_the_chart_and_the_table(populated):
    at = open_app(populated["root"], "gaps")
    assert at.selectbox(key="gaps_split").value == "test"
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    spec = json.loads(charts[0].proto.spec)
    bars = spec["data"][0]
    assert bars["type"] == "bar" and len(bars["x"]) == populated["num_classes"] - 1    # class 9 unranked
    assert "error_y" in bars
    assert {m.label for m in at.metric} == {"Pooled gap", "Interval", "Ranked classes"}
    assert "Not ranked (no spurious feature): 9" in texts(at.caption)
    table = at.dataframe[0].value
    assert {"class_index", "gap", "ci_low", "ci_high", "negative"} <= set(table.columns)
    # the second model, evaluated on the same ranking
    assert at.multiselect(key="gaps_models").value == [SECOND_MODEL]
    models = at.dataframe[1].value
    assert list(models["model"]) == [MODEL, SECOND_MODEL]
    assert models["pooled gap"].notna().all() and "gap 0" in models.columns


def test_crops_page_shows_saved_results(populated):
    at = open_app(populated["root"], "crops")
    labels = {m.label for m in at.metric}
    assert {"Accuracy before", "Accuracy after crop", "Images"} <= labels
    assert "Feature sensitivity" in texts(at.subheader)
    assert len(at.get("plotly_chart")) >= 1


def test_mitigate_page_compares_runs_and_launches_a_job(populated):
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    at = open_app(populated["root"], "mitigate")
    assert at.multiselect(key="mit_methods").value == ["head-tuning", "error-tuning"]
    assert "cpu" in at.selectbox(key="mit_device").options
    # the finished comparison from the fixture: table (vanilla + head-tuning) and the engine's figure
    assert "Finished runs" in texts(at.subheader)
    table = at.dataframe[0].value
    assert list(table["method"]) == ["vanilla", "head-tuning"]
    assert {"accuracy", "unbiased_accuracy", "pooled gap"} <= set(table.columns)
    compare_run, single_run = populated["runs"]
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


def test_report_page_offers_download_and_launches_the_report_job(populated):
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    at = open_app(populated["root"], "report")
    downloads = at.get("download_button")
    assert len(downloads) == 1 and "KiB" in texts(at.caption)
    assert Path(populated["report"]).name in texts(at.caption)

    n_jobs = len(ws.list_jobs())
    at.button(key="report_go").click().run()
    assert not at.exception
    jobs_now = ws.list_jobs()
    assert len(jobs_now) == n_jobs + 1
    job = jobs_now[0]
    assert (job.kind, job.params["step"], job.params["dataset"], job.params["split"]) == \
        ("audit-step", "report", DATASET, "test")
    assert f"Job #{job.id}" in texts(at.markdown)                          # the monitor shows it
    if ws.get_job(job.id).active:                                          # cancel through the UI
        at.button(key=f"report_jobs__cancel_{job.id}").click().run()
        assert not at.exception
        assert ws.get_job(job.id).status == "cancelled"


def test_errors_render_as_messages_not_tracebacks():
    def app():
        import streamlit as st

        from core.errors import SpurAuditError
        from dashboard.components.guard import run_page

        def user_error():
            raise SpurAuditError("unknown dataset 'x'; valid choices: cmnist")

        def bug():
            raise KeyError("boom")

        run_page(user_error)
        run_page(bug)
        st.write("still rendering")

    at = AppTest.from_function(app, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.error[0].value == "unknown dataset 'x'; valid choices: cmnist"
    assert "KeyError" in at.error[1].value
    assert "Traceback" in texts(at.code) and "KeyError: 'boom'" in texts(at.code)    # in the expander
    assert len(at.expander) == 1
    assert "still rendering" in texts(at.markdown)


def test_job_monitor_shows_a_failed_job_with_its_log(empty_workspace):
    from core import jobs
    from core.workspace import Workspace

    ws = Workspace(empty_workspace)
    job_id = jobs.submit(ws, "sleep", {"seconds": 0.2, "steps": 2, "fail": True}, device="cpu")
    assert jobs.wait(ws, job_id, timeout_s=TIMEOUT).status == "failed"

    def app(root, job_id):
        from core.workspace import Workspace
        from dashboard.components.job_monitor import job_monitor

        job_monitor(Workspace(root), [job_id], key="t")

    at = AppTest.from_function(app, args=(empty_workspace, job_id), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert f"Job #{job_id} failed" in at.error[0].value and "sleep job asked to fail" in at.error[0].value
    assert at.expander[0].label == "Log tail" and "RuntimeError" in texts(at.code)
    assert not at.button                                                    # nothing to cancel
