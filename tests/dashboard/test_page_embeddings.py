"""Embeddings page (AppTest): the projection, its colourings, the subsample note, and the before/after
view of a mitigation run once the embedding job ran."""
from __future__ import annotations

import json

import numpy as np

from tests.dashboard.app_helpers import assert_empty_workspace_is_friendly, open_app, texts


def test_empty_workspace_is_friendly(empty_workspace):
    assert_empty_workspace_is_friendly("embeddings", empty_workspace)


def _points(at, i=0):
    spec = json.loads(at.get("plotly_chart")[i].proto.spec)
    return sum(len(t["x"]) for t in spec["data"]), spec


def test_projection_colours_and_subsample(populated):
    at = open_app(populated["root"], "embeddings")
    assert not at.exception, [e.value for e in at.exception]
    n, spec = _points(at)
    assert n == 200 and "All 200 images of the split." in texts(at.caption)        # test split
    assert len(spec["data"]) == 10                                                  # one trace per class
    rows = [c[0] for t in spec["data"] for c in t["customdata"]]
    assert sorted(rows) == list(range(200))
    at.number_input(key="emb_max").set_value(200).run()
    at.selectbox(key="emb_split").set_value("train").run()
    n, _ = _points(at)
    assert n <= 200 and "class-stratified sample of" in texts(at.caption) and "of 400 images" in texts(at.caption)
    for colour in ("correct", "aligned", "spuriosity", "bias"):
        at.selectbox(key="emb_colour").set_value(colour).run()
        assert not at.exception, [e.value for e in at.exception]
    _, spec = _points(at)
    assert spec["layout"]["dragmode"] == "lasso"
    assert "Draw a box or lasso" in texts(at.caption)


def test_before_after_a_run(populated):
    from core.mitigate.embeddings import run_embedding, runs_with_models
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    runs = runs_with_models(ws, populated["dataset"], populated["model"])
    assert runs
    at = open_app(populated["root"], "embeddings")
    assert "is not computed yet" in texts(at.caption)
    out = run_embedding(ws, runs[0].id, split="test", max_points=100, device="cpu")
    assert out["points"] <= 100 and out["n_total"] == 200
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == 3
    n_before, _ = _points(at, 1)
    n_after, spec_after = _points(at, 2)
    assert n_before == n_after == out["points"]
    assert spec_after["layout"]["title"]["text"].startswith("after: run #")
    assert np.isfinite([x for t in spec_after["data"] for x in t["x"]]).all()
