"""Automation page (AppTest): concept texts pre-filled from the vocabulary and the class names, the
messages for missing weights, and the jobs' plumbing with a random-init tiny CLIP (this checks plumbing,
not CLIP's semantics: the scores of random weights mean nothing)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core import jobs
from core.concepts.artifacts import list_concept_rankings
from core.concepts.jobs import clip_labels_job, clip_rank_job
from tests.audit.audited_workspace import build_audited_workspace
from tests.concepts.tiny_clip import register_tiny_clip
from tests.dashboard.app_helpers import assert_empty_workspace_is_friendly, open_app, texts


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    ws, _ = build_audited_workspace(tmp_path_factory.mktemp("ws"))
    return ws


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clipcfg")
    register_tiny_clip(folder)
    return "spuraudit-tiny-clip"


def test_empty_workspace_is_friendly(empty_workspace):
    assert_empty_workspace_is_friendly("automation", empty_workspace)


def _errors(at) -> str:
    return texts(at.error)


def test_prefilled_concepts_and_weight_messages(audited, tmp_path):
    at = open_app(str(audited.root), "automation")
    assert "water" in at.text_area(key="au_spurious").value
    assert at.text_area(key="au_core").value == ""                  # blank: each class's own name (a 0, a 1, ...)
    assert "a photo of {}." in at.text_area(key="au_templates").value
    at.text_input(key="au_rank_clip_weights").input(str(tmp_path / "clip.pt")).run()
    at.button(key="au_rank_go").click().run()
    assert "CLIP weights: " in _errors(at) and "clip.pt does not exist" in _errors(at)
    at.text_input(key="au_rank_clip_weights").input("").run()
    at.button(key="au_rank_go").click().run()
    assert "type a weights file" in _errors(at)
    at.text_area(key="au_templates").input("a photo").run()
    at.checkbox(key="au_rank_clip_random").check().run()
    at.button(key="au_rank_go").click().run()
    assert "must hold exactly one {}" in _errors(at)
    at.text_input(key="au_sam_ckpt").input(str(tmp_path / "sam_vit_b.pth")).run()
    at.button(key="au_sam_go").click().run()
    assert "SAM checkpoint: " in _errors(at) and "sam_vit_b.pth does not exist" in _errors(at)
    assert not audited.list_jobs() and not at.exception


def test_clip_jobs_plumbing_with_a_tiny_random_clip(audited, tiny_clip):
    ws = audited
    at = open_app(str(ws.root), "automation")
    at.checkbox(key="au_rank_clip_random").check().run()
    at.selectbox(key="au_device").set_value("cpu").run()
    at.button(key="au_rank_go").click().run()
    job = ws.list_jobs()[0]
    assert job.kind == "clip-rank" and job.params["clip_weights"] is None
    assert "water" in job.params["concepts"] and job.params["core_concepts"] is None   # each class's own name
    jobs.cancel(ws, job.id)          # the page's job builds ViT-B-32; the same params run below on a tiny CLIP
    params = {**job.params, "clip_model": tiny_clip, "device": "cpu"}
    torch.manual_seed(0)
    out = clip_rank_job(ws, params, lambda f, m="": None)
    assert out["n"] == 60 and out["name"].startswith("water")
    assert [r.name for r in list_concept_rankings(ws, "tex")] == [out["name"]]
    n = clip_labels_job(ws, {"dataset": "tex", "model": "cnn", "concepts": ["water", "grass"],
                             "clip_model": tiny_clip, "clip_weights": None, "top_n": 2, "device": "cpu"},
                        lambda f, m="": None)
    assert n["labels_written"] == 30                    # 10 classes x k = 3 discovered features
    at.run()
    saved = at.dataframe[0].value
    assert "by concept: water" in " ".join(map(str, saved["shown as"]))
    assert np.isfinite(float(saved["pooled gap val"].iat[0]))     # measured with the audit's gap code
    assert "30 machine suggestion(s) so far" in texts(at.caption)
    labels = ws.labels("tex", "cnn")
    assert set(labels.source) >= {"clip"} and labels[labels.source == "clip"].score.notna().all()
