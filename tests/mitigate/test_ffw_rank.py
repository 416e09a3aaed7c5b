"""FFW's "bias-rank" rule (core/mitigate/ffw_rank.py): neurons ranked by the bias's share of their
variance, the k least biased kept within the bias budget."""
import torch

from core.mitigate.ffw_rank import rank_prune
from core.mitigate.probes import privacy_bias_accuracy

torch.set_num_threads(1)


def _planted_features(n: int, seed: int):
    """(N, 6) features: columns 0-1 carry the bias (3 values), 2-4 the class (3 classes), 5 is constant."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    b = torch.randint(0, 3, (n,), generator=g)
    z = torch.randn(n, 6, generator=g) * 0.3
    z[:, 0] += 2.0 * b.float()
    z[:, 1] += 2.0 * (b == 1).float()
    z[:, 2:5] += 2.0 * torch.nn.functional.one_hot(y, 3).float()
    z[:, 5] = 1.0
    return z, y, b


def test_rank_prune_drops_the_bias_neurons_and_keeps_the_task():
    z, y, b = _planted_features(600, 1)
    zf, yf, bf, zh, yh, bh = z[:400], y[:400], b[:400], z[400:], y[400:], b[400:]
    vanilla_bias = privacy_bias_accuracy(zf, bf, zh, bh, num_values=3)
    assert vanilla_bias > 0.9
    frozen = torch.nn.Linear(6, 3)
    keep, head, rows, pick, fallback = rank_prune(
        zf, yf, {"bias": bf}, zh, yh, {"bias": bh}, num_bias_values={"bias": 3}, num_classes=3, head=frozen,
        vanilla_bias_accuracy={"bias": vanilla_bias}, bias_budget=0.5, refit_head=True)
    assert not fallback and head is not None
    # bias columns and the constant one go; two of the three class columns already name all 3 classes
    assert not keep[[0, 1, 5]].any() and int(keep[2:5].sum()) >= 2
    chosen = rows[pick]
    assert chosen["kept_neurons"] == int(keep.sum()) and chosen["hard_task_accuracy"] > 0.9
    assert chosen["hard_bias_accuracy"] <= chosen["bias_cap"]["bias"] < vanilla_bias
    # keeping a bias column would break the cap: every larger k is rejected
    assert all(not r["qualifies"] for r in rows if r["kept_neurons"] > 3)
    # budget 1.0 allows the vanilla's bias: the best task accuracy wins whatever it keeps
    _, _, rows1, pick1, _ = rank_prune(
        zf, yf, {"bias": bf}, zh, yh, {"bias": bh}, num_bias_values={"bias": 3}, num_classes=3, head=frozen,
        vanilla_bias_accuracy={"bias": vanilla_bias}, bias_budget=1.0, refit_head=True)
    assert rows1[pick1]["hard_task_accuracy"] == max(r["hard_task_accuracy"] for r in rows1 if r["qualifies"])
