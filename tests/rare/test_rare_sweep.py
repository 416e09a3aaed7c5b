"""The sweep engine: grid, tidy table, validation, resume after a kill, the canary audit, the job kinds."""
import json

import pytest
import torch

import core.rare.sweep as sweep_mod
from core import jobs
from core.errors import SpurAuditError
from core.rare.artifacts import finished_cells, list_rare_runs, load_rare_run
from core.rare.canary import canary_recipe, check_canary, run_canary, CanaryConfig
from core.rare.jobs import JOB_KINDS
from core.rare.sweep import (SweepConfig, base_train_config, check_sweep, parse_regulariser, regulariser_label,
                             run_sweep, sweep_cells)
from core.workspace import Workspace
from tests.rare.fixtures import draw_logo, tiny_cmnist, tiny_sweep


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_regulariser_strings():
    assert parse_regulariser("none") == {}
    assert parse_regulariser("noise=.1+wd=5e-4") == {"input_noise_std": 0.1, "weight_decay": 5e-4}
    assert regulariser_label("noise=.10+wd=5e-4") == "wd=0.0005+noise=0.1"
    assert regulariser_label("clip=1") == "clip=1"
    cfg = base_train_config(SweepConfig(), "sgd", "wd=0.001+clip=2", 3)
    assert (cfg.weight_decay, cfg.grad_clip, cfg.seed, cfg.lr, cfg.optimizer) == (0.001, 2.0, 3, 0.01, "sgd")
    for bad in ("dropout=0.1", "wd", "wd=-1", "noise=abc"):
        with pytest.raises(SpurAuditError, match="regulariser"):
            parse_regulariser(bad)


def test_grid_order_and_validation():
    cfg = SweepConfig(**tiny_sweep(patterns=("s3", "r1"), counts=(3, 1), optimizers=("sgd", "adam"))).validate()
    assert cfg.counts == (0, 1, 3)                                   # 0 added, sorted
    cells = sweep_cells(cfg)
    assert len(cells) == 2 * 2 * (1 + 2 * 2) and cells[0].n == 0 and cells[0].pattern == ""
    assert len({c.key for c in cells}) == len(cells)
    by_count = sweep_cells(SweepConfig(**tiny_sweep(counts=(0, 2, 4), order="count")).validate())
    assert [c.n for c in by_count] == [0, 0, 2, 2, 4, 4]
    for kw, msg in [({"patterns": ("s9",)}, "unknown pattern"), ({"patterns": ("patch",)}, "needs a patch"),
                    ({"counts": (0,)}, "at least one count"), ({"optimizers": ("rmsprop",)}, "unknown optimizer"),
                    ({"seeds": (0, 0)}, "distinct"), ({"deletion_counts": (7,)}, "deletion_counts"),
                    ({"train": {"bogus": 1}}, "bogus"), ({"data": "cifar"}, "unknown rare data")]:
        with pytest.raises(SpurAuditError, match=msg):
            SweepConfig(**tiny_sweep(**kw)).validate()


def test_data_checks_name_the_problem(tmp_path):
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(SpurAuditError, match="larger than class 0 .*20 training images"):
        check_sweep(ws, tiny_sweep(counts=(0, 500)))
    with pytest.raises(SpurAuditError, match="target class 12 does not exist"):
        check_sweep(ws, tiny_sweep(target=12))
    big = draw_logo(tmp_path / "big.png", size=12)                  # sklearn digits are 8×8
    with pytest.raises(SpurAuditError, match="12×12 pixels .* images are 8×8"):
        check_sweep(ws, tiny_sweep(patterns=("patch",), patch={"path": str(big)}))
    with pytest.raises(SpurAuditError, match="option rare sweep.counts expects a list of .*integer.*three"):
        check_sweep(ws, tiny_sweep(counts="0,three"))
    assert check_sweep(ws, tiny_sweep()).counts == (0, 5)
    assert ws.list_runs() == []                                      # checking never records a run


def test_sweep_writes_the_tidy_table_and_the_run(tmp_path):
    ws = Workspace(tmp_path / "ws")
    res = run_sweep(ws, tiny_sweep(patterns=("s3", "r3"), membership=True, deletion_counts=(5,), deletion_epochs=1,
                                   lissa_iterations=3))
    assert res.cells_run == res.cells_total == 2 * (1 + 2) and res.cells_skipped == 0
    table = res.table
    assert len(table) == 2 * (2 + 2)                                 # the clean model is scored for both patterns
    assert set(table.columns) >= {"pattern", "n", "optimizer", "regulariser", "seed", "score", "test_accuracy",
                                  "mia_auroc_patterned", "mia_auroc_clean", "score_after_retraining"}
    assert table[table.n == 5].mia_auroc_patterned.notna().all() and table[table.n == 0].mia_auroc_patterned.isna().all()
    assert table[table.n == 5].score_after_retraining.notna().all()
    run = ws.get_run(res.run_id)
    assert run.method == "rare-sweep" and run.status == "done" and run.dataset == "digits" and run.model == "mlp"
    assert run.metrics["cells_done"] == 6 and "table" in run.artifacts
    back = load_rare_run(ws, res.run_id)
    assert len(back.table) == len(table) and back.summary["norms"]["s3"] > 0
    assert {c["pattern"] for c in back.summary["cells"]} == {"s3", "r3"}
    assert list_rare_runs(ws)[0]["id"] == res.run_id


class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing in the engine can swallow it."""


def test_a_killed_sweep_continues_where_it_stopped(tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "ws")
    cfg = tiny_sweep(patterns=("s3", "r3"), counts=(0, 3, 5))      # 2 seeds × (1 + 4) = 10 cells
    trained: list[int] = []
    real_train = sweep_mod.train_model

    def counting(*args, **kwargs):
        trained.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(sweep_mod, "train_model", counting)

    def kill_at_fourth(fraction: float, message: str = "") -> None:
        if message.startswith("cell 4/"):
            raise Killed()

    with pytest.raises(Killed):
        run_sweep(ws, cfg, progress=kill_at_fourth)
    (run,) = ws.list_runs()
    assert run.status == "failed" and len(finished_cells(ws, run.id)) == 3 and len(trained) == 3
    stamps = {p.name: p.stat().st_mtime_ns for p in ws.path(f"runs/{run.id}/cells").glob("*.json")}
    partial = load_rare_run(ws, run.id)                              # readable while stopped
    assert partial.progress == (3, 10) and len(partial.table) > 0
    trained.clear()
    res = run_sweep(ws, {**cfg, "device": "cpu"})                    # the same settings: the same run goes on
    assert res.run_id == run.id and res.cells_skipped == 3 and res.cells_run == 7 and len(trained) == 7
    assert {p.name: p.stat().st_mtime_ns for p in ws.path(f"runs/{run.id}/cells").glob("*.json")
            if p.name in stamps} == stamps                           # finished cells were not re-run
    assert ws.get_run(run.id).status == "done" and len(res.table) == 2 * (2 + 4)
    again = run_sweep(ws, {**cfg, "resume": False})                  # a fresh run when asked
    assert again.run_id != run.id and again.cells_run == 10


def test_canary_stops_at_the_first_significant_n(tmp_path, monkeypatch):
    """Scores fabricated per n (the model is real but tiny): n = 2 is noise, n = 4 is learned, so the
    audit answers 4 and never trains n = 8."""
    ws = Workspace(tmp_path / "ws")
    tiny_cmnist(ws)
    current = {}
    real_cell = sweep_mod._Runner.run_cell

    def run_cell(self, cell, progress):
        current["n"], current["seed"] = cell.n, cell.seed
        return real_cell(self, cell, progress)

    def score(self, model, pattern, split, seed):
        base = {0: 0.0, 2: 0.001, 4: 0.3}.get(current["n"], 0.5)
        return base + 0.01 * seed

    monkeypatch.setattr(sweep_mod._Runner, "run_cell", run_cell)
    monkeypatch.setattr(sweep_mod._Runner, "score", score)
    logo = draw_logo(tmp_path / "logo.png")
    cfg = {"dataset": "cmnist", "arch": "mlp", "model_kwargs": {"hidden": [8]}, "train": {"epochs": 1},
           "pattern": "patch", "patch": {"path": str(logo), "position": "bottom-right"}, "counts": (0, 2, 4, 8),
           "seeds": (0, 1), "device": "cpu"}
    res = run_canary(ws, cfg)
    assert res.learned_n == 4 and res.stopped_early
    assert [r["n"] for r in res.per_n] == [0, 2, 4]
    assert not any(k.endswith("-8") for k in finished_cells(ws, res.run_id))
    run = load_rare_run(ws, res.run_id)
    assert run.is_canary and run.summary["canary"]["learned_n"] == 4 and ws.get_run(res.run_id).metrics["learned_n"] == 4
    with pytest.raises(SpurAuditError, match="at least two seeds"):
        check_canary(ws, {**cfg, "seeds": (0,)})
    with pytest.raises(SpurAuditError, match="larger than class 0"):
        check_canary(ws, {**cfg, "counts": (0, 9999)})
    with pytest.raises(SpurAuditError, match="needs the patch image"):
        check_canary(ws, {**cfg, "patch": None})


def test_canary_recipe_comes_from_the_model_record(tmp_path):
    ws = Workspace(tmp_path / "ws")
    tiny_cmnist(ws)
    ws.add_model("cnn", dataset="cmnist", arch="small_cnn", checkpoint_rel="models/cnn/model.pt",
                 config={"model_config": {"widths": [4, 8], "in_channels": 3, "mean": [0, 0, 0], "std": [1, 1, 1]},
                         "train": {"epochs": 7, "lr": 0.003, "optimizer": "sgd", "seed": 5, "weight_decay": 1e-4}},
                 metrics={})
    recipe = canary_recipe(ws, CanaryConfig(dataset="cmnist", model="cnn", train={"epochs": 2}).validate())
    assert recipe["arch"] == "small_cnn" and recipe["model_kwargs"]["widths"] == [4, 8]
    assert "in_channels" not in recipe["model_kwargs"]               # taken from the data
    assert recipe["train"] == {"epochs": 2, "lr": 0.003, "optimizer": "sgd", "weight_decay": 1e-4}
    with pytest.raises(SpurAuditError, match="unknown model|known"):
        canary_recipe(ws, CanaryConfig(dataset="cmnist", model="nope").validate())


def test_job_kinds_run_in_process_and_out_of_process(tmp_path):
    ws = Workspace(tmp_path / "ws")
    assert set(JOB_KINDS) == {"rare-sweep", "rare-canary"}
    with pytest.raises(SpurAuditError, match="unknown rare-sweep option"):
        JOB_KINDS["rare-sweep"](ws, {"pattern": "s3"}, lambda f, m="": None)
    out = JOB_KINDS["rare-sweep"](ws, tiny_sweep(seeds=[0, 1]), lambda f, m="": None)
    assert out["cells_total"] == 4 and ws.get_run(out["run_id"]).status == "done"
    assert {"rare-sweep", "rare-canary"} <= set(jobs.load_job_kinds())
    job_id = jobs.submit(ws, "rare-sweep", {**tiny_sweep(), "patterns": ["r3"], "device": "cpu"}, device="cpu")
    job = jobs.wait(ws, job_id, timeout_s=240)
    assert job.status == "done", job.error
    run = ws.get_run(job.result["run_id"])
    assert run.status == "done" and json.loads(json.dumps(run.params))["config"]["patterns"] == ["r3"]


def test_a_wider_sweep_reuses_the_cells_of_a_run_with_the_same_settings(tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "ws")
    first = run_sweep(ws, tiny_sweep(patterns=("s3", "r3"), counts=(0, 5), seeds=(0, 1), membership=True))
    trained: list[int] = []
    real_train = sweep_mod.train_model
    monkeypatch.setattr(sweep_mod, "train_model", lambda *a, **k: trained.append(1) or real_train(*a, **k))
    # one more seed and one more count, a subset of the patterns: only the new cells train
    wider = run_sweep(ws, tiny_sweep(patterns=("s3",), counts=(0, 5, 10), seeds=(0, 1, 2), membership=True))
    assert wider.run_id != first.run_id
    assert wider.cells_reused == 2 * 2                    # seeds 0, 1: the clean cell and s3 n=5
    assert wider.cells_run == 3 * 3 - 4 and len(trained) == wider.cells_run + 1   # + the shadow of seed 2
    assert set(wider.table.pattern) == {"s3"}
    old = first.table[(first.table.pattern == "s3") & (first.table.seed < 2)].sort_values(["n", "seed"])
    new = wider.table[(wider.table.n.isin([0, 5])) & (wider.table.seed < 2)].sort_values(["n", "seed"])
    assert list(old.score) == list(new.score)
    # other cell settings (epochs): nothing to reuse
    other = run_sweep(ws, tiny_sweep(patterns=("s3",), epochs=3))
    assert other.cells_reused == 0 and other.cells_run == 4
