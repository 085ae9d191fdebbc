"""A persisted cache of image embeddings, keyed by model fingerprint and file content.

Training probes again, with other settings, evaluating or calibrating on the
same files encodes nothing: each image's row is looked up by the sha256 of
its bytes.  Layout under ``<cache>/images/<model fingerprint>/``::

    manifest.json      format, dim, data file name and its sha256, content hash -> row
    rows-<sha>.npy     float32 (n, dim), read with ``allow_pickle=False``

A manifest or data file that fails its checks is dropped with a warning and
rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from clipcls._errors import CacheError, DataError
from clipcls._index import _atomic_write_bytes, _file_lock, _sha256, _sweep_dead_writers, default_cache_dir

log = logging.getLogger("clipcls")

FORMAT = 1


def content_hash(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, the key of its cached row."""
    try:
        return _sha256(Path(path))
    except OSError as e:
        raise DataError(f"{path}: cannot read image file ({e.strerror or e})") from None


class ImageEmbeddingCache:
    """Rows of image embeddings for one model, persisted as a checked ``.npy``.

    >>> cache = ImageEmbeddingCache(None, model_fingerprint=enc.fingerprint, dim=enc.embed_dim)  # doctest: +SKIP
    >>> X = cache.embed(paths, clf.embed)                                                        # doctest: +SKIP
    """

    def __init__(self, cache_dir: str | os.PathLike[str] | None, *, model_fingerprint: str, dim: int) -> None:
        base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.dir = base / "images" / model_fingerprint
        self.dim = dim
        self.model_fingerprint = model_fingerprint
        self.last_encoded = 0

    def _load(self) -> tuple[dict[str, int], np.ndarray]:
        man_path = self.dir / "manifest.json"
        empty = ({}, np.zeros((0, self.dim), np.float32))
        if not man_path.exists():
            return empty
        try:
            man = json.loads(man_path.read_text())
            if man.get("format") != FORMAT or man.get("dim") != self.dim or man.get("model") != self.model_fingerprint:
                raise CacheError("built by another clipcls version or model")
            data_path = self.dir / man["data_file"]
            if _sha256(data_path) != man["data_sha256"]:
                raise CacheError(f"checksum mismatch for {data_path.name}")
            rows = np.load(data_path, allow_pickle=False)
            index = {str(k): int(v) for k, v in man["rows"].items()}
            if rows.dtype != np.float32 or rows.shape != (len(index), self.dim):
                raise CacheError("data and manifest disagree")
        except (OSError, ValueError, KeyError, TypeError, CacheError) as e:
            log.warning("clipcls: image embedding cache %s is unusable (%s); rebuilding it", self.dir, e)
            return empty
        return index, rows

    def _save(self, index: dict[str, int], rows: np.ndarray) -> None:
        import io

        self.dir.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(rows, np.float32), allow_pickle=False)
        data = buf.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        name = f"rows-{digest[:16]}.npy"
        _atomic_write_bytes(self.dir / name, data)
        man = {"format": FORMAT, "model": self.model_fingerprint, "dim": self.dim, "data_file": name,
               "data_sha256": digest, "rows": index}
        _atomic_write_bytes(self.dir / "manifest.json", json.dumps(man).encode())
        for old in self.dir.glob("rows-*.npy"):
            if old.name != name:
                old.unlink(missing_ok=True)
        _sweep_dead_writers(self.dir)

    def embed(self, paths: Sequence[str], encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """Embeddings of ``paths`` in order; only files not seen before are passed to ``encode``."""
        keys = [content_hash(p) for p in paths]
        with _file_lock(self.dir.parent / f".{self.dir.name}.lock"):
            index, rows = self._load()
            todo = sorted({k: i for i, k in reversed(list(enumerate(keys))) if k not in index}.items(), key=lambda t: t[1])
            self.last_encoded = len(todo)
            if todo:
                new = np.asarray(encode([paths[i] for _, i in todo]), np.float32)
                if new.shape != (len(todo), self.dim):
                    raise CacheError(f"encoder returned shape {new.shape}, expected ({len(todo)}, {self.dim})")
                for j, (k, _) in enumerate(todo):
                    index[k] = len(rows) + j
                rows = np.concatenate([rows, new])
                self._save(index, rows)
            log.info("clipcls: image embeddings: encoded %d, reused %d", len(todo), len(paths) - len(todo))
        return rows[[index[k] for k in keys]] if keys else np.zeros((0, self.dim), np.float32)
