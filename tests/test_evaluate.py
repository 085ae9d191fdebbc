from __future__ import annotations

import numpy as np
import pytest

from clipcls import Classifier, DataError
from clipcls._evaluate import COMPARED, SHORT_NAMES, evaluate
from clipcls.zoo import synth
from conftest import SHAPES_YAML


@pytest.fixture(scope="module")
def setup(encoder, tmp_path_factory):  # noqa: ANN001, ANN201
    clf = Classifier(SHAPES_YAML, encoder=encoder, cache_dir=tmp_path_factory.mktemp("c"), persist=False)
    scenes = [synth.make_scene(41, i, n_objects=1, shape=synth.SHAPES[i % 10]) for i in range(200)]
    return clf, clf.embed([synth.render(s) for s in scenes]), [(s.objects[0].shape,) for s in scenes]


def test_every_strategy_is_measured_side_by_side(setup) -> None:  # noqa: ANN001
    clf, X, y = setup
    rep = evaluate(clf, X, y)
    assert [s.name for s in rep.strategies] == [c[0] for c in COMPARED]
    by = {s.name: s for s in rep.strategies}
    flat = clf.classify_embeddings(X, strategy="flat")
    assert by["flat"].top1 == pytest.approx(np.mean([p.top_k[0].id == t[0] for p, t in zip(flat, y)]))
    greedy = clf.classify_embeddings(X, strategy="topdown")
    assert by["topdown greedy"].top1 == pytest.approx(np.mean([p.node == t[0] for p, t in zip(greedy, y)]))
    for s in rep.strategies:
        assert 0 <= s.top1 <= s.top5 <= 1 and len(s.levels) == 2 and s.ms_per_image > 0
        assert s.severity == 0 or 1 <= s.severity <= 2
    assert rep.confusion.sum() == len(X) and rep.confusion_level == "leaves"
    assert rep.node_recall["shape"] == 1.0 and rep.node_support["polygon"] == 100
    cov = [c.coverage for c in rep.coverage]
    assert cov == sorted(cov, reverse=True) and cov[0] == 1.0
    assert "| topdown beam 3 |" in rep.table()


def test_data_validation_flags_missing_classes_and_shift(setup) -> None:  # noqa: ANN001
    clf, X, y = setup
    keep = [i for i, t in enumerate(y) if t[0] != "star"]
    rep = evaluate(clf, X[keep], [y[i] for i in keep], train_counts={"circle": 500, "square": 10, "heart": 10})
    text = " ".join(rep.warnings)
    assert "no examples" in text and "star" in text
    assert "'circle'" in text and "probe training data" in text


def test_internal_labels_are_refused_for_single_label(setup) -> None:  # noqa: ANN001
    clf, X, _ = setup
    with pytest.raises(DataError, match="leaf labels"):
        evaluate(clf, X[:2], [("polygon",), ("circle",)])


def test_multilabel_data_gets_map_and_f1(setup) -> None:  # noqa: ANN001
    clf, _, _ = setup
    scenes = [synth.make_scene(43, i, n_objects=2) for i in range(40)]
    X = clf.embed([synth.render(s) for s in scenes])
    labels = [tuple(dict.fromkeys(o.shape for o in s.objects)) for s in scenes]
    rep = evaluate(clf, X, labels)
    assert rep.multilabel is not None and 0 < rep.multilabel["mAP"] <= 1


def test_strategies_can_be_restricted_and_unknown_names_are_refused(setup) -> None:  # noqa: ANN001
    clf, X, y = setup
    rep = evaluate(clf, X[:40], y[:40], strategies=["flat", "chils"])
    assert [s.name for s in rep.strategies] == ["flat", "topdown greedy", "CHiLS"]
    assert set(SHORT_NAMES.values()) == {c[0] for c in COMPARED}
    with pytest.raises(ValueError, match="unknown strategy"):
        evaluate(clf, X[:40], y[:40], strategies=["nope"])
