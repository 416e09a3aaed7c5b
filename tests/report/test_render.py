"""`core.report.render`: the HTML of a context — escaping, inlined images and figures, self-contained."""
import numpy as np
import pandas as pd

from core.audit import plots
from core.report import png_base64, render_report

EVIL = "<script>alert(1)</script>"


def _per_class():
    return pd.DataFrame({"class_index": [0, 1], "n": [40, 40], "k": [10, 10], "acc_high": [0.9, 0.5],
                         "acc_low": [0.6, 0.7], "gap": [0.3, -0.2], "ci_low": [0.1, -0.4], "ci_high": [0.5, -0.05],
                         "negative": [False, True], "ranked": [True, True]})


def test_report_renders_and_escapes():
    thumb = png_base64(np.zeros((8, 8, 3), np.uint8))
    names = [EVIL, "cat & dog"]
    per = _per_class()
    figs = [plots.gap_bar(per, class_names=names), plots.gap_scatter(per, class_names=names)]
    ctx = {
        "title": f"Report for {EVIL}", "split": "val", "k": 5, "group_by": "prediction", "verdict_rule": "majority",
        "dataset": {"name": EVIL, "summary": {"source": EVIL, "classes": 2}},
        "model": {"name": "m", "summary": {"arch": "small_cnn"}},
        "classes": [{"name": EVIL, "index": 0, "features": [
            {"feature": 3, "importance": 1.5, "verdict": "spurious", "kind": "spurious_background", "basis": "human",
             "single_gap": 0.25, "images": [thumb]}]}],
        "rankings": [{"name": EVIL, "unranked": False, "lowest": [thumb], "highest": [thumb]},
                     {"name": "cat & dog", "unranked": True, "lowest": [], "highest": []}],
        "pooled": {"gap": 0.05, "ci_low": -0.1, "ci_high": 0.2, "acc_high": 0.7, "acc_low": 0.65, "n_classes": 2},
        "gaps": [dict(r, name=names[r["class_index"]]) for r in per.to_dict(orient="records")],
        "figures": figs,
        "collisions": [{"name": EVIL, "feature": 3, "other_name": "cat & dog", "rank_in_other": 0, "strength": 2.0}],
        "crops": {"acc_before": 0.5, "acc_after": 0.75, "n": 4},
        "sensitivity": [{"mask_source": "core", "corruption": "gray", "acc_clean": 0.9, "drop_masked": 0.3,
                         "drop_random": 0.05}],
        "runs": [{"id": 1, "method": "low-spuriosity", "status": "done", "metrics": EVIL}],
    }
    html = render_report(ctx)
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "cat &amp; dog" in html
    assert html.count(f"data:image/png;base64,{thumb}") == 3
    assert "Not ranked: no spurious feature." in html
    assert "+0.050" in html and "-0.200" in html
    # plotly.js inlined exactly once, two figures drawn
    single = figs[0].to_html(include_plotlyjs="inline", full_html=False)
    bundle_marker = single[single.index("plotly.js v"):single.index("plotly.js v") + 20]
    assert html.count(bundle_marker) == single.count(bundle_marker) >= 1
    assert html.count("Plotly.newPlot") == 2
    assert "<script src=" not in html                           # self-contained: no external script
