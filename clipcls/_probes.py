"""Linear probes on frozen image embeddings, one per internal node, blended with zero-shot.

Each internal node whose children have labelled images gets a probe over
those children: a top-down model, so each parent's decision among its
children gets sharper.  The recipe follows LP++ and WiSE-FT:

* a probe's logits are ``scale * x @ (T + D).T + b``: ``T`` are the
  children's zero-shot text embeddings and ``D`` starts at zero, so training
  starts from zero-shot.  An L2 penalty ``lam`` pulls the head back towards
  zero-shot (``prior="text"``, as LP++) or towards zero (``"zero"``, plain
  L2, better when the text knows nothing of the classes); both are in the
  searched grid :data:`LAMS`;
* the served head interpolates the zero-shot head and the trained one,
  ``T + alpha * D`` and ``alpha * b``;
* ``lam``, the number of steps (early stopping) and ``alpha`` are chosen by
  stratified k-fold cross-validation (held-out folds), then the probe is
  refitted on all examples.
  When no class has two examples to split, nothing can be held out and the
  documented defaults (:data:`DEFAULT_LAM`, :data:`DEFAULT_ALPHA`) are used;
  the probe's ``selection`` field says which happened;
* class imbalance: each example is weighted by ``n / (k * n_class)``
  (``balance=True``, the default), so every class counts equally;
* optional feature-level MixUp (``mixup=a`` draws ``Beta(a, a)``).

Single-label data gives softmax probes; multi-label data gives sigmoid
probes (one binary decision per child).  Children without labelled images
keep their zero-shot row, rescaled to the mean norm of the trained rows and
given their mean bias, so a class added after training competes fairly.
A head whose children have gained or lost descendants since training (a
class added further down) never saw those classes' images, so it is served
as zero-shot until the probes are trained again.

Probes are stored as one safetensors file whose metadata holds a JSON
description (format, model fingerprint, taxonomy name, per-node text hashes)
and a sha256 of the tensors; no pickle anywhere.

>>> probes = Probes(seed=0).fit(X, labels, clf)   # doctest: +SKIP
>>> clf.set_probes(probes)                        # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipcls._errors import DataError, NotFittedError, ProbeError

if TYPE_CHECKING:
    from clipcls._classify import Classifier

FORMAT = 1
DEFAULT_LAM = (1e-2, "text")
DEFAULT_ALPHA = 0.5
# (strength, centre): "text" pulls the head towards zero-shot (LP++), "zero" is plain L2.
LAMS: tuple[tuple[float, str], ...] = ((0.0, "text"), (1e-4, "text"), (1e-3, "text"), (1e-2, "text"), (1e-1, "text"),
                                       (1e-3, "zero"), (1e-2, "zero"), (1e-1, "zero"), (1.0, "zero"))
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class NodeProbe:
    """A fitted probe for the decision among ``children`` of ``parent``.

    ``delta`` and ``bias`` are the trained offsets (``alpha`` not applied);
    ``lam`` the L2 strength that pulled ``delta`` towards ``prior``;
    the served head is ``scale * x @ (T + alpha * delta).T + alpha * bias``.
    """

    parent: str
    children: tuple[str, ...]
    kind: str  # "softmax" or "sigmoid"
    delta: np.ndarray  # (k, d)
    bias: np.ndarray  # (k,)
    alpha: float
    lam: float
    prior: str  # what lam pulls towards: "text" (zero-shot) or "zero"
    steps: int
    selection: str  # "k-fold cross-validation" or "default (...)"
    n_train: int
    text_hashes: tuple[str, ...]  # of the children, when trained
    bias0: np.ndarray | None = None  # zero-shot sigmoid offsets (sigmoid probes only)
    subtrees: str = ""  # hash of the trained children's descendants (see subtree_hash)


def subtree_hash(tax: Any, children: Sequence[str]) -> str:
    """Hash of the node sets below ``children``: a head trained on one set is stale for another."""
    import networkx as nx

    h = hashlib.sha256()
    for c in children:
        h.update(json.dumps([c, sorted(nx.descendants(tax.graph, c))]).encode())
    return h.hexdigest()[:16]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def _balanced_accuracy(pred: np.ndarray, y: np.ndarray, k: int) -> float:
    recalls = [np.mean(pred[y == c] == c) for c in range(k) if np.any(y == c)]
    return float(np.mean(recalls)) if recalls else 0.0


def _fit_head(X: np.ndarray, Y: np.ndarray, w: np.ndarray, T: np.ndarray, scale: float, lam: float | tuple[float, str], kind: str,
              steps: int, rng: np.random.Generator, mixup: float, b0: np.ndarray,
              val: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, int, list[tuple[int, np.ndarray, np.ndarray]]]:
    """Adam on ``D`` and ``b``: weighted cross-entropy (or BCE) plus ``lam * |D|^2``.

    ``Y`` is one-hot (softmax) or multi-hot (sigmoid); ``w`` per-example
    weights.  With ``val`` the head is scored every 10 steps, and the
    snapshots are returned for early stopping.
    """
    k, d = T.shape
    lam, prior = lam if isinstance(lam, tuple) else (lam, "text")
    # The penalty pulls the head towards zero-shot ("text", LP++) or towards zero ("zero", plain L2).
    centre = T if prior == "zero" else 0.0
    # CLIP features share a large common component; optimising on centred
    # features is far better conditioned.  The bias absorbs the shift, and
    # the returned bias is relative to zero-shot again (see the end).
    mu = X.mean(0)
    X = X - mu
    if val is not None:
        val = (val[0] - mu, val[1])
    b0 = b0 + scale * (mu @ T.T)
    D = np.zeros((k, d), np.float64)
    b = np.zeros(k, np.float64)
    mD, vD, mb, vb = np.zeros_like(D), np.zeros_like(D), np.zeros_like(b), np.zeros_like(b)
    lr_d, lr_b, beta1, beta2, eps = 3e-2, 1e-1, 0.9, 0.999, 1e-8
    snaps: list[tuple[int, np.ndarray, np.ndarray]] = []
    # A few checkpoints, not dozens: with few held-out examples a fine grid
    # chooses noise (measured: 2-3 points worse at 16 shots).
    checkpoints = {max(1, steps // 8), max(1, steps // 4), max(1, steps // 2), steps}
    wsum = float(w.sum())
    for t in range(1, steps + 1):
        Xb, Yb, wb = X, Y, w
        if mixup > 0:
            lamb = rng.beta(mixup, mixup, size=(len(X), 1))
            perm = rng.permutation(len(X))
            Xb = lamb * X + (1 - lamb) * X[perm]
            Yb = lamb * Y + (1 - lamb) * Y[perm]
            wb = lamb[:, 0] * w + (1 - lamb[:, 0]) * w[perm]
        z = scale * Xb @ (T + D).T + b + b0
        P = _softmax(z) if kind == "softmax" else _sigmoid(z)
        G = (P - Yb) * (wb[:, None] / wsum)  # d loss / d z
        gD = scale * G.T @ Xb + 2 * lam * (D + centre)
        gb = G.sum(0)
        mD = beta1 * mD + (1 - beta1) * gD
        vD = beta2 * vD + (1 - beta2) * gD * gD
        mb = beta1 * mb + (1 - beta1) * gb
        vb = beta2 * vb + (1 - beta2) * gb * gb
        c1, c2 = 1 - beta1 ** t, 1 - beta2 ** t
        D -= lr_d * (mD / c1) / (np.sqrt(vD / c2) + eps)
        b -= lr_b * (mb / c1) / (np.sqrt(vb / c2) + eps)
        if val is not None and t in checkpoints:
            snaps.append((t, D.copy(), b - scale * (mu @ D.T)))
    return D, b - scale * (mu @ D.T), steps, snaps


def _score(X: np.ndarray, Y: np.ndarray, T: np.ndarray, D: np.ndarray, b: np.ndarray, b0: np.ndarray,
           scale: float, alpha: float, kind: str) -> tuple[float, float]:
    """(balanced accuracy, -loss) of the blended head on held-out examples: higher is better."""
    z = scale * X @ (T + alpha * D).T + alpha * b + b0
    if kind == "softmax":
        y = Y.argmax(1)
        P = _softmax(z)
        return _balanced_accuracy(P.argmax(1), y, Y.shape[1]), float(np.mean(np.log(P[np.arange(len(y)), y] + 1e-12)))
    P = _sigmoid(z)
    accs = [_balanced_accuracy((P[:, c] >= 0.5).astype(int), Y[:, c].astype(int), 2) for c in range(Y.shape[1])]
    ll = np.mean(Y * np.log(P + 1e-12) + (1 - Y) * np.log(1 - P + 1e-12))
    return float(np.mean(accs)), float(ll)


def _folds(y: np.ndarray, n_folds: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds; a class with a single example is never held out (it would vanish from training)."""
    fold = np.full(len(y), -1)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) >= 2:
            fold[idx] = np.arange(len(idx)) % n_folds
    out = []
    for f in range(n_folds):
        va = np.flatnonzero(fold == f)
        out.append((np.flatnonzero(fold != f), va))
    return out


class Probes:
    """Top-down linear probes for a classifier's taxonomy.

    Parameters
    ----------
    balance:
        Weight examples by inverse class frequency (default on).
    mixup:
        Feature-level MixUp strength (``Beta(mixup, mixup)``); 0 disables it.
    folds:
        Stratified cross-validation folds that choose ``lam``, steps and ``alpha``.
    steps:
        Most optimisation steps per probe (full batch, Adam).
    seed:
        Makes splits, MixUp and results deterministic.
    """

    def __init__(self, *, balance: bool = True, mixup: float = 0.0, folds: int = 5,
                 steps: int = 1000, seed: int = 0, lams: Sequence[float] = LAMS, alphas: Sequence[float] = ALPHAS) -> None:
        if folds < 2:
            raise ValueError(f"folds must be at least 2, got {folds!r}")
        if mixup < 0 or steps < 10:
            raise ValueError("mixup must be >= 0 and steps >= 10")
        self.balance = balance
        self.mixup = float(mixup)
        self.folds = int(folds)
        self.steps = int(steps)
        self.seed = int(seed)
        self.lams = tuple(lams)
        self.alphas = tuple(float(a) for a in alphas)
        if 1.0 not in self.alphas:
            raise ValueError("alphas must include 1.0 (the probe alone)")

    # -- fitting --------------------------------------------------------------------------
    def fit(self, X: np.ndarray, labels: Sequence[Sequence[str]], clf: Classifier) -> Probes:
        """Fit one probe per internal node whose children have labelled images; returns ``self``."""
        X = np.ascontiguousarray(X, np.float64)
        if X.ndim != 2 or len(X) != len(labels):
            raise DataError(f"got {len(X)} embeddings for {len(labels)} label rows")
        if not len(X):
            raise DataError("no labelled images to train probes on")
        tax = clf.taxonomy
        for ls in labels:
            for n in ls:
                if n not in tax:
                    raise DataError(f"label {n!r} is not a node of taxonomy {tax.name!r}")
        multilabel = any(len(ls) > 1 for ls in labels)
        import networkx as nx

        # Every node an image belongs to: its labels and all their ancestors.
        member = [set().union(*({n} | nx.ancestors(tax.graph, n) for n in ls)) for ls in labels]
        ct = clf._state.compiled
        rng = np.random.default_rng(self.seed)
        heads: list[NodeProbe] = []
        hashes = tax.text_hashes()
        scale = float(clf.encoder.logit_scale)  # the model's own scale; temperature applies at serving
        for parent in tax:
            kids = tax.children(parent)
            if not kids:
                continue
            rows = [i for i, m in enumerate(member) if parent in m or parent == tax.root]
            Y = np.array([[c in member[i] for c in kids] for i in rows], np.float64).reshape(len(rows), len(kids))
            have = Y.sum(0) > 0
            if multilabel:
                if have.sum() < 1:
                    continue
            else:
                keep = Y.sum(1) == 1  # images labelled at the parent itself say nothing about its children
                rows = [r for r, k in zip(rows, keep) if k]
                Y = Y[keep]
                if (Y.sum(0) > 0).sum() < 2:
                    continue
            trained = [c for c, h in zip(kids, Y.sum(0) > 0) if h]
            Y = Y[:, [kids.index(c) for c in trained]]
            T = ct.emb[[ct.index[c] for c in trained]].astype(np.float64)
            head = self._fit_node(parent, trained, X[rows], Y, T, scale, "sigmoid" if multilabel else "softmax",
                                  rng, tuple(hashes[c] for c in trained))
            heads.append(dataclasses.replace(head, subtrees=subtree_hash(tax, trained)))
        if not heads:
            raise DataError("no internal node has labelled images for two or more of its children; "
                            "label images with leaf classes of the taxonomy")
        self.heads_ = tuple(heads)
        self.model_fingerprint_ = clf.encoder.fingerprint
        self.taxonomy_name_ = tax.name
        self.scale_ = scale
        self.multilabel_ = multilabel
        self.parent_hashes_ = {h.parent: hashes[h.parent] for h in heads}
        self.class_counts_ = dict(sorted(Counter(n for ls in labels for n in ls).items()))
        return self

    def _fit_node(self, parent: str, children: list[str], X: np.ndarray, Y: np.ndarray, T: np.ndarray, scale: float,
                  kind: str, rng: np.random.Generator, text_hashes: tuple[str, ...]) -> NodeProbe:
        k = len(children)
        counts = Y.sum(0)
        if self.balance:
            if kind == "softmax":
                w = (len(Y) / (k * counts))[Y.argmax(1)]
            else:
                # Per example: the mean inverse frequency of its positive labels (1 when it has none).
                inv = len(Y) / (k * np.maximum(counts, 1))
                w = np.where(Y.sum(1) > 0, (Y * inv).sum(1) / np.maximum(Y.sum(1), 1), 1.0)
        else:
            w = np.ones(len(Y))
        b0 = np.zeros(k)
        if kind == "sigmoid":
            # Zero-shot offsets that put each child's decision at its mean similarity.
            b0 = -scale * (X @ T.T).mean(0)
        strat = Y.argmax(1) if kind == "softmax" else (Y * (1 + np.arange(k))).max(1).astype(int)
        folds = [(tr, va) for tr, va in _folds(strat, self.folds, rng)
                 if len(va) and len(np.unique(strat[tr])) >= min(2, k)]
        if folds:
            totals: dict[tuple[float, int, float], np.ndarray] = {}
            for lam in self.lams:
                for tr, va in folds:
                    _, _, _, snaps = _fit_head(X[tr], Y[tr], w[tr], T, scale, lam, kind, self.steps, rng, self.mixup,
                                               b0, val=(X[va], Y[va]))
                    for step, D, b in snaps:
                        for alpha in self.alphas:
                            key = (lam, step, alpha)
                            totals[key] = totals.get(key, 0.0) + np.array(_score(X[va], Y[va], T, D, b, b0, scale, alpha, kind))
            # First the probe itself (lam, steps, at alpha = 1), then the blend alpha for
            # it, each by mean held-out balanced accuracy.  Few held-out examples make
            # that coarse, and the log-likelihood would then pick barely trained heads
            # (the least confident), so ties go to the longer-trained head.
            def rank(key: tuple[float | tuple[float, str], int, float]) -> tuple[float, int, float]:
                return round(float(totals[key][0]), 6), key[1], float(totals[key][1])

            lam, steps, _ = max((k for k in totals if k[2] == 1.0), key=rank)
            alpha = max(self.alphas, key=lambda a: rank((lam, steps, a)))
            selection = f"{len(folds)}-fold cross-validation"
        else:
            lam, steps, alpha = DEFAULT_LAM, self.steps, DEFAULT_ALPHA
            selection = "default (too few examples to hold any out)"
        lam = lam if isinstance(lam, tuple) else (float(lam), "text")
        D, b, _, _ = _fit_head(X, Y, w, T, scale, lam, kind, steps, rng, self.mixup, b0)
        return NodeProbe(parent=parent, children=tuple(children), kind=kind, delta=D.astype(np.float32),
                         bias=b.astype(np.float32), alpha=float(alpha), lam=float(lam[0]), prior=str(lam[1]), steps=int(steps),
                         selection=selection, n_train=len(Y), text_hashes=text_hashes,
                         bias0=b0.astype(np.float32) if kind == "sigmoid" else None)

    def _check_fitted(self) -> None:
        if not hasattr(self, "heads_"):
            raise NotFittedError("these Probes are not fitted yet; call fit(...) or load_probes(...) first")

    def with_alpha(self, alpha: float) -> Probes:
        """A copy whose every head uses ``alpha`` (0: zero-shot, 1: the probe alone)."""
        self._check_fitted()
        import copy

        out = copy.copy(self)
        out.heads_ = tuple(dataclasses.replace(h, alpha=float(alpha)) for h in self.heads_)
        return out

    # -- storage --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write safetensors + JSON metadata (with a sha256 of the tensors), atomically."""
        self._check_fitted()
        from safetensors.numpy import save

        tensors: dict[str, np.ndarray] = {}
        nodes = []
        for i, h in enumerate(self.heads_):
            tensors[f"{i}.delta"] = np.ascontiguousarray(h.delta, np.float32)
            tensors[f"{i}.bias"] = np.ascontiguousarray(h.bias, np.float32)
            if h.bias0 is not None:
                tensors[f"{i}.bias0"] = np.ascontiguousarray(h.bias0, np.float32)
            nodes.append({"parent": h.parent, "children": list(h.children), "kind": h.kind, "alpha": h.alpha,
                          "lam": h.lam, "prior": h.prior, "steps": h.steps, "selection": h.selection, "n_train": h.n_train,
                          "text_hashes": list(h.text_hashes), "subtrees": h.subtrees, "parent_hash": self.parent_hashes_[h.parent]})
        meta = {"format": FORMAT, "model": self.model_fingerprint_, "taxonomy": self.taxonomy_name_,
                "scale": self.scale_, "multilabel": self.multilabel_, "nodes": nodes, "class_counts": self.class_counts_,
                "settings": {"balance": self.balance, "mixup": self.mixup, "folds": self.folds,
                             "steps": self.steps, "seed": self.seed},
                "sha256": _tensor_digest(tensors)}
        data = save(tensors, metadata={"clipcls": json.dumps(meta)})
        from clipcls._index import _atomic_write_bytes

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_bytes(p, data)
        return p


def _tensor_digest(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(np.ascontiguousarray(tensors[k]).tobytes())
    return h.hexdigest()


def load_probes(path: str | os.PathLike[str], clf: Classifier | None = None) -> Probes:
    """Read a probes file; with ``clf``, check it was trained for that model and taxonomy."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ProbeError(f"{p}: cannot read probes file ({e.strerror or e})") from None
    try:
        tensors = load(data)
        from safetensors import safe_open  # metadata lives in the header

        with safe_open(str(p), "np") as f:
            raw = (f.metadata() or {}).get("clipcls")
        meta: dict[str, Any] = json.loads(raw) if raw else {}
    except (SafetensorError, ValueError, OSError) as e:
        raise ProbeError(f"{p}: not a clipcls probes file or corrupt ({e})") from None
    if meta.get("format") != FORMAT:
        raise ProbeError(f"{p}: not a clipcls probes file of format {FORMAT} (got {meta.get('format')!r})")
    if meta.get("sha256") != _tensor_digest(tensors):
        raise ProbeError(f"{p}: checksum mismatch: the file is corrupt; train the probes again")
    try:
        probes = Probes(**meta["settings"])
        heads = []
        for i, n in enumerate(meta["nodes"]):
            heads.append(NodeProbe(
                parent=n["parent"], children=tuple(n["children"]), kind=n["kind"], delta=tensors[f"{i}.delta"],
                bias=tensors[f"{i}.bias"], alpha=float(n["alpha"]), lam=float(n["lam"]), prior=str(n["prior"]), steps=int(n["steps"]),
                selection=n["selection"], n_train=int(n["n_train"]), text_hashes=tuple(n["text_hashes"]),
                bias0=tensors.get(f"{i}.bias0"), subtrees=str(n.get("subtrees", ""))))
        probes.heads_ = tuple(heads)
        probes.model_fingerprint_ = meta["model"]
        probes.taxonomy_name_ = meta["taxonomy"]
        probes.scale_ = float(meta["scale"])
        probes.multilabel_ = bool(meta["multilabel"])
        probes.parent_hashes_ = {n["parent"]: n["parent_hash"] for n in meta["nodes"]}
        probes.class_counts_ = {str(k): int(v) for k, v in meta.get("class_counts", {}).items()}
    except (KeyError, TypeError, ValueError) as e:
        raise ProbeError(f"{p}: malformed probes metadata ({e})") from None
    if clf is not None:
        check_compatible(probes, clf, str(p))
    return probes


def check_compatible(probes: Probes, clf: Classifier, where: str = "probes") -> None:
    """Raise :class:`ProbeError` unless ``probes`` fit ``clf``'s model and taxonomy."""
    probes._check_fitted()
    if probes.model_fingerprint_ != clf.encoder.fingerprint:
        raise ProbeError(f"{where}: trained on model fingerprint {probes.model_fingerprint_}, but the classifier uses "
                         f"{clf.encoder.name} ({clf.encoder.fingerprint}); train probes for this model")
    tax = clf.taxonomy
    if probes.taxonomy_name_ != tax.name:
        raise ProbeError(f"{where}: trained for taxonomy {probes.taxonomy_name_!r}, not {tax.name!r}")
    hashes = tax.text_hashes()
    for h in probes.heads_:
        if h.parent not in tax:
            raise ProbeError(f"{where}: node {h.parent!r} is no longer in taxonomy {tax.name!r}; train the probes again")
        kids = set(tax.children(h.parent))
        for c, th in zip(h.children, h.text_hashes):
            if c not in kids:
                raise ProbeError(f"{where}: {c!r} is no longer a child of {h.parent!r}; train the probes again")
            if hashes[c] != th:
                raise ProbeError(f"{where}: the prompts of {c!r} changed since the probes were trained; train them again")


def serving_head(h: NodeProbe, children: Sequence[str], emb: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) over all current ``children`` of ``h.parent``; logits are ``x @ W.T + b``.

    Untrained children keep their zero-shot direction, rescaled to the mean
    norm of the trained rows and given their mean bias: a class added after
    training competes at a fair scale.
    """
    trained = {c: i for i, c in enumerate(h.children)}
    T = emb
    W = np.empty_like(T, dtype=np.float32)
    b = np.empty(len(children), np.float32)
    rows_t = [trained[c] for c in children if c in trained]
    pos_t = [j for j, c in enumerate(children) if c in trained]
    Wt = scale * (T[pos_t] + h.alpha * h.delta[rows_t])
    bt = h.alpha * h.bias[rows_t] + (h.bias0[rows_t] if h.bias0 is not None else 0.0)
    W[pos_t], b[pos_t] = Wt, bt
    rest = [j for j, c in enumerate(children) if c not in trained]
    if rest:
        norm = float(np.linalg.norm(Wt, axis=1).mean())
        W[rest] = T[rest] * norm
        b[rest] = float(bt.mean())
    return W, b


def train_probes(clf: Classifier, data: str | os.PathLike[str], **settings: Any) -> tuple[Probes, dict[str, Any]]:
    """Load labelled data (folder or manifest), embed it through the cache, fit :class:`Probes`.

    Returns the fitted probes and a short report (examples, classes, images encoded).
    """
    from clipcls._data import load_labelled

    ds = load_labelled(data, clf.taxonomy)
    X = clf.embed_files(ds.paths)
    probes = Probes(**settings).fit(X, ds.labels, clf)
    report = {"images": len(ds), "encoded": clf.last_images_encoded, "classes": len(ds.counts()),
              "multilabel": ds.multilabel, "heads": [
                  {"parent": h.parent, "children": len(h.children), "n": h.n_train, "alpha": h.alpha, "lam": f"{h.lam:g} ({h.prior})",
                   "steps": h.steps, "selection": h.selection} for h in probes.heads_]}
    return probes, report
