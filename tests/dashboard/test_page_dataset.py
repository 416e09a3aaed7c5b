"""Dataset page (AppTest): class counts, the (class × bias) heatmap with the realised conflicting
fraction, the sample grid (conflicting images marked, masks outlined) and the rows skipped at import."""
from __future__ import annotations

import base64
import json

import numpy as np
from PIL import Image

from core.data import add_dataset_from, build_dataset, load_manifest
from core.data.preview import sample_rows, sample_tile
from core.workspace import Workspace
from tests.dashboard.app_helpers import assert_empty_workspace_is_friendly, open_app, texts


def test_empty_workspace_is_friendly(empty_workspace):
    assert_empty_workspace_is_friendly("dataset", empty_workspace)


def test_dataset_page_shows_groups_samples_and_skipped_rows(tmp_path):
    ws = Workspace(tmp_path / "ws")
    build_dataset(ws, "digits-on-textures", "tex", n_train=60, n_val=20, n_test=20, size=32, digit_size=(16, 24),
                  rho=0.9)
    at = open_app(str(ws.root), "dataset")
    assert not at.error and not at.exception
    assert "Realised bias-conflicting fraction" in texts(at.markdown)
    counts = at.dataframe[0].value
    assert list(counts.columns) == ["train", "val", "test"] and int(counts["train"].sum()) == 60
    heat = json.loads(at.get("plotly_chart")[0].proto.spec)
    zb = heat["data"][0]["z"]                                        # plotly's typed-array encoding
    z = np.frombuffer(base64.b64decode(zb["bdata"]), dtype=np.dtype(zb["dtype"])).reshape(10, 10)
    assert heat["data"][0]["type"] == "heatmap" and z.sum() == 60
    assert np.trace(z) > z.sum() / 2                     # ρ = 0.9: most images sit in their class's group
    assert len(at.get("image")) == 6                         # the sample grid: the 6 train images of class 0
    assert "None: every row of the source was imported" in texts(at.caption)
    # masks are outlined in yellow, conflicting images framed in red
    man = load_manifest(ws, "tex")
    rows = sample_rows(man, 0, n=8)
    conflicting = [r for r in rows if not bool(man.df["aligned"].iat[r])]
    assert conflicting, "the sample puts conflicting images first"
    tile = np.asarray(sample_tile(man, conflicting[0], size=64))
    assert (tile[0, :] == (220, 30, 30)).all()                          # the red frame
    assert ((tile == (255, 221, 0)).all(axis=-1)).sum() > 10            # the mask's yellow outline

    # an imported dataset with a skipped row
    root = tmp_path / "img"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 60 * i, np.uint8)).save(root / c / f"{i}.png")
    (root / "a" / "broken.png").write_bytes(b"not a png")
    add_dataset_from(ws, "folder", "imagefolder", root, skip_bad=True)
    at.run()
    at.selectbox(key="sa_dataset").set_value("folder").run()
    assert "1 row(s) were left out" in texts(at.caption)
    skipped = at.dataframe[-2].value if "note" in at.dataframe[-1].value.columns else at.dataframe[-1].value
    assert list(skipped["path"]) == ["a/broken.png"] and "unreadable image" in skipped["reason"].iat[0]
    assert "no bias labels" in texts(at.caption)
