"""Features page, *Import labels* form (AppTest): its error states (missing file, wrong CSV columns, wrong
mask layout) write nothing and show one message; a labels CSV is previewed then imported; a Salient
ImageNet masks folder (class folders named after the dataset's classes, masks named after its images) is
previewed, imported by the label-import job, and its masks are then outlined under the feature."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.dashboard.app_helpers import open_app, texts
from tests.dashboard.populate import DATASET, MODEL


def _preview(at, **values):
    if "li_format" in values:                     # the format decides which fields are drawn
        at.radio(key="li_format").set_value(values.pop("li_format")).run()
    for key, value in values.items():
        (at.selectbox if key == "li_split" else at.text_input)(key=key).set_value(value)
    at.run()
    at.button(key="li_preview_btn").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_import_form_errors_write_nothing(populated, tmp_path):
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    n0, jobs0 = len(ws.labels(DATASET, MODEL)), len(ws.list_jobs())
    at = _preview(open_app(populated["root"], "features"), li_format="csv", li_file=str(tmp_path / "nope.csv"))
    assert "does not exist" in texts(at.error)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    _preview(at, li_file=str(wrong))
    assert "lacks columns" in texts(at.error) and "li_import_btn" not in [b.key for b in at.button]
    empty = tmp_path / "masks"
    (empty / "somefolder").mkdir(parents=True)
    _preview(at, li_format="salient-imagenet", li_file="", li_masks=str(empty))
    assert "holds feature_<idx>" in texts(at.error)
    _preview(at, li_masks=str(empty / "somefolder"))
    assert "no class folders" in texts(at.error)
    assert len(ws.labels(DATASET, MODEL)) == n0 and len(ws.list_jobs()) == jobs0


def test_a_labels_csv_is_previewed_then_imported(populated, tmp_path):
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    n0 = len(ws.labels(DATASET, MODEL))
    f = populated["top_features"][0]
    csv = tmp_path / "labels.csv"
    csv.write_text(f"class_index,feature,answer,annotator\n0,{f[0]},spurious_background,bob\n0,{f[1]},core,bob\n")
    at = _preview(open_app(populated["root"], "features"), li_format="csv", li_file=str(csv))
    assert not at.error and "2 answers from 1 annotators on 2 (class, feature) pairs" in texts(at.text)
    assert len(ws.labels(DATASET, MODEL)) == n0                            # the preview wrote nothing
    at.button(key="li_import_btn").click().run()
    assert not at.exception and "Imported 2 answers." in texts(at.success)
    labels = ws.labels(DATASET, MODEL)
    assert len(labels) == n0 + 2 and set(labels.iloc[-2:].annotator) == {"bob"}
    ws.delete_labels(labels.iloc[-2:].id.astype(int).tolist())           # keep the shared workspace as built


def test_salient_masks_are_imported_by_a_job_and_outlined(populated, tmp_path):
    from core import jobs
    from core.audit.salient_masks import has_salient_masks, salient_index_path
    from core.data import load_manifest
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    man = load_manifest(ws, DATASET)
    train = man.split("train").df
    feature = int(populated["top_features"][0][0])
    folder = tmp_path / "salient" / man.class_names[0] / f"feature_{feature}"
    folder.mkdir(parents=True)
    stems = [Path(p).stem for p in train.path[train.label == 0][:3]]
    for stem in stems:
        with Image.open(man.root / train.path[train.label == 0].iloc[0]) as im:
            w, h = im.size
        a = np.zeros((h, w), np.uint8)
        a[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 255
        Image.fromarray(a).save(folder / f"{stem}.png")
    at = _preview(open_app(populated["root"], "features"), li_format="salient-imagenet", li_file="",
                  li_masks=str(tmp_path / "salient"), li_split="train")
    assert not at.error and "3 of 3 mask files match an image of the dataset" in texts(at.text)
    assert not has_salient_masks(ws, DATASET, MODEL)
    at.button(key="li_import_btn").click().run()
    assert not at.exception and "Label import job" in texts(at.success)
    job = next(j for j in ws.list_jobs() if j.kind == "label-import")
    try:
        assert jobs.wait(ws, job.id, timeout_s=180).status == "done", jobs.log_tail(ws, job.id)
        assert ws.get_job(job.id).result["masks"]["stored"] == 3
        at.run()
        labels = [e.label for e in at.expander]
        assert "Salient ImageNet masks of this feature: 3 image(s), region outlined" in labels
        assert not at.exception and not at.error
    finally:
        ws.remove_path(ws.rel(salient_index_path(ws, DATASET, MODEL).parent))   # keep the shared workspace as built
