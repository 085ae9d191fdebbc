from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipcls import Classifier, ProbeError
from clipcls._calibration import apply_calibration, ece_of, fit_calibration, load_calibration
from clipcls.zoo import synth
from conftest import SHAPES_YAML


@pytest.fixture(scope="module")
def data(encoder, tmp_path_factory):  # noqa: ANN001, ANN201
    clf = Classifier(SHAPES_YAML, encoder=encoder, cache_dir=tmp_path_factory.mktemp("c"), persist=False)
    scenes = [synth.make_scene(31, i, n_objects=1, shape=synth.SHAPES[i % 10]) for i in range(400)]
    return clf, clf.embed([synth.render(s) for s in scenes]), [s.objects[0].shape for s in scenes]


def test_temperature_lowers_ece_on_a_separate_split(data) -> None:  # noqa: ANN001
    clf, X, y = data
    cal = fit_calibration(clf, X[:200], y[:200])
    assert cal.temperature != pytest.approx(1.0, abs=0.02)
    assert cal.ece_after < cal.ece_before
    before = ece_of(clf, X[200:], y[200:])
    clf.temperature = cal.temperature
    try:
        after = ece_of(clf, X[200:], y[200:])
    finally:
        clf.temperature = 1.0
    assert after < before


def test_thresholds_for_target_precision_are_served(data, tmp_path: Path) -> None:  # noqa: ANN001
    clf, X, y = data
    cal = fit_calibration(clf, X, y, target_precision=0.99)
    assert "shape" in cal.thresholds and all(0 <= t <= 1 for t in cal.thresholds.values())
    path = cal.save(tmp_path / "cal.json")
    loaded = load_calibration(path, clf)
    assert loaded == cal
    other = Classifier(clf.taxonomy.copy(), encoder=clf.encoder, cache_dir=tmp_path, persist=False)
    apply_calibration(other, loaded)
    preds = other.classify_embeddings(X)
    answered = [(p.node, t) for p, t in zip(preds, y) if p.stopped_at is None]
    assert np.mean([a == t for a, t in answered]) >= 0.97
    assert len(answered) < len(y)  # the thresholds made some answers stop earlier


def test_corrupt_or_foreign_calibration_is_refused(data, tmp_path: Path) -> None:  # noqa: ANN001
    clf, X, y = data
    path = fit_calibration(clf, X[:50], y[:50]).save(tmp_path / "c.json")
    text = path.read_text()
    (tmp_path / "bad.json").write_text(text.replace('"temperature": ', '"temperature": 1'))
    with pytest.raises(ProbeError, match="checksum"):
        load_calibration(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_text("[]")
    with pytest.raises(ProbeError, match="not a clipcls calibration"):
        load_calibration(tmp_path / "junk.json")
    renamed = clf.taxonomy.copy()
    renamed.name = "other"
    other = Classifier(renamed, encoder=clf.encoder, cache_dir=tmp_path, persist=False)
    with pytest.raises(ProbeError, match="taxonomy"):
        load_calibration(path, other)
