"""Evaluate a classifier on labelled embeddings: every strategy side by side, plus the report's data.

>>> rep = evaluate(clf, X, labels, paths=ds.paths)   # doctest: +SKIP
>>> print(rep.table())                              # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np

from clipcls import _metrics as M
from clipcls._errors import DataError

if TYPE_CHECKING:
    from clipcls._classify import Classifier

# (table name, strategy, beam, how the leaf answer is read)
COMPARED: tuple[tuple[str, str, int], ...] = (
    ("flat", "flat", 1),
    ("topdown greedy", "topdown", 1),
    ("topdown beam 3", "topdown", 3),
    ("bottom-up", "bottomup", 1),
    ("CHiLS", "chils", 1),
    ("hybrid", "hybrid", 1),
)
# Short names for ``evaluate(strategies=...)`` and ``clipcls eval --strategy``.
SHORT_NAMES = {"flat": "flat", "topdown": "topdown greedy", "beam": "topdown beam 3", "bottomup": "bottom-up",
               "chils": "CHiLS", "hybrid": "hybrid"}
COVERAGE_THRESHOLDS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


@dataclass(frozen=True)
class StrategyResult:
    """Flat and hierarchical metrics of one strategy; ``top5`` is None with fewer than 5 leaves."""

    name: str
    top1: float
    top5: float | None
    balanced: float
    levels: tuple[float, ...]
    h_precision: float
    h_recall: float
    h_f1: float
    severity: float
    ms_per_image: float


@dataclass(frozen=True)
class CoveragePoint:
    """Top-down at one threshold: share answered at a leaf, their accuracy, and the stopped ones' accuracy."""

    threshold: float
    coverage: float
    leaf_accuracy: float
    stopped_correct: float


@dataclass(frozen=True)
class EvalReport:
    """Everything ``clipcls eval`` prints and draws."""

    n: int
    taxonomy: str
    model: str
    strategies: tuple[StrategyResult, ...]
    coverage: tuple[CoveragePoint, ...]
    ece: float
    reliability: M.ReliabilityBins
    confusion_labels: tuple[str, ...]
    confusion: np.ndarray
    confusion_level: str
    node_recall: Mapping[str, float]
    node_support: Mapping[str, int]
    worst_pairs: tuple[tuple[str, str, int, tuple[str, ...]], ...]
    warnings: tuple[str, ...]
    multilabel: Mapping[str, Any] | None = None
    ece_calibrated: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        """The strategies side by side, as a Markdown table (percentages; severity in levels)."""
        head = ("| strategy | top-1 | top-5 | balanced acc | " + " | ".join(f"level {i + 1}" for i in range(len(self.strategies[0].levels)))
                + " | hier. F1 | mistake severity | ms / image |")
        sep = "|" + "---|" * (head.count("|") - 1)
        rows = [head, sep]
        for s in self.strategies:
            top5 = "-" if s.top5 is None else f"{100 * s.top5:.1f}"
            lv = " | ".join(f"{100 * v:.1f}" for v in s.levels)
            rows.append(f"| {s.name} | {100 * s.top1:.1f} | {top5} | {100 * s.balanced:.1f} | {lv} | "
                        f"{100 * s.h_f1:.1f} | {s.severity:.2f} | {s.ms_per_image:.3f} |")
        return "\n".join(rows)


def _leaf_matrix(clf: Classifier, preds: Sequence[Any], leaves: list[str]) -> np.ndarray:
    col = {n: j for j, n in enumerate(leaves)}
    P = np.zeros((len(preds), len(leaves)))
    for r, p in enumerate(preds):
        for s in p.top_k:
            P[r, col[s.id]] = s.score
    return P


def _run(clf: Classifier, X: np.ndarray, strategy: str, beam: int, n_leaves: int) -> tuple[list[Any], float]:
    # A first call on a few rows, so one-time costs do not land on whichever strategy runs first.
    clf.classify_embeddings(X[:8], strategy="flat" if strategy == "bottomup" else strategy, beam=beam)  # type: ignore[arg-type]
    times = []
    for _ in range(3):  # median of three: these machines are shared and noisy
        t0 = time.perf_counter()
        preds = clf.classify_embeddings(X, strategy="flat" if strategy == "bottomup" else strategy,  # type: ignore[arg-type]
                                        beam=beam, top_k=n_leaves, threshold=0.0)
        times.append(time.perf_counter() - t0)
    return preds, 1000 * float(np.median(times)) / max(len(X), 1)


def evaluate(clf: Classifier, X: np.ndarray, labels: Sequence[Sequence[str]], *, paths: Sequence[str] | None = None,
             train_counts: Mapping[str, int] | None = None, level: int | None = None,
             calibrated_temperature: float | None = None, strategies: Sequence[str] | None = None) -> EvalReport:
    """Measure ``clf`` on labelled embeddings ``X``.

    ``strategies`` restricts the table to those of :data:`SHORT_NAMES`
    (or their table names; default: all); top-down greedy always runs,
    since the calibration and coverage figures are about it.

    Single-label data must be labelled with leaves.  ``train_counts`` (from a
    probe file) enables the distribution-shift check; ``level`` collapses the
    confusion matrix to that depth (default: leaves, or depth 1 past 30 leaves).
    """
    tax = clf.taxonomy
    G, root = tax.graph, tax.root
    if len(X) != len(labels) or not len(X):
        raise DataError(f"evaluation needs labelled images; got {len(X)} embeddings and {len(labels)} labels")
    multilabel = any(len(ls) > 1 for ls in labels)
    ct = clf._state.compiled
    leaves = [ct.nodes[i] for i in ct.leaves]
    warnings = _validate(tax, labels, train_counts, leaves)
    ml = None
    if multilabel:
        ml = _multilabel(clf, X, labels)
    truth = [ls[0] for ls in labels]  # multi-label data: strategies are compared on each image's first label
    bad = [t for t in set(truth) if t not in leaves]
    if bad and not multilabel:
        raise DataError(f"single-label evaluation needs leaf labels; {sorted(bad)[:5]} are internal nodes of {tax.name!r}")
    y = np.array([leaves.index(t) if t in leaves else -1 for t in truth])
    keep = y >= 0
    X, y, truth = X[keep], y[keep], [t for t, k in zip(truth, keep) if k]
    paths = [p for p, k in zip(paths, keep) if k] if paths is not None else None
    unknown = sorted(set(strategies or ()) - set(SHORT_NAMES) - set(SHORT_NAMES.values()))
    if unknown:
        raise ValueError(f"unknown strategy name(s) {unknown}; choose from {', '.join(SHORT_NAMES)}")
    wanted = {SHORT_NAMES.get(s, s) for s in strategies or SHORT_NAMES} | {"topdown greedy"}
    results = []
    main_preds = None
    for name, strategy, beam in (c for c in COMPARED if c[0] in wanted):
        preds, ms = _run(clf, X, strategy, beam, len(leaves))
        P = _leaf_matrix(clf, preds, leaves)
        # flat answers with its top leaf; bottom-up descends the summed scores from the root.
        answer = [leaves[j] for j in P.argmax(1)] if strategy == "flat" else [p.node for p in preds]
        if name == "topdown greedy":
            main_preds = (preds, P, answer)
        pred_idx = np.array([leaves.index(a) if a in leaves else -1 for a in answer])
        hp, hr, hf = M.hierarchical_prf(G, root, answer, truth)
        results.append(StrategyResult(
            name=name, top1=float(np.mean(pred_idx == y)),
            top5=M.topk_accuracy(P, y, 5) if len(leaves) >= 5 else None,
            balanced=M.mean_per_class_recall(pred_idx, y), levels=tuple(M.level_accuracy(G, root, answer, truth)),
            h_precision=hp, h_recall=hr, h_f1=hf, severity=M.mistake_severity(G, root, answer, truth), ms_per_image=ms))
    preds, P, answer = main_preds  # type: ignore[misc]  # top-down greedy always runs
    correct = np.array([a == t for a, t in zip(answer, truth)])
    conf = np.array([p.confidence for p in preds])
    ece = M.expected_calibration_error(conf, correct)
    rel = M.reliability_bins(conf, correct)
    ece_cal = None
    if calibrated_temperature is not None:
        saved = clf.temperature
        try:
            clf.temperature = calibrated_temperature
            cp = clf.classify_embeddings(X, strategy="topdown", threshold=0.0)
            ece_cal = M.expected_calibration_error(np.array([p.confidence for p in cp]),
                                                   np.array([p.node == t for p, t in zip(cp, truth)]))
        finally:
            clf.temperature = saved
    coverage = _coverage(clf, X, truth)
    labels_c, matrix, lvl = _confusion(tax, answer, truth, leaves, level)
    recall, support = _node_recall(tax, preds, truth)
    worst = _worst_pairs(answer, truth, paths)
    return EvalReport(
        n=len(X), taxonomy=tax.name, model=clf.encoder.name, strategies=tuple(results), coverage=coverage, ece=ece,
        reliability=rel, confusion_labels=labels_c, confusion=matrix, confusion_level=lvl, node_recall=recall,
        node_support=support, worst_pairs=worst, warnings=tuple(warnings), multilabel=ml, ece_calibrated=ece_cal)


def _validate(tax: Any, labels: Sequence[Sequence[str]], train_counts: Mapping[str, int] | None,
              leaves: list[str]) -> list[str]:
    counts = Counter(n for ls in labels for n in ls)
    out = []
    missing = [n for n in leaves if counts.get(n, 0) == 0]
    if missing:
        out.append(f"{len(missing)} class(es) have no examples in the evaluation data: {', '.join(missing[:10])}"
                   + (" ..." if len(missing) > 10 else ""))
    if train_counts:
        n_eval, n_train = sum(counts.values()), sum(train_counts.values())
        for c in sorted(set(counts) | set(train_counts)):
            pe, pt = counts.get(c, 0) / max(n_eval, 1), train_counts.get(c, 0) / max(n_train, 1)
            if pt == 0 and pe > 0:
                out.append(f"class {c!r} is {100 * pe:.1f}% of the evaluation data but absent from the probe training data")
            elif pe > 0 and (pe / pt > 3 or pt / pe > 3):
                out.append(f"class {c!r} is {100 * pe:.1f}% of the evaluation data but {100 * pt:.1f}% of the probe "
                           "training data: accuracy here may not transfer")
    return out


def _coverage(clf: Classifier, X: np.ndarray, truth: Sequence[str]) -> tuple[CoveragePoint, ...]:
    G = clf.taxonomy.graph
    up = {t: {t} | nx.ancestors(G, t) for t in set(truth)}
    out = []
    for thr in COVERAGE_THRESHOLDS:
        preds = clf.classify_embeddings(X, strategy="topdown", threshold=thr, top_k=1)
        leaf = [p.stopped_at is None for p in preds]
        at_leaf = [p.node == t for p, t, lf in zip(preds, truth, leaf) if lf]
        stopped = [p.node in up[t] for p, t, lf in zip(preds, truth, leaf) if not lf]
        out.append(CoveragePoint(thr, float(np.mean(leaf)), float(np.mean(at_leaf)) if at_leaf else float("nan"),
                                 float(np.mean(stopped)) if stopped else float("nan")))
    return tuple(out)


def _at_depth(tax: Any, node: str, depth: int) -> str:
    path = tax.path(node)
    return path[min(depth, len(path) - 1)]


def _confusion(tax: Any, answer: Sequence[str], truth: Sequence[str], leaves: list[str],
               level: int | None) -> tuple[tuple[str, ...], np.ndarray, str]:
    if level is None and len(leaves) > 30:
        level = 1
    if level is None:
        names = leaves
        a, t = list(answer), list(truth)
        what = "leaves"
    else:
        a = [_at_depth(tax, n, level) for n in answer]
        t = [_at_depth(tax, n, level) for n in truth]
        names = sorted(set(a) | set(t), key=lambda n: list(tax.graph).index(n))
        what = f"depth {level}"
    idx = {n: i for i, n in enumerate(names)}
    m = np.zeros((len(names), len(names)), np.int64)
    for p, q in zip(t, a):
        m[idx[p], idx[q]] += 1
    return tuple(names), m, what


def _node_recall(tax: Any, preds: Sequence[Any], truth: Sequence[str]) -> tuple[dict[str, float], dict[str, int]]:
    """Per node: of the images whose truth lies at or below it, the share whose predicted path passes it."""
    G = tax.graph
    hit: Counter[str] = Counter()
    support: Counter[str] = Counter()
    for p, t in zip(preds, truth):
        on_path = set(p.path)
        for u in {t} | nx.ancestors(G, t):
            support[u] += 1
            hit[u] += u in on_path
    return {u: hit[u] / support[u] for u in support}, dict(support)


def _worst_pairs(answer: Sequence[str], truth: Sequence[str], paths: Sequence[str] | None,
                 k: int = 6, examples: int = 3) -> tuple[tuple[str, str, int, tuple[str, ...]], ...]:
    pairs: Counter[tuple[str, str]] = Counter((t, a) for a, t in zip(answer, truth) if a != t)
    out = []
    for (t, a), n in pairs.most_common(k):
        ex = tuple(p for p, aa, tt in zip(paths or [], answer, truth) if aa == a and tt == t)[:examples]
        out.append((t, a, n, ex))
    return tuple(out)


def _multilabel(clf: Classifier, X: np.ndarray, labels: Sequence[Sequence[str]]) -> dict[str, Any]:
    tax = clf.taxonomy
    nodes = [n for n in tax if n != tax.root]
    truth = np.zeros((len(X), len(nodes)), bool)
    col = {n: j for j, n in enumerate(nodes)}
    for r, ls in enumerate(labels):
        for n in ls:
            for u in ({n} | nx.ancestors(tax.graph, n)) - {tax.root}:
                truth[r, col[u]] = True
    ct = clf._state.compiled
    preds = clf.classify_embeddings(X, strategy="multilabel", threshold=0.0)
    scores = np.zeros_like(truth, dtype=np.float64)
    for r, p in enumerate(preds):
        for s in p.labels:
            scores[r, col[s.id]] = s.score
    thr = np.array([0.5 if np.isnan(ct.thresholds[ct.index[n]]) else ct.thresholds[ct.index[n]] for n in nodes])
    m = M.multilabel_metrics(scores, truth, thr)
    m["nodes"] = nodes
    return m
