"""The report says how many classes each section covers and how they were chosen, and lists unranked
classes with their reason (issue 12)."""
import pandas as pd
import pytest

from core.audit.artifacts import load_gaps
from core.audit.coverage import choose_classes
from core.report import build_report_context, render_report
from tests.audit.audited_workspace import build_audited_workspace


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    return build_audited_workspace(tmp_path_factory.mktemp("ws"))


def test_sections_say_what_they_cover(audited):
    ws, _ = audited
    per = pd.DataFrame(load_gaps(ws, "tex", "cnn", "val")["per_class"]["cnn"])
    expect, how = choose_classes(per, 10, 3)
    ctx = build_report_context(ws, "tex", "cnn", split="val", max_classes=3, n_images=1)
    assert [c["index"] for c in ctx["classes"]] == expect == [r["index"] for r in ctx["classes"]]
    assert [r["name"] for r in ctx["rankings"]] == [c["name"] for c in ctx["classes"]]
    assert ctx["coverage"]["classes"] == f"Showing 3 of 10 classes: {how}."
    ranked = per[per.ranked.astype(bool)]
    assert ctx["coverage"]["gaps"].startswith(f"The table lists all {len(ranked)} ranked classes of 10")
    gaps = [g["gap"] for g in ctx["gaps"]]
    assert len(gaps) == len(ranked) and gaps == sorted(gaps, reverse=True)      # largest gap first
    html = render_report(ctx)
    assert ctx["coverage"]["classes"] in html and ctx["coverage"]["gaps"] in html
    assert ctx["unranked"]["summary"] in html


def test_choice_follows_the_gaps():
    per = pd.DataFrame({"class_index": range(10), "gap": [0.0] * 7 + [0.9, 0.0, 0.0], "ranked": [True] * 10})
    assert choose_classes(per, 10, 3)[0] == [7, 0, 1]


def test_unranked_listed_with_reason(audited, tmp_path):
    ws, _ = audited
    ctx = build_report_context(ws, "tex", "cnn", split="val", max_classes=2, n_images=1)
    ctx["unranked"] = {"summary": "2 of 10 classes are not ranked: 1 no spurious feature; 1 too few images for k.",
                       "rows": [{"class": "three", "class_index": 3, "n": 6, "why": "no spurious feature"},
                                {"class": "<b>x</b>", "class_index": 4, "n": 1, "why": "too few images for k"}]}
    html = render_report(ctx)
    assert '<details class="unranked"><summary>2 of 10 classes are not ranked' in html
    assert "too few images for k" in html and "&lt;b&gt;x&lt;/b&gt;" in html
