"""Issue 15, item 3: read-only commands work on a workspace the user cannot write; commands that write
say so clearly (exit 2, no traceback) and nothing in the folder changes.

As root (who can write anything) the CLI runs as uid 65534 for whom the folder is simply not writable;
as any other user the folder loses its write bits.
"""
from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from PIL import Image

from core.workspace import Workspace
from tests.workspace._cli import cli, no_traceback, read_only, shared_tmp, tree_state


def _populate(root):
    from core.data import add_dataset_from

    src = root.parent / "images"
    for c in ("cat", "dog"):
        (src / c).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (8, 8), (40 * i, 100 if c == "cat" else 0, 0)).save(src / c / f"{i}.png")
    ws = Workspace(root)
    add_dataset_from(ws, "pets", "imagefolder", src)
    ws.save_torch("models/m/model.pt", {"format": "x", "state_dict": {}})
    ws.add_model("m", dataset="pets", arch="small_cnn", checkpoint_rel="models/m/model.pt")
    ws.add_labels([dict(dataset="pets", model="m", class_index=0, feature=i, answer="core", annotator="a")
                   for i in range(3)])
    rid = ws.add_run(method="erm", dataset="pets", model="m", status="done")
    ws.write_json(f"runs/{rid}/metrics.json", {"accuracy": 0.5})
    ws.update_run(rid, artifacts={"metrics": f"runs/{rid}/metrics.json"})
    jid = ws.add_job("sleep", {})
    ws.update_job(jid, status="done")
    ws.save_npy("features/pets/m/val/features.npy", np.zeros((2, 3), np.float16))
    return ws


READ_COMMANDS = [
    ["dataset", "list"], ["dataset", "show", "pets"], ["model", "list"], ["model", "show", "m"],
    ["job", "list"], ["label", "export", "--dataset", "pets", "--model", "m"],
    ["label", "show", "--dataset", "pets", "--model", "m"], ["run", "list"], ["workspace", "check"],
    ["workspace", "info"],
]
NO_TORCH = [c for c in READ_COMMANDS if c[:2] not in (["dataset", "show"], ["model", "show"])]  # 0.5 s each


@pytest.mark.parametrize("pending_wal", [False, True], ids=["closed", "wal-pending"])
def test_read_commands_work_on_a_read_only_workspace(pending_wal):
    with shared_tmp() as tmp:
        ws = _populate(tmp / "ws")
        holder = None
        if pending_wal:   # another (writing) user has it open: recent rows live only in audit.db-wal
            holder = sqlite3.connect(ws.db_path)
            holder.execute("PRAGMA wal_autocheckpoint = 0")
            holder.execute("INSERT INTO concepts (dataset, text, kind, created) VALUES ('pets', 'fur', 'spurious', 'x')")
            holder.commit()
            assert (ws.root / "audit.db-wal").stat().st_size > 0
        before = tree_state(ws.root)
        with read_only(ws.root) as possible:
            if not possible:
                pytest.skip("no way to run as a user who cannot write here (root without setpriv)")
            for args in (NO_TORCH if pending_wal else READ_COMMANDS):
                proc = cli(*args, "--json", workspace=ws.root, as_nobody=True)
                assert proc.returncode == 0, (args, proc.stdout[-500:], proc.stderr[-2000:])
                json.loads(proc.stdout.strip().splitlines()[-1])
            out = json.loads(cli("dataset", "list", "--json", workspace=ws.root, as_nobody=True).stdout)
            assert [d["name"] for d in out["datasets"]] == ["pets"]
            info = json.loads(cli("workspace", "info", "--json", workspace=ws.root, as_nobody=True).stdout)
            assert info["read_only"] is True and info["datasets"] == 1
            # writing commands refuse clearly
            for args in (["dataset", "build", "colored-mnist", "--name", "x"],
                         ["label", "add", "--dataset", "pets", "--model", "m", "--class", "0", "--feature", "1",
                          "--answer", "core", "--annotator", "b"]):
                proc = cli(*args, workspace=ws.root, as_nobody=True)
                assert proc.returncode == 2 and no_traceback(proc), proc.stderr
                assert "read-only" in proc.stderr and str(ws.root) in proc.stderr
        if holder is not None:
            holder.close()
        else:
            assert tree_state(ws.root) == before
