"""The persisted FAISS store of node prompt embeddings.

Layout under ``<cache>/index/<model fingerprint>/<taxonomy name>/``::

    manifest.json         format version, model fingerprint, dim, index file
                          name and its sha256, node -> (faiss id, text hash)
    embeddings-<sha>.faiss an IndexIDMap2(IndexFlatIP) of L2-normalised rows
    delta-<seq>-<token>.json small changes since: added rows (base64 float32)
                          and removed nodes, with the base index's sha256
                          and a sha256 of their own

Each node's row is keyed by the hash of its prompt texts, so a sync encodes
only nodes whose texts changed (or are new).  A small change (adding a class)
is written as one delta file, so its cost does not grow with the taxonomy;
past :data:`MAX_DELTAS` files, or a large change, the whole index is written
again and the deltas dropped.  Every write is atomic, under a file lock, the
index file before the manifest: a process killed mid-write leaves the
previous cache valid, and two processes building the same cache leave one
valid cache.  A manifest or index that fails its checks is rebuilt with a
warning, never used; a delta that fails its checks is ignored with a warning
(with the deltas after it), and the nodes it held are encoded again.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from clipcls._errors import CacheError
from clipcls._gc import gc_paused

log = logging.getLogger("clipcls")

FORMAT = 1
MAX_DELTAS = 256  # delta files before the whole index is written again (replaying 256 costs ~30 ms)
_DELTA_NAME = re.compile(r"delta-(\d{6,})-\d+-[0-9a-f]{8}\.json")
MAX_DELTA_NODES = 64  # a change touching more nodes writes the whole index
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


def _atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    # A name of our own with O_EXCL: mkstemp's random retries cost a tenth of adding a class.
    tmp = str(path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # left by a killed process whose pid came round again
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _writer_is_gone(tmp: Path) -> bool:
    """Whether the process that named temporary file ``.<name>.<pid>.<thread>.tmp`` has died (killed mid-write)."""
    parts = tmp.name.split(".")
    try:
        pid = int(parts[-3])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by someone else
        return False
    return False


def _sweep_dead_writers(folder: Path) -> None:
    """Remove temporary files that writers killed mid-write left in ``folder``."""
    for p in folder.glob(".*.tmp"):
        if _writer_is_gone(p):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


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
        self._base_sha = ""  # sha256 of the index file the manifest names; deltas must match it
        self._n_deltas = 0
        self._seq = 0  # the last delta number seen or written
        self._dirty = False  # an unusable delta was found: the next write is a full one

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
        self._base_sha = man["index_sha256"]
        self._apply_deltas()
        return True

    def _delta_files(self) -> list[Path]:
        # Names are delta-<seq>-<token>.json: the token keeps two writers' files apart.
        # Anything else in the folder is not ours to read.
        found = [(int(m.group(1)), p) for p in self.dir.glob("delta-*.json") if (m := _DELTA_NAME.fullmatch(p.name))]
        return [p for _, p in sorted(found, key=lambda t: (t[0], t[1].name))]

    def _apply_deltas(self) -> None:
        """Replay the delta files written against the current base index, in order."""
        self._n_deltas = self._seq = 0
        for path in self._delta_files():
            try:
                doc = json.loads(path.read_text())
                body = doc["delta"]
                if doc.get("format") != FORMAT or hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest() != doc.get("sha256"):
                    raise CacheError("checksum or format mismatch")
                if body["base"] != self._base_sha:
                    continue  # left behind by a writer that compacted since; not ours
                vecs = {n: np.frombuffer(base64.b64decode(v), dtype=np.float32) for n, (_, v) in body["add"].items()}
                if any(v.shape != (self.dim,) for v in vecs.values()):
                    raise CacheError("rows of the wrong size")
            except (OSError, ValueError, KeyError, TypeError, CacheError) as e:
                log.warning("clipcls: text index delta %s is unusable (%s); its nodes will be encoded again", path, e)
                self._dirty = True  # the next write compacts, dropping it
                return
            self._drop([n for n in body["remove"] if n in self._rows] + [n for n in vecs if n in self._rows])
            if vecs:
                self._append(list(vecs), np.stack(list(vecs.values())), [body["add"][n][0] for n in vecs])
            self._n_deltas += 1
            self._seq = max(self._seq, int(path.stem.split("-")[1]))

    def _drop(self, nodes: list[str]) -> None:
        if nodes:
            self._index.remove_ids(np.array([self._rows[n][0] for n in nodes], dtype=np.int64))
            for n in nodes:
                del self._rows[n]

    def _append(self, nodes: list[str], vecs: np.ndarray, hashes: list[str]) -> None:
        ids = np.arange(self._next_id, self._next_id + len(nodes), dtype=np.int64)
        self._next_id += len(nodes)
        self._index.add_with_ids(np.ascontiguousarray(vecs, np.float32), ids)
        for n, i, h in zip(nodes, ids, hashes):
            self._rows[n] = (int(i), h)

    def _save_delta(self, added: list[str], removed: list[str]) -> None:
        """Write one small change as a delta file: O(change), not O(index)."""
        if added:
            vecs = self._index.reconstruct_batch(np.array([self._rows[n][0] for n in added], dtype=np.int64))
        body = {"base": self._base_sha, "remove": sorted(removed),
                "add": {n: [self._rows[n][1], base64.b64encode(np.ascontiguousarray(v, np.float32).tobytes()).decode()]
                        for n, v in zip(added, vecs if added else [])}}
        doc = {"format": FORMAT, "sha256": hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(), "delta": body}
        self._seq += 1  # kept in memory: listing the folder on every add cost more than the add
        # No fsync: a delta lost to a power cut fails its checksum and its nodes are encoded
        # again; the fsync was a tenth of adding a class.
        name = f"delta-{self._seq:06d}-{os.getpid()}-{os.urandom(4).hex()}.json"
        _atomic_write_bytes(self.dir / name, json.dumps(doc).encode(), fsync=False)
        self._n_deltas += 1

    def _save(self) -> None:
        with gc_paused():  # the manifest holds a few objects per node
            self._save_all()

    def _save_all(self) -> None:
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
        self._base_sha, self._n_deltas, self._seq, self._dirty = digest, 0, 0, False
        # The new base holds every delta; old files go only after the manifest points past them.
        stale = [p for p in self.dir.glob("embeddings-*.faiss") if p.name != index_name] + self._delta_files()
        for old in stale:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
        _sweep_dead_writers(self.dir)

    # -- sync ------------------------------------------------------------------------
    def sync(self, texts: dict[str, list[str]], encode_texts: EncodeTexts, persist: bool = True) -> SyncStats:
        """Make the index hold exactly the nodes of ``texts``, encoding only what changed.

        ``texts`` maps node id -> prompt texts; a node's row is the L2-normalised
        mean of its texts' embeddings.
        """
        from clipcls._prompts import text_hash

        return self.sync_hashes({n: text_hash(t) for n, t in texts.items()}, texts.__getitem__, encode_texts, persist)

    def sync_hashes(self, hashes: dict[str, str], texts_of: Callable[[str], list[str]], encode_texts: EncodeTexts,
                    persist: bool = True) -> SyncStats:
        """:meth:`sync` given each node's text hash; ``texts_of`` is called only for nodes to encode."""
        with self._lock, (_file_lock(self.dir.parent / f".{self.dir.name}.lock") if persist else contextlib.nullcontext()):
            rebuilt = False
            if persist and not self._rows:
                rebuilt = not self._load() and self.manifest_path.exists()
            rows = self._rows
            stale = [n for n, r in rows.items() if hashes.get(n) != r[1]]
            todo = [n for n, h in hashes.items() if n not in rows or rows[n][1] != h]
            self._drop(stale)
            texts = {n: texts_of(n) for n in todo}
            n_texts = sum(len(t) for t in texts.values())
            if todo:
                self._append(todo, self._encode(texts, encode_texts), [hashes[n] for n in todo])
            removed = sum(1 for n in stale if n not in hashes)
            if persist and (todo or stale or rebuilt or not self.manifest_path.exists()):
                small = len(todo) + len(stale) <= MAX_DELTA_NODES and self._n_deltas < MAX_DELTAS
                if small and self._base_sha and not rebuilt and not self._dirty and self.manifest_path.exists():
                    self._save_delta(todo, [n for n in stale if n not in hashes])
                else:
                    self._save()
            log.info("clipcls: text index %s: encoded %d node(s) (%d texts), reused %d, removed %d",
                     self.dir.name, len(todo), n_texts, len(hashes) - len(todo), removed)
            return SyncStats(encoded=len(todo), reused=len(hashes) - len(todo), removed=removed,
                             texts_encoded=n_texts, rebuilt=rebuilt)

    def hashes(self, nodes: Sequence[str]) -> list[str]:
        """The text hash each of ``nodes`` was encoded from."""
        with self._lock:
            return [self._rows[n][1] for n in nodes]

    def add(self, texts: dict[str, list[str]], encode_texts: EncodeTexts, persist: bool = True) -> SyncStats:
        """Add (or refresh) only the nodes of ``texts``, leaving every other node alone.

        The cost follows the change, not the index: no other node is hashed,
        and the change is persisted as one delta file.  Use :meth:`sync` to
        make the index match a whole taxonomy.
        """
        from clipcls._prompts import text_hash

        with self._lock, (_file_lock(self.dir.parent / f".{self.dir.name}.lock") if persist else contextlib.nullcontext()):
            hashes = {n: text_hash(t) for n, t in texts.items()}
            todo = [n for n in texts if n not in self._rows or self._rows[n][1] != hashes[n]]
            vecs = self._encode({n: texts[n] for n in todo}, encode_texts)  # first: a failure changes nothing
            self._drop([n for n in todo if n in self._rows])
            if todo:
                self._append(todo, vecs, [hashes[n] for n in todo])
                if persist:
                    if self._base_sha and not self._dirty and self._n_deltas < MAX_DELTAS and self.manifest_path.exists():
                        self._save_delta(todo, [])
                    else:
                        self._save()
            n_texts = sum(len(texts[n]) for n in todo)
            # "reused" as in sync: every node of the index that was not encoded.
            return SyncStats(encoded=len(todo), reused=len(self._rows) - len(todo), removed=0, texts_encoded=n_texts,
                             rebuilt=False)

    def _encode(self, texts: dict[str, list[str]], encode_texts: EncodeTexts) -> np.ndarray:
        """One row per node: the L2-normalised mean of its texts' embeddings, all texts in one batch."""
        flat = [t for ts in texts.values() for t in ts]
        if not flat:
            return np.zeros((0, self.dim), np.float32)
        emb = encode_texts(flat)
        if emb.shape != (len(flat), self.dim):
            raise CacheError(f"encoder returned shape {emb.shape}, expected ({len(flat)}, {self.dim})")
        vecs = np.empty((len(texts), self.dim), np.float32)
        k = 0
        for i, ts in enumerate(texts.values()):
            m = emb[k:k + len(ts)].mean(0)
            vecs[i] = m / max(float(np.linalg.norm(m)), 1e-12)
            k += len(ts)
        return vecs

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
