"""What mitigation runs measure (core/mitigate/metrics.py): group accuracies and decodability of a model
on a split, and cost (wall time, peak RSS)."""
from __future__ import annotations

import torch

from core.mitigate.metrics import evaluate_model, measure_cost
from core.models.checkpoints import export_masked_model, load_masked_model
from core.models.gates import apply_masks

from _cue import cue_data, cue_model


def test_evaluate_model_and_masked_export_roundtrip(tmp_path):
    torch.set_num_threads(1)
    data = cue_data(n_train=40, n_val=40, n_test=40)
    model = cue_model().eval()
    masks = {name: torch.rand(m.weight.shape, generator=torch.Generator().manual_seed(1)) > 0.5
             for name, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    apply_masks(model, masks)
    metrics = evaluate_model(model, data, "val", device="cpu")
    for key in ("accuracy", "unbiased_accuracy", "aligned_accuracy", "conflicting_accuracy",
                "worst_group_accuracy", "bias_decodability"):
        assert key in metrics
    torch.save(export_masked_model(model), tmp_path / "m.pt")
    loaded = load_masked_model(torch.load(tmp_path / "m.pt", weights_only=True))
    with torch.no_grad():
        assert torch.allclose(loaded(data.x_val), model(data.x_val), atol=1e-5)
        assert float((loaded.head.weight * (~masks["head"])).abs().sum()) == 0.0
    assert evaluate_model(loaded, data, "val", device="cpu", decodability=False)["accuracy"] == metrics["accuracy"]


def test_cost_meter_measures():
    with measure_cost() as cost:
        sum(range(10000))
    assert cost.wall_time_s > 0 and cost.peak_rss_mb > 10
