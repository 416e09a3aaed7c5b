"""Per-class concept texts: each class is measured with its own spurious and core concepts
(`core.concepts.clip.class_concept_spuriosity`, `core.concepts.vocabulary.class_concepts`).

The maths is checked on a planted score matrix with known columns; the workspace step runs a
random-init tiny CLIP, so that part checks plumbing (columns, meta, per-class z-scores recomputed from
the saved scores), not CLIP's semantics.
"""

import numpy as np
import pytest
import torch

from core.concepts.clip import ClipConfig, class_concept_spuriosity, concept_spuriosity
from core.concepts.vocabulary import (check_per_class, class_concepts, load_per_class_file,
                                      read_per_class_csv)
from core.errors import SpurAuditError
from tests.concepts.tiny_clip import register_tiny_clip

WATER, GRASS, BIRD = 0, 1, 2


def _planted():
    """6 images, 2 classes. Class 0: water rises 1..3 while grass falls 3..1; class 1: water rises."""
    scores = np.array([[0.1, 0.3, 0.5], [0.2, 0.2, 0.5], [0.3, 0.1, 0.5],       # class 0
                       [0.1, 0.0, 0.1], [0.2, 0.0, 0.4], [0.3, 0.0, 0.9]])      # class 1
    labels = np.array([0, 0, 0, 1, 1, 1])
    return scores, labels


def test_per_class_concepts_change_the_ranking():
    scores, labels = _planted()
    shared = class_concept_spuriosity(scores, labels, spurious={0: [WATER], 1: [WATER]})
    assert np.argsort(shared[:3]).tolist() == [0, 1, 2]                        # by water
    assert np.allclose(shared, concept_spuriosity(scores, labels, spurious=[WATER]))
    own = class_concept_spuriosity(scores, labels, spurious={0: [GRASS], 1: [WATER]})
    assert np.argsort(own[:3]).tolist() == [2, 1, 0]                           # class 0 by grass: reversed
    assert np.allclose(own[3:], shared[3:])                                    # class 1 untouched
    # class 1's core concept (the bird) grows faster than water: subtracting it reverses class 1 only
    with_core = class_concept_spuriosity(scores, labels, spurious={0: [WATER], 1: [WATER]}, core={1: [BIRD]})
    assert np.allclose(with_core[:3], shared[:3])
    assert np.argsort(with_core[3:]).tolist() == [2, 1, 0]
    for c in (0, 1):                                                           # z-scores within class
        assert with_core[labels == c].mean() == pytest.approx(0, abs=1e-6)
        assert with_core[labels == c].std() == pytest.approx(1, abs=1e-5)


def test_a_class_without_spurious_columns_is_unranked_and_bad_columns_are_refused():
    scores, labels = _planted()
    out = class_concept_spuriosity(scores, labels, spurious={0: [WATER]})
    assert np.isfinite(out[:3]).all() and np.isnan(out[3:]).all()
    with pytest.raises(SpurAuditError, match="class 1: core concept columns \\[7\\]"):
        class_concept_spuriosity(scores, labels, spurious={0: [WATER]}, core={1: [7]})


NAMES = ["landbird", "waterbird", "3"]


def test_class_concepts_defaults_and_overrides():
    out = class_concepts(NAMES, spurious=["water", "grass"])
    assert out[0] == {"spurious": ["water", "grass"], "core": ["a landbird"]}     # core = the class's own name
    assert class_concepts(NAMES, spurious=["water"], core=["a bird"])[1]["core"] == ["a bird"]
    over = class_concepts(NAMES, spurious=["water"], per_class={
        "waterbird": {"spurious": ["a lake", "a lake", " "]}, 0: {"core": "a sparrow, a robin"}})
    assert over[1] == {"spurious": ["a lake"], "core": ["a waterbird"]}            # core keeps its default
    assert over[0] == {"spurious": ["water"], "core": ["a sparrow", "a robin"]}
    assert check_per_class({"3": {"core": ["a three"]}}, NAMES) == {2: {"core": ["a three"]}}   # name first


@pytest.mark.parametrize("per_class, message", [
    ({"seabird": {"spurious": ["water"]}}, "unknown class 'seabird'; use a class name or index"),
    ({"7": {"spurious": ["water"]}}, "unknown class '7'"),
    ({"waterbird": {"spurious": []}}, "class 'waterbird': the spurious concept list is empty"),
    ({"waterbird": {"core": " , "}}, "class 'waterbird': the core concept list is empty"),
    ({"waterbird": {"spurios": ["water"]}}, "kinds must be spurious and/or core"),
    ({"waterbird": {}}, "kinds must be spurious and/or core"),
    ({"waterbird": {"core": ["a"]}, 1: {"core": ["b"]}}, "named twice"),
    ({"waterbird": ["water"]}, "expected"),
])
def test_bad_overrides_name_the_class(per_class, message):
    with pytest.raises(SpurAuditError, match=message):
        class_concepts(NAMES, spurious=["water"], per_class=per_class)


def test_per_class_csv(tmp_path):
    text = "class,kind,text\nwaterbird,spurious,water\nwaterbird,spurious,\"a lake, calm\"\n\n0,core,a sparrow\n"
    assert read_per_class_csv(text) == {"waterbird": {"spurious": ["water", "a lake, calm"]},
                                        "0": {"core": ["a sparrow"]}}
    for bad, message in [("name,kind,text\n", "line 1: the header must be class,kind,text"),
                         ("class,kind,text\nwaterbird,spurios,water\n", "line 2 \\(class 'waterbird'\\): kind"),
                         ("class,kind,text\nwaterbird,core,\n", "line 2 \\(class 'waterbird'\\): the concept text"),
                         ("class,kind,text\nwaterbird,core,a,b\n", "line 2: expected 3 cells"),
                         ("class,kind,text\n", "no rows"), ("", "is empty")]:
        with pytest.raises(SpurAuditError, match=message):
            read_per_class_csv(bad)
    with pytest.raises(SpurAuditError, match="does not exist"):
        load_per_class_file(tmp_path / "nope.csv")


@pytest.fixture(scope="module")
def tex(tmp_path_factory):
    from core.data import build_dataset
    from core.workspace import Workspace

    folder = tmp_path_factory.mktemp("clipcfg")
    register_tiny_clip(folder)
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    build_dataset(ws, "digits-on-textures", "tex", n_train=20, n_val=40, n_test=10, size=32, digit_size=(16, 24),
                  rho=0.9)
    return ws


def _run(ws, **kw):
    from core.concepts.pipeline import run_clip_spuriosity

    torch.manual_seed(0)
    return run_clip_spuriosity(ws, "tex", clip=ClipConfig(model_name="spuraudit-tiny-clip", pretrained=None),
                               split="val", device="cpu", **kw)


def test_pipeline_scores_each_class_with_its_own_concepts(tex):
    from core.concepts.artifacts import list_concept_rankings
    from core.data import load_manifest

    ws = tex
    base = _run(ws, concepts=["a brick wall", "grass"], name="base")
    over = _run(ws, concepts=["a brick wall", "grass"], name="over",
                per_class={"3": {"spurious": ["gravel"], "core": ["a digit three"]}})
    meta = {r.name: r for r in list_concept_rankings(ws, "tex")}["over"]
    assert meta.per_class == {"3": {"spurious": ["gravel"], "core": ["a digit three"]}}
    assert meta.core_default == "class name" and over["per_class"] == meta.per_class
    assert meta.label == "by concept: a brick wall, grass (own concepts for 1 class)"
    cols = meta.columns
    assert cols[:3] == ["a brick wall", "grass", "a 0"] and {"gravel", "a digit three"} <= set(cols)
    assert "a 3" not in cols                                       # class 3's own core was overridden
    scores = ws.open_npy(over["scores"], mmap=False)
    assert scores.shape == (40, len(cols))
    y = np.asarray(load_manifest(ws, "tex").split("val").labels)
    col = {t: i for i, t in enumerate(cols)}
    names = load_manifest(ws, "tex").class_names
    spurious = {c: [col["a brick wall"], col["grass"]] for c in range(10)}
    core = {c: [col[f"a {names[c]}"]] for c in range(10) if c != 3}
    spurious[3], core[3] = [col["gravel"]], [col["a digit three"]]
    want = class_concept_spuriosity(scores, y, spurious=spurious, core=core)
    got = ws.open_npy(over["spuriosity"], mmap=False)
    assert np.allclose(got, want, atol=1e-5) and np.isfinite(got).all()
    b = ws.open_npy(base["spuriosity"], mmap=False)
    assert np.allclose(got[y != 3], b[y != 3], atol=1e-5)            # other classes: same concepts, same scores
    assert not np.allclose(got[y == 3], b[y == 3], atol=1e-3)        # class 3: its own concepts
    table = ws.concepts("tex")
    assert set(table[table.class_index == 3].text) == {"gravel", "a digit three"}
    shared = table[table.class_index.isna()]
    assert sorted(shared.text) == ["a brick wall", "grass"]             # recorded once over both runs
    with pytest.raises(SpurAuditError, match="unknown class 'zebra'"):
        _run(ws, concepts=["grass"], per_class={"zebra": {"spurious": ["grass"]}})
