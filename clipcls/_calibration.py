"""Temperature scaling and per-node thresholds, fitted on held-out labelled embeddings.

* **Temperature** (Guo et al., 2017): one scalar ``T`` divides every logit;
  it is fitted by minimising the negative log-likelihood of the true leaf
  under the chosen strategy (a bounded 1-D search over ``log T``).
* **Per-node thresholds** for a target precision: at each internal node,
  the smallest confidence at which the top-down decision among its children
  is right at least ``target`` of the time on the held-out data.  Below it
  the answer stops at that node.

Saved as JSON with a format version, the model fingerprint, the taxonomy
name and a sha256 of the payload; ``clipcls classify --calibration`` and
:func:`apply_calibration` use it.

>>> cal = fit_calibration(clf, X, leaf_ids, target_precision=0.95)   # doctest: +SKIP
>>> cal.save("shapes.calibration.json")                              # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from clipcls._errors import DataError, ProbeError
from clipcls._metrics import expected_calibration_error

if TYPE_CHECKING:
    from clipcls._classify import Classifier

FORMAT = 1
MIN_SUPPORT = 5  # decisions a node needs before it gets its own threshold


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature, optional per-node thresholds, and the ECE they were measured at."""

    temperature: float
    thresholds: dict[str, float] = field(default_factory=dict)
    strategy: str = "topdown"
    target_precision: float | None = None
    model: str = ""
    taxonomy: str = ""
    ece_before: float = float("nan")
    ece_after: float = float("nan")
    n: int = 0

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write JSON atomically, with a checksum of its content."""
        from clipcls._index import _atomic_write_bytes

        body = asdict(self)
        payload = json.dumps(body, sort_keys=True)
        doc = {"format": FORMAT, "sha256": hashlib.sha256(payload.encode()).hexdigest(), "calibration": body}
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_bytes(p, (json.dumps(doc, indent=2) + "\n").encode())
        return p


def load_calibration(path: str | os.PathLike[str], clf: Classifier | None = None) -> Calibration:
    """Read a calibration file; with ``clf``, check its model and taxonomy."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        body = doc["calibration"]
        if doc.get("format") != FORMAT:
            raise ProbeError(f"{p}: calibration format {doc.get('format')!r}, expected {FORMAT}")
        if hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest() != doc.get("sha256"):
            raise ProbeError(f"{p}: checksum mismatch: the calibration file is corrupt; run `clipcls calibrate` again")
        cal = Calibration(**body)
    except OSError as e:
        raise ProbeError(f"{p}: cannot read calibration file ({e.strerror or e})") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ProbeError(f"{p}: not a clipcls calibration file ({e})") from None
    if not (cal.temperature > 0 and math.isfinite(cal.temperature)):
        raise ProbeError(f"{p}: temperature must be a positive number")
    if clf is not None:
        if cal.model != clf.encoder.fingerprint:
            raise ProbeError(f"{p}: fitted for model fingerprint {cal.model}, not {clf.encoder.fingerprint}; "
                             "calibrate again for this model")
        if cal.taxonomy != clf.taxonomy.name:
            raise ProbeError(f"{p}: fitted for taxonomy {cal.taxonomy!r}, not {clf.taxonomy.name!r}")
    return cal


def _leaf_probabilities(clf: Classifier, X: np.ndarray, strategy: str) -> tuple[np.ndarray, list[str]]:
    """(N, leaves) probabilities under ``strategy`` with every leaf scored, and the leaf ids."""
    ct = clf._state.compiled
    n_leaves = len(ct.leaves)
    preds = clf.classify_embeddings(X, strategy=strategy, top_k=n_leaves, threshold=0.0)
    leaves = [ct.nodes[i] for i in ct.leaves]
    col = {n: j for j, n in enumerate(leaves)}
    P = np.zeros((len(X), n_leaves))
    for r, p in enumerate(preds):
        for s in p.top_k:
            P[r, col[s.id]] = s.score
    return P, leaves


def _nll(clf: Classifier, X: np.ndarray, y: np.ndarray, strategy: str) -> float:
    P, _ = _leaf_probabilities(clf, X, strategy)
    return float(-np.mean(np.log(P[np.arange(len(y)), y] + 1e-12)))


def ece_of(clf: Classifier, X: np.ndarray, leaf_ids: Sequence[str], strategy: str = "topdown") -> float:
    """ECE (15 bins) of the top leaf's probability against leaf correctness."""
    P, leaves = _leaf_probabilities(clf, X, strategy)
    y = np.array([leaves.index(t) for t in leaf_ids])
    return expected_calibration_error(P.max(1), P.argmax(1) == y)


def fit_temperature(clf: Classifier, X: np.ndarray, leaf_ids: Sequence[str], strategy: str = "topdown") -> float:
    """The temperature minimising the held-out NLL of the true leaf (golden-section search on log T)."""
    _, leaves = _leaf_probabilities(clf, X[:1], strategy)
    y = np.array([leaves.index(t) for t in leaf_ids])
    saved = clf.temperature
    lo, hi = math.log(0.05), math.log(20.0)
    phi = (math.sqrt(5) - 1) / 2

    def f(logt: float) -> float:
        clf.temperature = math.exp(logt)
        return _nll(clf, X, y, strategy)

    try:
        a, b = hi - phi * (hi - lo), lo + phi * (hi - lo)
        fa, fb = f(a), f(b)
        for _ in range(40):
            if fa < fb:
                hi, b, fb = b, a, fa
                a = hi - phi * (hi - lo)
                fa = f(a)
            else:
                lo, a, fa = a, b, fb
                b = lo + phi * (hi - lo)
                fb = f(b)
        return float(math.exp((lo + hi) / 2))
    finally:
        clf.temperature = saved


def fit_thresholds(clf: Classifier, X: np.ndarray, leaf_ids: Sequence[str], target: float) -> dict[str, float]:
    """Per internal node: the lowest confidence whose top-down decisions reach ``target`` precision.

    A decision at node ``u`` is right when the truth lies below the chosen
    child.  Nodes with fewer than :data:`MIN_SUPPORT` held-out decisions keep
    the global threshold.
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target precision must be in (0, 1], got {target!r}")
    G = clf.taxonomy.graph
    preds = clf.classify_embeddings(X, strategy="topdown", threshold=0.0)
    decisions: dict[str, list[tuple[float, bool]]] = {}
    for p, t in zip(preds, leaf_ids):
        truth_up = {t} | nx.ancestors(G, t)
        for u, c, s in zip(p.path, p.path[1:], p.path_scores[1:]):
            if u not in truth_up:
                break  # an earlier wrong turn: this node's decision is not about this image's truth
            decisions.setdefault(u, []).append((s, c in truth_up))
    out = {}
    for u, ds in decisions.items():
        if len(ds) < MIN_SUPPORT:
            continue
        ds.sort(key=lambda d: -d[0])
        right = np.cumsum([ok for _, ok in ds])
        prec = right / np.arange(1, len(ds) + 1)
        # The lowest score s such that decisions scoring >= s are at least `target` precise.
        ok = np.flatnonzero(prec >= target)
        out[u] = float(ds[int(ok.max())][0]) if len(ok) else 1.0
    return out


def fit_calibration(clf: Classifier, X: np.ndarray, leaf_ids: Sequence[str], *, strategy: str = "topdown",
                    target_precision: float | None = None) -> Calibration:
    """Fit a temperature (and thresholds for ``target_precision``) on held-out embeddings."""
    if len(X) != len(leaf_ids) or not len(X):
        raise DataError(f"calibration needs labelled embeddings; got {len(X)} embeddings, {len(leaf_ids)} labels")
    tax = clf.taxonomy
    for t in leaf_ids:
        if t not in tax or tax.children(t):
            raise DataError(f"calibration labels must be leaves of {tax.name!r}; {t!r} is not")
    before = ece_of(clf, X, leaf_ids, strategy)
    temp = fit_temperature(clf, X, leaf_ids, strategy)
    saved = clf.temperature
    try:
        clf.temperature = temp
        after = ece_of(clf, X, leaf_ids, strategy)
        thresholds = fit_thresholds(clf, X, leaf_ids, target_precision) if target_precision else {}
    finally:
        clf.temperature = saved
    return Calibration(temperature=temp, thresholds=thresholds, strategy=strategy, target_precision=target_precision,
                       model=clf.encoder.fingerprint, taxonomy=tax.name, ece_before=before, ece_after=after, n=len(X))


def apply_calibration(clf: Classifier, cal: Calibration) -> Classifier:
    """Serve ``cal``'s temperature and thresholds from ``clf``; returns ``clf``."""
    clf.temperature = cal.temperature
    clf.node_thresholds = dict(cal.thresholds)
    return clf.refresh()
