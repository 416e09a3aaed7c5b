"""`core.audit.plots`: every helper returns a Plotly figure."""
import numpy as np
import pandas as pd

from core.audit import plots


def _per_class():
    return pd.DataFrame({"class_index": [0, 1], "n": [40, 40], "k": [10, 10], "acc_high": [0.9, 0.5],
                         "acc_low": [0.6, 0.7], "gap": [0.3, -0.2], "ci_low": [0.1, -0.4], "ci_high": [0.5, -0.05],
                         "negative": [False, True], "ranked": [True, True]})


def test_plot_helpers_return_figures():
    per = _per_class()
    for fig in (plots.gap_bar(per), plots.gap_scatter(per),
                plots.model_gap_correlation(pd.DataFrame([[1, .5], [.5, 1]], index=["a", "b"], columns=["a", "b"])),
                plots.importance_bar([1, 2], [0.5, 0.2], verdicts=["core", "spurious"]),
                plots.spuriosity_histogram(np.array([0.1, np.nan, 0.3]))):
        assert fig.__class__.__name__ == "Figure" and len(fig.data) >= 1
    assert list(plots.gap_bar(per).data[0].x) == ["1", "0"]          # sorted by gap
