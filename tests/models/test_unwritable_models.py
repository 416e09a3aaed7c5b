"""Issue 15, item 9: training into a models/ folder the user cannot write fails before the training
(clear message, exit 2), not after it."""
from __future__ import annotations

import os
import shutil
import stat
import time

import pytest
from PIL import Image

from core.data import add_dataset_from
from core.workspace import Workspace
from tests.workspace._cli import NOBODY, cli, no_traceback, shared_tmp


def test_train_checks_that_the_checkpoint_can_be_written_before_training():
    with shared_tmp() as tmp:
        src = tmp / "images"
        for c in ("cat", "dog"):
            (src / c).mkdir(parents=True)
            for i in range(6):
                Image.new("RGB", (16, 16), (40 * i, 100 if c == "cat" else 0, 0)).save(src / c / f"{i}.png")
        ws = Workspace(tmp / "ws")
        add_dataset_from(ws, "pets", "imagefolder", src)
        models = ws.path("models")
        models.mkdir()
        as_nobody = os.geteuid() == 0
        if as_nobody:   # root writes anywhere: the training runs as a user who owns all but models/
            if shutil.which("setpriv") is None:
                pytest.skip("root without setpriv: no user who cannot write models/")
            for p in [tmp, *tmp.rglob("*")]:
                if p != models:
                    os.chown(p, NOBODY, NOBODY)
            os.chmod(models, 0o755)
        else:
            os.chmod(models, stat.S_IRUSR | stat.S_IXUSR)
        start = time.monotonic()
        proc = cli("model", "train", "cnn", "--dataset", "pets", "--arch", "small_cnn", "--epochs", "200",
                   workspace=ws.root, as_nobody=as_nobody)
        assert proc.returncode == 2 and no_traceback(proc), proc.stderr[-2000:]
        assert "not writable" in proc.stderr and "models" in proc.stderr
        assert "epoch" not in proc.stderr.lower()                 # refused before the first epoch
        assert not Workspace(ws.root).has_model("cnn")
        assert time.monotonic() - start < 60
