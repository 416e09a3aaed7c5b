"""FFW's config and the paper's gate loop on tensors (core/mitigate/ffw_gates.py)."""
import pytest
import torch

from core.errors import SpurAuditError
from core.mitigate.ffw_gates import FFWConfig, ffw_prune, select_epoch


def test_ffw_config_validation():
    with pytest.raises(SpurAuditError, match="unknown ffw option"):
        FFWConfig.from_dict({"gamma": 10, "not_an_option": 1})
    with pytest.raises(SpurAuditError):
        FFWConfig(temperature_factor=1.5).validate()


def test_ffw_bias_rank_config_errors():
    with pytest.raises(SpurAuditError, match="structured=true"):
        FFWConfig(structured_rule="bias-rank").validate()
    with pytest.raises(SpurAuditError, match="structured_rule"):
        FFWConfig(structured=True, structured_rule="magic").validate()
    with pytest.raises(SpurAuditError, match="bias_budget"):
        FFWConfig(structured=True, structured_rule="bias-rank", bias_budget=1.5).validate()


def test_selection_never_keeps_a_collapsed_model():
    def row(task, bias, classes):
        return {"hard_task_accuracy": task, "hard_bias_accuracy": bias, "hard_predicted_classes": classes}

    # vanilla at chance (floor 0.05): the constant model hides the bias perfectly but is never kept
    rows = [row(0.10, 0.10, 1), row(0.12, 0.60, 7), row(0.11, 0.40, 5)]
    assert select_epoch(rows, floor=0.05) == (2, False)
    # nothing reaches the floor: best task - bias among the non-collapsed epochs
    assert select_epoch([row(0.3, 0.1, 1), row(0.4, 0.9, 4), row(0.35, 0.5, 3)], floor=0.8) == (2, True)
    # every epoch collapsed: fall back over all of them
    assert select_epoch([row(0.1, 0.5, 1), row(0.1, 0.2, 1)], floor=0.8) == (1, True)
    with pytest.raises(SpurAuditError):
        select_epoch([], floor=0.0)


def test_ffw_prune_trains_gates_only_and_names_the_bias_rank_rule():
    z = torch.zeros(4, 3, 8, 8)
    with pytest.raises(SpurAuditError, match="prune_by_rank"):
        ffw_prune(torch.nn.Identity(), x_fit=z, y_fit=torch.zeros(4).long(), b_fit={"bias": torch.zeros(4).long()},
                  x_hold=z, y_hold=torch.zeros(4).long(), b_hold={"bias": torch.zeros(4).long()},
                  num_bias_values={"bias": 2}, config=FFWConfig(structured=True, structured_rule="bias-rank"))
    with pytest.raises(SpurAuditError, match="same bias attributes"):
        ffw_prune(torch.nn.Identity(), x_fit=z, y_fit=torch.zeros(4).long(), b_fit={"bias": torch.zeros(4).long()},
                  x_hold=z, y_hold=torch.zeros(4).long(), b_hold={"other": torch.zeros(4).long()},
                  num_bias_values={"bias": 2})
