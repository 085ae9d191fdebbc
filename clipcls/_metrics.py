"""Classification metrics: flat (as LAION's CLIP_benchmark), multi-label, hierarchical, calibration.

Pure functions over numpy arrays and a networkx ``DiGraph``; no model.

>>> import numpy as np
>>> topk_accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1]), 1)
0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np


def topk_accuracy(scores: np.ndarray, y: np.ndarray, k: int) -> float:
    """Share of rows whose true class is among the ``k`` highest scores (CLIP_benchmark's ``accuracy``)."""
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean((top == y[:, None]).any(1))) if len(y) else 0.0


def mean_per_class_recall(pred: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> float:
    """Mean over the classes present in ``y`` of their recall: balanced accuracy.

    >>> mean_per_class_recall(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    0.8333333333333333
    """
    classes = np.unique(y)
    return float(np.mean([np.mean(pred[y == c] == c) for c in classes])) if len(classes) else 0.0


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the precision-recall step curve, as scikit-learn's ``average_precision_score``."""
    if not positive.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    s, pos = scores[order], positive[order].astype(np.float64)
    # Tied scores form one threshold, as in scikit-learn.
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(pos)[last]
    precision = tp / (last + 1)
    recall = tp / pos.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def multilabel_metrics(scores: np.ndarray, truth: np.ndarray, thresholds: np.ndarray | float) -> dict[str, object]:
    """mAP over classes with positives, and per-class F1 at ``thresholds``."""
    aps = [average_precision(scores[:, c], truth[:, c]) for c in range(truth.shape[1])]
    pred = scores >= thresholds
    f1 = []
    for c in range(truth.shape[1]):
        tp = float(np.sum(pred[:, c] & truth[:, c]))
        denom = float(pred[:, c].sum() + truth[:, c].sum())
        f1.append(2 * tp / denom if denom else float("nan"))
    valid = [a for a in aps if not np.isnan(a)]
    return {"mAP": float(np.mean(valid)) if valid else float("nan"), "ap": aps, "f1": f1,
            "macro_f1": float(np.nanmean(f1)) if not all(np.isnan(f1)) else float("nan")}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE with ``bins`` equal-width bins: sum over bins of share * |accuracy - confidence|."""
    b = reliability_bins(confidence, correct, bins)
    n = b.count.sum()
    return float(np.sum(b.count / max(n, 1) * np.abs(b.accuracy - b.confidence))) if n else 0.0


@dataclass(frozen=True)
class ReliabilityBins:
    """Per equal-width confidence bin: count, mean confidence and accuracy (0 where empty)."""

    edges: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> ReliabilityBins:
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Right-closed bins, as in the usual ECE definition: (lo, hi], with 0 in the first.
    idx = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins).astype(np.float64)
    conf = np.bincount(idx, weights=confidence, minlength=bins)
    acc = np.bincount(idx, weights=correct.astype(np.float64), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ReliabilityBins(edges, count, np.where(count > 0, conf / count, 0.0), np.where(count > 0, acc / count, 0.0))


# -- hierarchical ---------------------------------------------------------------------------

def ancestors_or_self(G: nx.DiGraph, node: str, root: str) -> set[str]:
    """``node`` and everything above it, without the root (which every node shares)."""
    return ({node} | nx.ancestors(G, node)) - {root}


def hierarchical_prf(G: nx.DiGraph, root: str, pred: Sequence[str], truth: Sequence[str]) -> tuple[float, float, float]:
    """Hierarchical precision, recall and F1 over ancestor sets (Kiritchenko et al.), micro-averaged.

    >>> G = nx.DiGraph([("r", "a"), ("a", "x"), ("a", "y"), ("r", "b")])
    >>> hierarchical_prf(G, "r", ["y"], ["x"])
    (0.5, 0.5, 0.5)
    """
    inter = n_pred = n_true = 0
    for p, t in zip(pred, truth):
        P, T = ancestors_or_self(G, p, root), ancestors_or_self(G, t, root)
        inter += len(P & T)
        n_pred += len(P)
        n_true += len(T)
    hp = inter / n_pred if n_pred else 0.0
    hr = inter / n_true if n_true else 0.0
    return hp, hr, (2 * hp * hr / (hp + hr) if hp + hr else 0.0)


def node_heights(G: nx.DiGraph) -> dict[str, int]:
    """Longest distance from each node down to a leaf (leaves are 0)."""
    h: dict[str, int] = {}
    for n in reversed(list(nx.topological_sort(G))):
        h[n] = max((h[c] + 1 for c in G.successors(n)), default=0)
    return h


def node_depths(G: nx.DiGraph, root: str) -> dict[str, int]:
    """Shortest distance from the root."""
    return dict(nx.single_source_shortest_path_length(G, root))


def lca(G: nx.DiGraph, a: str, b: str, depths: dict[str, int]) -> str:
    """Deepest common ancestor-or-self of ``a`` and ``b``."""
    common = ({a} | nx.ancestors(G, a)) & ({b} | nx.ancestors(G, b))
    return max(common, key=lambda n: (depths[n], n))


def mistake_severity(G: nx.DiGraph, root: str, pred: Sequence[str], truth: Sequence[str]) -> float:
    """Mean height of the LCA of prediction and truth over the mistakes (Bertinetto et al.); 0 with none."""
    heights, depths = node_heights(G), node_depths(G, root)
    sev = [heights[lca(G, p, t, depths)] for p, t in zip(pred, truth) if p != t]
    return float(np.mean(sev)) if sev else 0.0


def level_accuracy(G: nx.DiGraph, root: str, pred: Sequence[str], truth: Sequence[str]) -> list[float]:
    """Accuracy at each depth 1..max: the prediction's node at that depth equals the truth's.

    A prediction that stopped above a depth counts as wrong there.  Depth is
    along the first-parent path (one route in a DAG).
    """
    def path(n: str) -> list[str]:
        out = [n]
        while True:
            ps = list(G.predecessors(out[-1]))
            if not ps:
                return out[::-1]
            out.append(ps[0])

    pp = [path(p) for p in pred]
    tp = [path(t) for t in truth]
    depth = max((len(t) for t in tp), default=1) - 1
    out = []
    for d in range(1, depth + 1):
        rows = [(p, t) for p, t in zip(pp, tp) if len(t) > d]
        out.append(float(np.mean([len(p) > d and p[d] == t[d] for p, t in rows])) if rows else float("nan"))
    return out
