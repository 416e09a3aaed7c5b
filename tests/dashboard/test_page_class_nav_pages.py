"""The class navigator on Gaps and Crops & sensitivity (AppTest): a search picks a class, the page's
class section shows that class's numbers, and the class is the same one on the next page."""
from __future__ import annotations

import pandas as pd

from tests.dashboard.app_helpers import open_app, texts
from tests.dashboard.populate import DATASET, MODEL, NO_SPURIOUS_CLASS


def _pick(at, page_key: str, c: int):
    """Search the navigator of ``page_key`` for class ``c`` and select it."""
    at.text_input(key=f"{page_key}_search").set_value(str(c)).run()
    options = [int(o.split(":")[0]) for o in at.selectbox(key="sa_class").options]
    assert c in options and len(options) <= 2, options          # the match (and the current class, first)
    at.selectbox(key="sa_class").set_value(c).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_gaps_class_section_follows_the_navigator(populated):
    at = open_app(populated["root"], "gaps")
    table = at.dataframe[1].value.set_index("class_index")      # the view's table: every ranked class
    start = int(at.session_state["sa_class"])
    assert start == int(table.gap.idxmax())                     # opens on the largest saved gap
    target = next(int(c) for c in table.sort_values("gap").index if int(c) != start)
    _pick(at, "gaps_nav", target)
    assert at.session_state["sa_class"] == target
    row = table.loc[target]
    m = _metrics(at)
    assert m["Gap"] == f"{row.gap * 100:+.1f} pts"
    assert m["Interval"] == f"[{row.ci_low * 100:+.1f}, {row.ci_high * 100:+.1f}]"
    assert m["Images (k per slice)"] == f"{int(row.n):,} ({int(row.k)})"
    assert m["Accuracy high"] == f"{row.acc_high:.1%}" and m["Accuracy low"] == f"{row.acc_low:.1%}"
    # the bar chart (a view of its own) is unchanged by the navigator
    assert len(at.get("plotly_chart")) == 1
    # an unranked class says why instead of showing numbers
    at.text_input(key="gaps_nav_search").set_value("").run()
    at.selectbox(key="sa_class").set_value(NO_SPURIOUS_CLASS).run()
    assert "Gap" not in _metrics(at)
    assert "is not ranked on test: no spurious feature." in texts(at.info)
    # the class is kept on the next page, and Open in Rankings opens it there
    at.switch_page("app_pages/crops.py").run()
    assert at.session_state["sa_class"] == NO_SPURIOUS_CLASS
    at.switch_page("app_pages/gaps.py").run()
    at.selectbox(key="sa_class").set_value(target).run()
    at.button(key="gaps_open").click().run()
    assert at.title[0].value == "Spuriosity rankings" and at.session_state["sa_class"] == target


def test_crops_class_view_and_all_class_tables(populated):
    from core.audit.artifacts import load_crops, load_sensitivity
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    crops, sens = load_crops(ws, DATASET, MODEL), load_sensitivity(ws, DATASET, MODEL)
    per = pd.DataFrame(crops["per_class"]).set_index("class_index")
    target = int(per.n.idxmax())
    at = open_app(populated["root"], "crops")
    assert {"Accuracy before", "Accuracy after crop", "Images"} <= set(_metrics(at))      # pooled, first
    _pick(at, "crops_nav", target)
    m = _metrics(at)
    r = per.loc[target]
    assert m["This class: accuracy before crop"] == f"{r.acc_before:.1%}"
    assert m["This class: after crop"] == f"{r.acc_after:.1%}" and m["This class: images cropped"] == f"{int(r.n):,}"
    # the class's sensitivity rows: one per corruption, that class only
    mine = sens[sens.class_index == target]
    shown = next(d.value for d in at.dataframe if "corruption" in d.value.columns and "class" not in d.value.columns)
    assert sorted(shown.corruption) == sorted(mine.corruption)
    assert shown.drop_masked.tolist() == mine.drop_masked.tolist()
    # all classes: sorted, the first N
    at.selectbox(key="crops_all_order").set_value("largest gain").run()
    at.number_input(key="crops_all_n").set_value(3).run()
    table = next(d.value for d in at.dataframe if "gain" in d.value.columns)
    want = (per.acc_after - per.acc_before).sort_values(ascending=False, kind="stable")
    assert len(table) == 3 and table.gain.tolist() == sorted(table.gain.tolist(), reverse=True)
    assert table.gain.iloc[0] == want.iloc[0]
    assert "3 of" in texts(at.caption) and "ordered by largest gain" in texts(at.caption)
    # the class is kept on Features
    at.switch_page("app_pages/features.py").run()
    assert at.session_state["sa_class"] == target
