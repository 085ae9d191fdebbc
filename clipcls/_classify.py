"""The :class:`Classifier`: a taxonomy, a model, cached prompt embeddings.

>>> import clipcls
>>> clf = clipcls.Classifier("taxonomies/shapes.yaml")            # doctest: +SKIP
>>> [p.label for p in clf.classify(["samples/red_star.png"])]      # doctest: +SKIP
['star']
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from clipcls import _strategies as S
from clipcls._appendonly import Rows
from clipcls._compiled_cache import CompiledEntry, any_entry, entry_path, load_entry, save_entry, touch
from clipcls._decode import Decoder
from clipcls._encoder import Encoder, OpenClipEncoder
from clipcls._errors import ImageError
from clipcls._gc import gc_paused
from clipcls._images import DEFAULT_LIMITS, ImageLimits, ImageSource
from clipcls._index import SyncStats, TextIndex, default_cache_dir
from clipcls._probes import Probes, check_compatible, serving_head, subtree_hash
from clipcls._taxonomy import Node, Taxonomy, read_taxonomy_bytes, save_taxonomy, taxonomy_from_bytes

log = logging.getLogger("clipcls")

Strategy = Literal["topdown", "flat", "multilabel", "chils", "hybrid"]
STRATEGIES: tuple[str, ...] = ("topdown", "flat", "multilabel", "chils", "hybrid")


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
class _Head:
    """A probe's serving head for one parent: logits ``x @ W.T + b`` over edges ``lo:lo+k``."""

    lo: int
    W: np.ndarray
    b: np.ndarray
    kind: str
    parent: str = ""


class _LazyTaxonomy:
    """A taxonomy file's bytes, parsed on first use.

    A warm start from the compiled cache serves images without the
    :class:`Taxonomy` object; edits, probes and evaluation parse it then,
    from the same bytes the cache entry was keyed by.
    """

    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.path = path
        self._tax: Taxonomy | None = None
        self._lock = threading.Lock()

    def get(self) -> Taxonomy:
        with self._lock:
            if self._tax is None:
                self._tax = taxonomy_from_bytes(self.data, self.path)
            return self._tax


@dataclass(frozen=True)
class _State:
    """An immutable snapshot: readers take it once, writers swap it whole."""

    source: Taxonomy | _LazyTaxonomy
    compiled: S.CompiledTaxonomy
    labels: Rows[str]
    metadata: Rows[Mapping[str, Any]]
    heads: tuple[_Head, ...] = ()

    @property
    def taxonomy(self) -> Taxonomy:
        return self.source if isinstance(self.source, Taxonomy) else self.source.get()


class Classifier:
    """Zero-shot hierarchical classification of images against a taxonomy.

    Parameters
    ----------
    taxonomy:
        A :class:`Taxonomy` or the path of a taxonomy file.
    model, pretrained:
        Any model :class:`OpenClipEncoder` accepts; default: the embedded model.
    backend:
        ``"torch"``, or ``"onnx"`` for the image tower on ONNX Runtime
        (``pip install 'clipcls[onnx]'``; same embeddings within 1e-5).
    encoder:
        An already built encoder (shared between classifiers).
    cache_dir:
        Where the FAISS text index lives (default ``$CLIPCLS_CACHE`` or
        ``~/.cache/clipcls``).
    temperature:
        Divides the model's logit scale; fitted by ``clipcls calibrate``.
    multilabel_bias:
        Offset of the multilabel sigmoid (see :mod:`clipcls._strategies`).
    hybrid_confidence:
        Under ``strategy="hybrid"``, a flat answer whose top leaf probability
        reaches this stands; less confident images go top-down.
    thresholds:
        Per-node thresholds (node id -> 0..1), e.g. from ``clipcls calibrate``;
        they win over the taxonomy file's ``threshold`` fields.
    image_limits:
        Byte, pixel, truncation and format limits for image files
        (:class:`ImageLimits`; the defaults suit untrusted files).
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
        hybrid_confidence: float = 0.5,
        thresholds: Mapping[str, float] | None = None,
        persist: bool = True,
        image_limits: ImageLimits = DEFAULT_LIMITS,
        backend: str = "torch",
    ) -> None:
        cache_base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        source: Taxonomy | _LazyTaxonomy
        if isinstance(taxonomy, Taxonomy):
            source = taxonomy
        else:
            path = Path(taxonomy)
            source = _LazyTaxonomy(read_taxonomy_bytes(path), path)
            # Bytes compiled before are valid; others are parsed now, so their errors come before the model loads.
            if not (persist and any_entry(cache_base, source.data, path)):
                source.get()
        self.encoder: Encoder = encoder if encoder is not None else OpenClipEncoder(model, pretrained, batch_size=batch_size,
                                                                                   backend=backend)
        self.batch_size = int(batch_size)
        self.workers = max(1, int(workers))
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        self.temperature = float(temperature)
        self.multilabel_bias = float(multilabel_bias)
        self.hybrid_confidence = float(hybrid_confidence)
        self.node_thresholds: dict[str, float] = dict(thresholds or {})
        self.image_limits = image_limits
        self.cache_dir = cache_dir
        self._persist = persist
        self._write_lock = threading.Lock()
        self.last_sync: SyncStats | None = None
        self._decoder_cache: tuple[Any, Decoder] | None = None
        self.probes: Probes | None = None
        entry_at = None
        if isinstance(source, _LazyTaxonomy) and persist:
            entry_at = entry_path(cache_base, self.encoder.fingerprint, source.data, source.path)
            with gc_paused():  # the entry's JSON is a few objects per node
                entry = load_entry(entry_at)
            if entry is not None:
                self._state = self._warm_state(entry, source)
                touch(entry_at)
                return
        tax = source if isinstance(source, Taxonomy) else source.get()
        self.index = self._new_index(tax.name)
        # A taxonomy we loaded ourselves is ours alone; one passed in is copied, so the caller's edits stay theirs.
        self._state = self._build(tax, copy=isinstance(taxonomy, Taxonomy))[0]
        if entry_at is not None:
            self._save_entry(entry_at)

    # -- construction ---------------------------------------------------------------------
    def _new_index(self, name: str) -> TextIndex:
        return TextIndex(self.cache_dir, model_fingerprint=self.encoder.fingerprint, dim=self.encoder.embed_dim, name=name)

    def _thresholds(self, nodes: Sequence[str], own: np.ndarray) -> np.ndarray:
        """Per-node thresholds: a calibrated one wins over the taxonomy file's ``own`` (NaN: the global one)."""
        out = np.array(own, np.float32)
        if self.node_thresholds:
            at = {n: i for i, n in enumerate(nodes)}
            for n, t in self.node_thresholds.items():
                if n in at:
                    out[at[n]] = t
        return out

    def _warm_state(self, entry: CompiledEntry, source: _LazyTaxonomy) -> _State:
        """The state from a compiled-cache entry: only nodes the text index lacks are encoded (parsing the file then)."""
        self.index = self._new_index(entry.name)
        with gc_paused():
            self.last_sync = self.index.sync_hashes(dict(zip(entry.nodes, entry.hashes)),
                                                    lambda n: source.get().texts(n), self.encoder.encode_texts)
            ct = S.from_structure_arrays(entry.structure, entry.nodes, self.index.matrix(entry.nodes),
                                         self._thresholds(entry.nodes, entry.thresholds))
            return _State(source, ct, Rows(entry.labels), Rows(entry.metadata))

    def _save_entry(self, path: Path) -> None:
        st = self._state
        ct, tax = st.compiled, st.taxonomy
        try:
            save_entry(path, name=tax.name, nodes=ct.nodes, hashes=self.index.hashes(ct.nodes), labels=st.labels,
                       metadata=st.metadata, thresholds=_file_thresholds(tax, ct.nodes),
                       structure=S.structure_arrays(ct))
        except OSError as e:  # a read-only or full cache: the next start compiles again
            log.warning("clipcls: cannot write the compiled taxonomy cache %s (%s)", path, e)

    # -- state ----------------------------------------------------------------------------
    @property
    def taxonomy(self) -> Taxonomy:
        """The current taxonomy; edit it through add/remove/rename_class.

        An edit may change this object in place or replace it: ``.copy()`` it to
        keep a version.
        """
        return self._state.taxonomy

    @property
    def scale(self) -> float:
        return self.encoder.logit_scale / self.temperature

    def _build(self, tax: Taxonomy, change: Any = None, copy: bool = True) -> tuple[_State, Any]:
        """A state for ``tax`` (a copy of it unless ``copy=False``) after ``change(tax)``; returns (state, change's result)."""
        # Copying and building allocate a few objects per node and free none; the
        # cyclic GC's passes over them were half of a warm start at 20k nodes.
        with gc_paused():
            tax = tax.copy() if copy else tax
            result = change(tax) if change is not None else None
            return self._build_state(tax), result

    def _build_state(self, tax: Taxonomy) -> _State:
        nodes = list(tax.graph)
        self.last_sync = self.index.sync({n: tax.texts(n) for n in nodes}, self.encoder.encode_texts, persist=self._persist)
        thresholds = self._thresholds(nodes, _file_thresholds(tax, nodes))
        ct = S.compile_taxonomy(tax.graph, tax.root, self.index.matrix(nodes), nodes, thresholds)
        heads: list[_Head] = []
        if self.probes is not None:
            for h in self.probes.heads_:
                if h.parent not in ct.index:
                    continue  # removed since; check_compatible refuses this when probes are set
                u = ct.index[h.parent]
                lo, k = int(ct.first_edge[u]), int(ct.n_children[u])
                kids = [ct.nodes[int(c)] for c in ct.edge_child[lo:lo + k]]
                if not set(h.children) <= set(kids):
                    continue
                if h.subtrees and h.subtrees != subtree_hash(tax, h.children):
                    _log_stale(h.parent)
                    continue
                W, b = serving_head(h, kids, ct.emb[ct.edge_child[lo:lo + k]], self.probes.scale_)
                heads.append(_Head(lo, W, b, h.kind, h.parent))
        return _State(tax, ct, Rows(tax.node(n).label for n in nodes), Rows(tax.node(n).metadata for n in nodes),
                      tuple(heads))

    def set_probes(self, probes: Probes | None) -> Classifier:
        """Serve fitted :class:`Probes` (or ``None`` for zero-shot); returns ``self``.

        Raises :class:`ProbeError` when they were trained for another model
        or taxonomy version.  Classes added later keep their zero-shot rows.
        """
        with self._write_lock:
            if probes is not None:
                check_compatible(probes, self)
            self.probes = probes
        return self.refresh()

    def refresh(self) -> Classifier:
        """Recompile after changing probes, thresholds or temperature; encodes nothing. Returns ``self``."""
        with self._write_lock:
            # The text index is in sync already, so this encodes nothing.
            self._state = self._build(self._state.taxonomy, copy=False)[0]
        return self

    def _edit(self, change: Any, save: bool) -> Any:
        with self._write_lock:
            state, result = self._build(self._state.taxonomy, change)
            tax = state.taxonomy
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
        with self._write_lock:
            st = self._state
            ct = st.compiled
            if isinstance(parent, str) and ct.is_tree and parent in ct.index and node_id not in ct.index:
                return self._add_leaf(st, node_id, parent, fields, save)
        # A DAG, or a node under several parents: rebuild.
        return self._edit(lambda t: t.add_node(node_id, parent, **fields), save)

    def _add_leaf(self, st: _State, node_id: str, parent: str, fields: dict[str, Any], save: bool) -> Node:
        """The common edit, in time that does not grow with the taxonomy: no copy, no rehash, no recompile.

        The taxonomy object is edited in place (and put back if anything fails);
        classify calls never read it, only the compiled snapshot swapped in at the end.
        """
        tax = st.taxonomy
        node = tax.add_node(node_id, parent, **fields)
        try:
            self.last_sync = self.index.add({node_id: tax.texts(node_id)}, self.encoder.encode_texts, persist=self._persist)
            thr = self.node_thresholds.get(node_id, node.threshold)
            ct = S.add_leaf(st.compiled, node_id, st.compiled.index[parent], self.index.matrix([node_id])[0],
                            np.nan if thr is None else thr)
            state = _State(tax, ct, st.labels.appended(node.label), st.metadata.appended(node.metadata),
                           self._heads_after_add(st, ct, parent))
            if save and tax.source is not None:
                save_taxonomy(tax)
        except BaseException:
            tax.remove_node(node_id)
            raise
        self._state = state  # one reference swap: readers see old or new, never a mix
        return node

    def _heads_after_add(self, st: _State, ct: S.CompiledTaxonomy, parent: str) -> tuple[_Head, ...]:
        """The probe heads of ``ct``, which is ``st``'s tree plus one leaf under ``parent``: what a rebuild would make.

        Heads whose edges come after the new edge move up by one; ``parent``'s own
        head gains the new child's zero-shot row; the heads of its ancestors are
        stale (a subtree they were trained on gained a node) and are dropped.
        """
        if self.probes is None or not st.heads:
            return st.heads
        p = ct.index[parent]
        at = int(ct.first_edge[p] + ct.n_children[p]) - 1  # the new edge, last of its parent's run
        ancestors = set(st.taxonomy.path(parent)[:-1])
        fitted = {h.parent: h for h in self.probes.heads_}
        out = []
        for head in st.heads:
            probe = fitted[head.parent]
            if head.parent == parent:
                lo, k = head.lo, int(ct.n_children[p])
                kids = [ct.nodes[int(c)] for c in ct.edge_child[lo:lo + k]]
                W, b = serving_head(probe, kids, ct.emb[ct.edge_child[lo:lo + k]], self.probes.scale_)
                out.append(_Head(lo, W, b, head.kind, head.parent))
            elif head.parent in ancestors and probe.subtrees:
                _log_stale(head.parent)
            else:
                out.append(dataclasses.replace(head, lo=head.lo + (head.lo >= at)))
        return tuple(out)

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
        """(name, decoded item or None, error) per source, decoded in parallel, in order."""
        return self._decoder(sources)

    @property
    def _decoder(self) -> Decoder:
        enc = self.encoder
        key = (self.workers, self.batch_size, self.image_limits, id(enc))
        if self._decoder_cache is None or self._decoder_cache[0] != key:
            if self._decoder_cache is not None:
                self._decoder_cache[1].close()
            geometry = getattr(enc, "pixel_geometry", None) if hasattr(enc, "encode_uint8") else None
            dec = Decoder(workers=self.workers, window=2 * self.batch_size, limits=self.image_limits,
                          min_size=getattr(enc, "min_decode_size", None), preprocess=getattr(enc, "preprocess", None),
                          geometry=geometry)
            self._decoder_cache = (key, dec)
            weakref.finalize(self, dec.close)
        return self._decoder_cache[1]

    def _encode(self, items: list[Any]) -> np.ndarray:
        # Three kinds of decoded item: uint8 crops from decoding processes, preprocessed
        # tensors, or PIL images (torch.Tensor has a ``.mode`` method: only isinstance tells).
        if items and isinstance(items[0], np.ndarray):
            return self.encoder.encode_uint8(np.stack(items))  # type: ignore[attr-defined]
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

    def embed_files(self, paths: Sequence[str]) -> np.ndarray:
        """Embeddings of image files through the persisted per-file cache (keyed by content hash).

        Raises :class:`ImageError` for a file that cannot be decoded.
        """
        from clipcls._embcache import ImageEmbeddingCache

        # Image rows depend on the preprocessing too, not only on the weights.
        key = getattr(self.encoder, "image_fingerprint", self.encoder.fingerprint)
        cache = ImageEmbeddingCache(self.cache_dir, model_fingerprint=key, dim=self.encoder.embed_dim)
        out = cache.embed(list(paths), self.embed)
        self.last_images_encoded = cache.last_encoded
        return out

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

    def _conditionals(self, st: _State, X: np.ndarray, sims: np.ndarray) -> np.ndarray:
        """P(child | parent) per edge: zero-shot softmax, replaced by probe heads where fitted."""
        ct = st.compiled
        cond = S.edge_conditionals(ct, sims, self.scale)
        for h in st.heads:
            cond[:, h.lo:h.lo + len(h.b)] = S.softmax_rows((X @ h.W.T + h.b) / self.temperature)
        return cond

    def _classify_chunk(self, st: _State, X: np.ndarray, names: Sequence[str], strategy: str, thr: float,
                        top_k: int, beam: int) -> list[Prediction]:
        ct = st.compiled
        # BLAS may hand back a column-major product; every step below works on rows.
        sims = np.ascontiguousarray(X @ ct.emb.T)
        scale = self.scale
        b = len(X)
        rows = np.arange(b)
        labels_out: list[tuple[ScoredNode, ...]] = [() for _ in range(b)]
        if strategy == "multilabel":
            overrides = [(h.lo, 1.0 / (1.0 + np.exp(-np.clip((X @ h.W.T + h.b) / self.temperature, -60, 60))))
                         for h in st.heads if h.kind == "sigmoid"]
            scores = S.multilabel_scores(ct, sims, scale, self.multilabel_bias, overrides)
            final, paths, pscores = S.greedy_descent(ct, np.zeros((b, 0)), scores, thr)
            conf = scores[rows, final]
            leaf_scores = scores[:, ct.leaves]
            for r in range(b):
                labels_out[r] = tuple(self._scored(st, i, scores[r, i]) for i in _accepted(ct, scores[r], thr))
        elif strategy == "flat" and not st.heads:
            leaf_scores, marg = S.flat_marginals(ct, sims, scale)
            final, paths, pscores = S.greedy_descent(ct, np.zeros((b, 0)), marg, thr)
            conf = marg[rows, final]
        elif strategy == "flat":
            # With probes, leaf probabilities are the probes' joint path probabilities,
            # so every ancestor still scores the sum of its leaves.
            joint = S.joint_probabilities(ct, self._conditionals(st, X, sims))
            final, paths, pscores = S.greedy_descent(ct, np.zeros((b, 0)), joint, thr)
            leaf_scores, conf = joint[:, ct.leaves], joint[rows, final]
        else:
            # topdown, and CHiLS: each node is scored through its descendant leaves'
            # prompts (their best similarity), not through its own.
            node_sims = S.subtree_max(ct, sims) if strategy == "chils" else sims
            cond = self._conditionals(st, X, node_sims)
            joint = S.joint_probabilities(ct, cond)
            if beam > 1:
                final, paths, pscores = self._beam(ct, cond, beam, thr)
            else:
                final, paths, pscores = S.greedy_descent(ct, cond, None, thr)
            leaf_scores = joint[:, ct.leaves]
            conf = joint[rows, final] if ct.is_tree else np.array([float(np.prod(s)) for s in pscores])
            if strategy == "hybrid":
                # Ge et al. (CVPR 2023): the hierarchy only for uncertain images; a
                # confident flat answer (top leaf probability >= hybrid_confidence) stands.
                p_leaf, marg = S.flat_marginals(ct, sims, scale)
                sure = np.flatnonzero(p_leaf.max(1) >= self.hybrid_confidence)
                if len(sure):
                    f_final, f_paths, f_scores = S.greedy_descent(ct, np.zeros((len(sure), 0)), marg[sure], thr)
                    final[sure] = f_final
                    for j, r in enumerate(sure):
                        paths[r], pscores[r] = f_paths[j], f_scores[j]
                    conf[sure] = marg[sure, f_final]
                    leaf_scores[sure] = p_leaf[sure]
        leaf_ids = ct.leaves
        top = S.top_k_rows(leaf_scores, top_k)
        preds = []
        for r in range(len(X)):
            order = top[r]
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


def _log_stale(parent: str) -> None:
    log.info("clipcls: probe for %r is stale (classes added or removed below it); serving it zero-shot", parent)


def _file_thresholds(tax: Taxonomy, nodes: Sequence[str]) -> np.ndarray:
    return np.array([np.nan if (t := tax.node(n).threshold) is None else t for n in nodes], np.float32)


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
