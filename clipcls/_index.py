"""The persisted FAISS store of node prompt embeddings.

Layout under ``<cache>/index/<model fingerprint>/<taxonomy name>/``::

    manifest.json         format version, model fingerprint, dim, index file
                          name and its sha256, node -> (faiss id, text hash)
    embeddings-<sha>.faiss an IndexIDMap2(IndexFlatIP) of L2-normalised rows

Each node's row is keyed by the hash of its prompt texts, so a sync encodes
only nodes whose texts changed (or are new).  Writes go to a new index file
first and the manifest last, both atomically, under a file lock: a process
killed mid-write leaves the previous cache valid, and two processes building
the same cache leave one valid cache.  A manifest or index that fails its
checks is rebuilt with a warning, never used.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from clipcls._errors import CacheError

log = logging.getLogger("clipcls")

FORMAT = 1
EncodeTexts = Callable[[Sequence[str]], np.ndarray]


def default_cache_dir() -> Path:
    """``$CLIPCLS_CACHE``, else ``~/.cache/clipcls``."""
    env = os.environ.get("CLIPCLS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "clipcls"


@dataclass(frozen=True)
class SyncStats:
    """What a sync did: how many nodes were encoded, reused and dropped."""

    encoded: int
    reused: int
    removed: int
    texts_encoded: int
    rebuilt: bool


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _safe_name(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60] or "taxonomy"
    return f"{keep}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


class TextIndex:
    """Node embeddings for one (model, taxonomy) pair, persisted with FAISS.

    >>> idx = TextIndex(cache_dir, model_fingerprint="abc", dim=128, name="shapes")  # doctest: +SKIP
    >>> stats = idx.sync({"circle": ["a photo of a circle."]}, encoder.encode_texts)  # doctest: +SKIP
    >>> idx.matrix(["circle"]).shape                                               # doctest: +SKIP
    (1, 128)
    """

    def __init__(self, cache_dir: str | os.PathLike[str] | None, *, model_fingerprint: str, dim: int, name: str) -> None:
        base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.dir = base / "index" / model_fingerprint / _safe_name(name)
        self.model_fingerprint = model_fingerprint
        self.dim = dim
        self._lock = threading.Lock()
        self._rows: dict[str, tuple[int, str]] = {}  # node -> (faiss id, text hash)
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._next_id = 0
        self._vectors: dict[str, np.ndarray] = {}

    # -- persistence -----------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    def _load(self) -> bool:
        """Read the manifest and index from disk; False (with a warning) when unusable."""
        if not self.manifest_path.exists():
            return False
        try:
            man = json.loads(self.manifest_path.read_text())
            if man.get("format") != FORMAT:
                raise CacheError(f"format {man.get('format')!r}, expected {FORMAT}")
            if man.get("model") != self.model_fingerprint or man.get("dim") != self.dim:
                raise CacheError("built for another model")
            index_path = self.dir / man["index_file"]
            if _sha256(index_path) != man["index_sha256"]:
                raise CacheError(f"checksum mismatch for {index_path.name}")
            index = faiss.read_index(str(index_path))
            rows = {k: (int(v[0]), str(v[1])) for k, v in man["nodes"].items()}
            if index.ntotal != len(rows) or index.d != self.dim:
                raise CacheError("index and manifest disagree")
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, CacheError) as e:
            log.warning("clipcls: text index cache %s is unusable (%s); rebuilding it", self.dir, e)
            return False
        self._index = faiss.IndexIDMap2(index) if not isinstance(index, faiss.IndexIDMap2) else index
        self._rows = rows
        self._next_id = int(man.get("next_id", max((r[0] for r in rows.values()), default=-1) + 1))
        return True

    def _save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = faiss.serialize_index(self._index).tobytes()
        digest = hashlib.sha256(data).hexdigest()
        index_name = f"embeddings-{digest[:16]}.faiss"
        _atomic_write_bytes(self.dir / index_name, data)
        manifest = {
            "format": FORMAT, "model": self.model_fingerprint, "dim": self.dim,
            "index_file": index_name, "index_sha256": digest, "next_id": self._next_id,
            "nodes": {k: [v[0], v[1]] for k, v in self._rows.items()},
        }
        _atomic_write_bytes(self.manifest_path, json.dumps(manifest).encode())
        for old in self.dir.glob("embeddings-*.faiss"):
            if old.name != index_name:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()

    # -- sync ------------------------------------------------------------------------
    def sync(self, texts: dict[str, list[str]], encode_texts: EncodeTexts, persist: bool = True) -> SyncStats:
        """Make the index hold exactly the nodes of ``texts``, encoding only what changed.

        ``texts`` maps node id -> prompt texts; a node's row is the L2-normalised
        mean of its texts' embeddings.
        """
        from clipcls._prompts import text_hash

        with self._lock, (_file_lock(self.dir.parent / f".{self.dir.name}.lock") if persist else contextlib.nullcontext()):
            rebuilt = False
            if persist and not self._rows:
                rebuilt = not self._load() and self.manifest_path.exists()
            hashes = {n: text_hash(t) for n, t in texts.items()}
            stale = [n for n in self._rows if n not in texts or self._rows[n][1] != hashes[n]]
            todo = [n for n in texts if n not in self._rows or self._rows[n][1] != hashes[n]]
            if stale:
                self._index.remove_ids(np.array([self._rows[n][0] for n in stale], dtype=np.int64))
                for n in stale:
                    del self._rows[n]
                    self._vectors.pop(n, None)
            n_texts = 0
            if todo:
                flat = [t for n in todo for t in texts[n]]
                n_texts = len(flat)
                emb = encode_texts(flat)
                if emb.shape != (len(flat), self.dim):
                    raise CacheError(f"encoder returned shape {emb.shape}, expected ({len(flat)}, {self.dim})")
                vecs = np.empty((len(todo), self.dim), np.float32)
                k = 0
                for i, n in enumerate(todo):
                    m = emb[k:k + len(texts[n])].mean(0)
                    vecs[i] = m / max(float(np.linalg.norm(m)), 1e-12)
                    k += len(texts[n])
                ids = np.arange(self._next_id, self._next_id + len(todo), dtype=np.int64)
                self._next_id += len(todo)
                self._index.add_with_ids(vecs, ids)
                for n, i in zip(todo, ids):
                    self._rows[n] = (int(i), hashes[n])
            if persist and (todo or stale or rebuilt or not self.manifest_path.exists()):
                self._save()
            log.info("clipcls: text index %s: encoded %d node(s) (%d texts), reused %d, removed %d",
                     self.dir.name, len(todo), n_texts, len(texts) - len(todo), sum(1 for n in stale if n not in texts))
            removed = sum(1 for n in stale if n not in texts)
            return SyncStats(encoded=len(todo), reused=len(texts) - len(todo), removed=removed,
                             texts_encoded=n_texts, rebuilt=rebuilt)

    # -- access ------------------------------------------------------------------------
    def matrix(self, nodes: Sequence[str]) -> np.ndarray:
        """Rows for ``nodes``, in that order, as a (len(nodes), dim) float32 array."""
        with self._lock:
            missing = [n for n in nodes if n not in self._rows]
            if missing:
                raise CacheError(f"nodes not in the text index: {missing[:5]}; call sync first")
            ids = np.array([self._rows[n][0] for n in nodes], dtype=np.int64)
            if not len(ids):
                return np.zeros((0, self.dim), np.float32)
            return np.ascontiguousarray(self._index.reconstruct_batch(ids), dtype=np.float32)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """The ``k`` most similar nodes per query row (inner product)."""
        with self._lock:
            by_id = {v[0]: n for n, v in self._rows.items()}
            scores, ids = self._index.search(np.ascontiguousarray(queries, np.float32), min(k, len(by_id)))
            return scores, [[by_id[int(i)] for i in row if i >= 0] for row in ids]

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, node: object) -> bool:
        return node in self._rows
