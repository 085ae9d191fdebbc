from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from clipcls import _metrics as M


@pytest.fixture
def logits() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 300)
    z = rng.normal(size=(300, 7))
    z[np.arange(300), y] += rng.normal(1.0, 1.0, 300)  # informative but imperfect
    return z, y


def test_flat_metrics_equal_sklearn_and_clip_benchmark(logits) -> None:  # noqa: ANN001
    from sklearn.metrics import balanced_accuracy_score, top_k_accuracy_score

    z, y = logits
    pred = z.argmax(1)
    assert M.mean_per_class_recall(pred, y) == pytest.approx(balanced_accuracy_score(y, pred))
    for k in (1, 5):
        assert M.topk_accuracy(z, y, k) == pytest.approx(top_k_accuracy_score(y, z, k=k))
    # CLIP_benchmark's accuracy(): target in logits.topk(k).
    top5 = np.argsort(-z, axis=1)[:, :5]
    assert M.topk_accuracy(z, y, 5) == pytest.approx(np.mean([t in row for t, row in zip(y, top5)]))


def test_average_precision_and_f1_equal_sklearn(logits) -> None:  # noqa: ANN001
    from sklearn.metrics import average_precision_score, f1_score

    z, y = logits
    truth = np.eye(7, dtype=bool)[y]
    truth[::3, 0] = True
    m = M.multilabel_metrics(z, truth, 0.5)
    for c in range(7):
        assert m["ap"][c] == pytest.approx(average_precision_score(truth[:, c], z[:, c]))
        assert m["f1"][c] == pytest.approx(f1_score(truth[:, c], z[:, c] >= 0.5))
    assert m["mAP"] == pytest.approx(np.mean(m["ap"]))


def test_ece_of_perfectly_calibrated_and_overconfident() -> None:
    rng = np.random.default_rng(1)
    conf = rng.uniform(0, 1, 20000)
    correct = rng.uniform(0, 1, 20000) < conf
    assert M.expected_calibration_error(conf, correct) < 0.02
    assert M.expected_calibration_error(np.full(1000, 0.99), np.arange(1000) < 600) == pytest.approx(0.39)
    b = M.reliability_bins(conf, correct)
    assert b.count.sum() == 20000 and len(b.edges) == 16


def test_hierarchical_metrics() -> None:
    G = nx.DiGraph([("r", "a"), ("r", "b"), ("a", "a1"), ("a", "a2"), ("b", "b1"), ("b", "b2")])
    pred, truth = ["a1", "a2", "b1", "a1"], ["a1", "a1", "a1", "b2"]
    assert M.level_accuracy(G, "r", pred, truth) == [0.5, 0.25]
    # Mistakes: a2 vs a1 (LCA a, height 1), b1 vs a1 and a1 vs b2 (LCA r, height 2).
    assert M.mistake_severity(G, "r", pred, truth) == pytest.approx(5 / 3)
    hp, hr, hf = M.hierarchical_prf(G, "r", pred, truth)
    assert hp == hr == hf == pytest.approx(3 / 8)
    assert M.mistake_severity(G, "r", truth, truth) == 0.0
