"""The :class:`Classifier`: a taxonomy, a model, cached prompt embeddings.

>>> import clipcls
>>> clf = clipcls.Classifier("taxonomies/shapes.yaml")            # doctest: +SKIP
>>> [p.label for p in clf.classify(["samples/red_star.png"])]      # doctest: +SKIP
['star']
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image

from clipcls import _strategies as S
from clipcls._encoder import Encoder, OpenClipEncoder
from clipcls._errors import ImageError
from clipcls._images import ImageSource, describe, load_image
from clipcls._index import SyncStats, TextIndex
from clipcls._taxonomy import Node, Taxonomy, load_taxonomy, save_taxonomy

log = logging.getLogger("clipcls")

Strategy = Literal["topdown", "flat", "multilabel"]
STRATEGIES: tuple[str, ...] = ("topdown", "flat", "multilabel")


@dataclass(frozen=True)
class ScoredNode:
    """A node and its score."""

    id: str
    label: str
    score: float


@dataclass(frozen=True)
class Prediction:
    """The answer for one image.

    ``node``/``label`` is the deepest node the strategy is confident in;
    ``path`` runs from the root to it with one score per level
    (``path_scores``).  ``stopped_at`` is set when the answer stopped above
    the leaves because the next decision was below the threshold.
    ``labels`` holds every accepted node under ``multilabel``.
    """

    image: str
    node: str | None
    label: str | None
    path: tuple[str, ...]
    path_scores: tuple[float, ...]
    confidence: float
    top_k: tuple[ScoredNode, ...]
    strategy: str
    stopped_at: str | None = None
    labels: tuple[ScoredNode, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready row: the CLI's JSONL schema."""
        d: dict[str, Any] = {"image": self.image}
        if self.error is not None:
            d["error"] = self.error
            return d
        d.update(
            label=self.label, node=self.node, path=list(self.path),
            path_scores=[round(s, 6) for s in self.path_scores], confidence=round(self.confidence, 6),
            stopped_at=self.stopped_at,
            top_k=[{"id": s.id, "label": s.label, "score": round(s.score, 6)} for s in self.top_k],
            strategy=self.strategy, metadata=dict(self.metadata),
        )
        if self.strategy == "multilabel":
            d["labels"] = [{"id": s.id, "label": s.label, "score": round(s.score, 6)} for s in self.labels]
        return d


@dataclass(frozen=True)
class _State:
    """An immutable snapshot: readers take it once, writers swap it whole."""

    taxonomy: Taxonomy
    compiled: S.CompiledTaxonomy
    labels: tuple[str, ...]
    metadata: tuple[Mapping[str, Any], ...]


class Classifier:
    """Zero-shot hierarchical classification of images against a taxonomy.

    Parameters
    ----------
    taxonomy:
        A :class:`Taxonomy` or the path of a taxonomy file.
    model, pretrained:
        Any model :class:`OpenClipEncoder` accepts; default: the embedded model.
    encoder:
        An already built encoder (shared between classifiers).
    cache_dir:
        Where the FAISS text index lives (default ``$CLIPCLS_CACHE`` or
        ``~/.cache/clipcls``).
    temperature:
        Divides the model's logit scale; fitted by ``clipcls calibrate``.
    multilabel_bias:
        Offset of the multilabel sigmoid (see :mod:`clipcls._strategies`).
    """

    def __init__(
        self,
        taxonomy: Taxonomy | str | os.PathLike[str],
        model: str | os.PathLike[str] | None = None,
        pretrained: str | os.PathLike[str] | None = None,
        *,
        encoder: Encoder | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        batch_size: int = 64,
        workers: int = 4,
        temperature: float = 1.0,
        multilabel_bias: float = 1.0,
        persist: bool = True,
    ) -> None:
        tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
        self.encoder: Encoder = encoder if encoder is not None else OpenClipEncoder(model, pretrained, batch_size=batch_size)
        self.batch_size = int(batch_size)
        self.workers = max(1, int(workers))
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        self.temperature = float(temperature)
        self.multilabel_bias = float(multilabel_bias)
        self.index = TextIndex(cache_dir, model_fingerprint=self.encoder.fingerprint, dim=self.encoder.embed_dim, name=tax.name)
        self._persist = persist
        self._write_lock = threading.Lock()
        self.last_sync: SyncStats | None = None
        self._state = self._build(tax.copy())

    # -- state ----------------------------------------------------------------------------
    @property
    def taxonomy(self) -> Taxonomy:
        """The current taxonomy (a snapshot; edit through add/remove/rename_class)."""
        return self._state.taxonomy

    @property
    def scale(self) -> float:
        return self.encoder.logit_scale / self.temperature

    def _build(self, tax: Taxonomy) -> _State:
        nodes = list(tax.graph)
        self.last_sync = self.index.sync({n: tax.texts(n) for n in nodes}, self.encoder.encode_texts, persist=self._persist)
        thresholds = np.array([np.nan if tax.node(n).threshold is None else tax.node(n).threshold for n in nodes], np.float32)
        ct = S.compile_taxonomy(tax.graph, tax.root, self.index.matrix(nodes), nodes, thresholds)
        return _State(tax, ct, tuple(tax.node(n).label for n in nodes), tuple(tax.node(n).metadata for n in nodes))

    def _edit(self, change: Any, save: bool) -> Any:
        with self._write_lock:
            tax = self._state.taxonomy.copy()
            result = change(tax)
            state = self._build(tax)
            if save and tax.source is not None:
                save_taxonomy(tax)
            self._state = state  # one reference swap: readers see old or new, never a mix
            return result

    def add_class(self, node_id: str, parent: str | Sequence[str], *, label: str | None = None,
                  synonyms: Sequence[str] | None = None, prompts: Sequence[str] | None = None,
                  description: str | None = None, threshold: float | None = None,
                  metadata: Mapping[str, Any] | None = None, save: bool = True) -> Node:
        """Add a class without retraining: only its prompts are encoded.

        ``save`` writes the taxonomy file back (when it came from one).
        """
        fields = dict(label=label, synonyms=list(synonyms) if synonyms else None, prompts=list(prompts) if prompts else None,
                      description=description, threshold=threshold, metadata=dict(metadata) if metadata else None)
        return self._edit(lambda t: t.add_node(node_id, parent, **fields), save)

    def remove_class(self, node_id: str, save: bool = True) -> list[str]:
        """Remove a class (and descendants left without a parent); returns removed ids."""
        return self._edit(lambda t: t.remove_node(node_id), save)

    def rename_class(self, node_id: str, *, label: str | None = None, synonyms: Sequence[str] | None = None,
                     prompts: Sequence[str] | None = None, save: bool = True) -> Node:
        """Change a class's label, synonyms or prompts; only that node is re-encoded."""
        return self._edit(lambda t: t.update_node(node_id, label=label, synonyms=list(synonyms) if synonyms is not None else None,
                                                  prompts=list(prompts) if prompts is not None else None), save)

    # -- images ---------------------------------------------------------------------------
    def _decoded(self, sources: Iterable[ImageSource]) -> Iterator[tuple[str, Any, str | None]]:
        """(name, preprocessed tensor or None, error) per source, decoded in parallel, in order."""
        pre = getattr(self.encoder, "preprocess", None)

        def work(src: ImageSource) -> tuple[str, Any, str | None]:
            name = describe(src)
            try:
                img = load_image(src)
                return name, (pre(img) if pre is not None else img), None
            except ImageError as e:
                return name, None, str(e)

        it = iter(sources)
        with ThreadPoolExecutor(self.workers) as pool:
            # A bounded window of futures: streams any number of inputs in O(window) memory.
            window: list[Any] = []
            for src in it:
                window.append(pool.submit(work, src))
                if len(window) >= self.batch_size * 2:
                    yield window.pop(0).result()
            for fut in window:
                yield fut.result()

    def _encode(self, items: list[Any]) -> np.ndarray:
        # Preprocessed tensors skip a second preprocess; note torch.Tensor has a
        # ``.mode`` method, so only an isinstance check tells images apart.
        if hasattr(self.encoder, "encode_pixels") and items and not isinstance(items[0], Image.Image):
            import torch

            return self.encoder.encode_pixels(torch.stack(items))  # type: ignore[attr-defined]
        return self.encoder.encode_images(items)

    def embed(self, images: Iterable[ImageSource]) -> np.ndarray:
        """L2-normalised image embeddings; raises :class:`ImageError` on the first bad image."""
        items = []
        for name, item, err in self._decoded(images):
            if err is not None:
                raise ImageError(err)
            items.append(item)
        out = [self._encode(items[i:i + self.batch_size]) for i in range(0, len(items), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.encoder.embed_dim), np.float32)

    def iter_classify(self, images: Iterable[ImageSource], *, on_error: Literal["raise", "record"] = "raise",
                      **kw: Any) -> Iterator[Prediction]:
        """Stream predictions in input order, batch by batch.

        With ``on_error="record"`` an unreadable image yields a
        :class:`Prediction` whose ``error`` says why, and the run goes on.
        """
        batch: list[tuple[str, Any, str | None]] = []

        def flush() -> Iterator[Prediction]:
            good = [(n, it) for n, it, e in batch if e is None]
            preds = iter(self.classify_embeddings(self._encode([it for _, it in good]), names=[n for n, _ in good], **kw)) if good else iter(())
            for n, _, e in batch:
                yield next(preds) if e is None else _error_prediction(n, e, kw.get("strategy", "topdown"))

        for row in self._decoded(images):
            if row[2] is not None and on_error == "raise":
                raise ImageError(row[2])
            batch.append(row)
            if len(batch) >= self.batch_size:
                yield from flush()
                batch = []
        if batch:
            yield from flush()

    def classify(self, images: ImageSource | Iterable[ImageSource], **kw: Any) -> list[Prediction]:
        """Classify images (paths, bytes or PIL images); see :meth:`classify_embeddings` for options."""
        if isinstance(images, (str, bytes, os.PathLike, Image.Image)):
            images = [images]  # type: ignore[list-item]
        return list(self.iter_classify(images, **kw))  # type: ignore[arg-type]

    # -- the strategies ------------------------------------------------------------------
    def classify_embeddings(
        self,
        embeddings: np.ndarray,
        *,
        names: Sequence[str] | None = None,
        strategy: Strategy = "topdown",
        threshold: float | None = None,
        top_k: int = 5,
        beam: int = 1,
    ) -> list[Prediction]:
        """Classify L2-normalised image embeddings (N, D).

        ``threshold`` (default 0 for top-down and flat, 0.5 for multilabel)
        is the score a decision needs; below it the answer stops at the
        parent.  A node's own ``threshold`` overrides it for the decision
        among that node's children.  ``beam`` > 1 searches top-down paths by
        joint probability.
        """
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if threshold is not None and not (0.0 <= threshold <= 1.0):
            raise ValueError(f"threshold must be between 0 and 1, got {threshold!r}")
        if top_k < 1 or beam < 1:
            raise ValueError("top_k and beam must be at least 1")
        X = np.ascontiguousarray(embeddings, np.float32)
        if X.ndim != 2 or X.shape[1] != self.encoder.embed_dim:
            raise ValueError(f"embeddings must have shape (N, {self.encoder.embed_dim}), got {X.shape}")
        st = self._state
        ct = st.compiled
        names = list(names) if names is not None else [f"#{i}" for i in range(len(X))]
        thr = (0.5 if strategy == "multilabel" else 0.0) if threshold is None else float(threshold)
        out: list[Prediction] = []
        step = S.chunk_size(ct)
        for lo in range(0, len(X), step):
            out.extend(self._classify_chunk(st, X[lo:lo + step], names[lo:lo + step], strategy, thr, top_k, beam))
        return out

    def _classify_chunk(self, st: _State, X: np.ndarray, names: Sequence[str], strategy: str, thr: float,
                        top_k: int, beam: int) -> list[Prediction]:
        ct = st.compiled
        sims = X @ ct.emb.T
        scale = self.scale
        labels_out: list[tuple[ScoredNode, ...]] = [() for _ in range(len(X))]
        if strategy == "flat":
            p_leaf, marg = S.flat_marginals(ct, sims, scale)
            final, paths, pscores = S.greedy_descent(ct, np.zeros((len(X), 0)), marg, thr)
            leaf_scores, conf = p_leaf, marg[np.arange(len(X)), final]
            leaf_ids = ct.leaves
        elif strategy == "topdown":
            cond = S.edge_conditionals(ct, sims, scale)
            joint = S.joint_probabilities(ct, cond)
            if beam > 1:
                final, paths, pscores = self._beam(ct, cond, beam, thr)
            else:
                final, paths, pscores = S.greedy_descent(ct, cond, None, thr)
            leaf_scores, leaf_ids = joint[:, ct.leaves], ct.leaves
            conf = joint[np.arange(len(X)), final] if ct.is_tree else np.array([float(np.prod(s)) for s in pscores])
        else:
            scores = S.multilabel_scores(ct, sims, scale, self.multilabel_bias)
            final, paths, pscores = S.greedy_descent(ct, np.zeros((len(X), 0)), scores, thr)
            conf = scores[np.arange(len(X)), final]
            leaf_scores, leaf_ids = scores[:, ct.leaves], ct.leaves
            for r in range(len(X)):
                labels_out[r] = tuple(self._scored(st, i, scores[r, i]) for i in _accepted(ct, scores[r], thr))
        k = min(top_k, len(leaf_ids))
        top = np.argpartition(-leaf_scores, k - 1, axis=1)[:, :k] if k < len(leaf_ids) else np.tile(np.arange(len(leaf_ids)), (len(X), 1))
        preds = []
        for r in range(len(X)):
            order = top[r][np.argsort(-leaf_scores[r, top[r]], kind="stable")]
            f = int(final[r])
            is_leaf = ct.n_children[f] == 0
            preds.append(Prediction(
                image=names[r],
                node=st.compiled.nodes[f], label=st.labels[f],
                path=tuple(ct.nodes[i] for i in paths[r]), path_scores=tuple(pscores[r]),
                confidence=float(conf[r]),
                top_k=tuple(self._scored(st, int(leaf_ids[j]), leaf_scores[r, j]) for j in order),
                strategy=strategy, stopped_at=None if is_leaf else ct.nodes[f],
                labels=labels_out[r], metadata=st.metadata[f],
            ))
        return preds

    @staticmethod
    def _beam(ct: S.CompiledTaxonomy, cond: np.ndarray, width: int, thr: float) -> tuple[np.ndarray, list[list[int]], list[list[float]]]:
        best = S.beam_search(ct, cond, width)
        final = np.empty(len(best), np.int64)
        paths, scores = [], []
        t = np.where(np.isnan(ct.thresholds), thr, ct.thresholds)
        for r, path in enumerate(best):
            keep, sc = [path[0]], [1.0]
            for u, c in zip(path, path[1:]):
                p = float(cond[r, S.edge_between(ct, u, c)])
                if p < t[u]:
                    break
                keep.append(c)
                sc.append(p)
            final[r] = keep[-1]
            paths.append(keep)
            scores.append(sc)
        return final, paths, scores

    @staticmethod
    def _scored(st: _State, i: int, score: float) -> ScoredNode:
        return ScoredNode(st.compiled.nodes[i], st.labels[i], float(score))

    def __repr__(self) -> str:
        return f"Classifier({self.taxonomy.name!r}, {len(self.taxonomy)} nodes, encoder={self.encoder!r})"


def _accepted(ct: S.CompiledTaxonomy, scores: np.ndarray, thr: float) -> list[int]:
    """Nodes whose score and every ancestor's score clear the threshold (root excluded)."""
    ok = []
    stack = [ct.root]
    t = np.where(np.isnan(ct.thresholds), thr, ct.thresholds)
    seen = set()
    while stack:
        u = stack.pop()
        lo, k = ct.first_edge[u], ct.n_children[u]
        for c in ct.edge_child[lo:lo + k][::-1]:
            c = int(c)
            if c not in seen and scores[c] >= t[u]:
                seen.add(c)
                ok.append(c)
                stack.append(c)
    return ok


def _error_prediction(name: str, error: str, strategy: str) -> Prediction:
    return Prediction(image=name, node=None, label=None, path=(), path_scores=(), confidence=0.0, top_k=(),
                      strategy=strategy, error=error)
