"""Compiled taxonomies cached per taxonomy file, so a warm start neither parses, hashes nor compiles.

Layout under ``<cache>/compiled/<model fingerprint>/``::

    v<FORMAT>-<sha256 of the file's stem and bytes>.npz

One ``.npz`` (no pickles) holds the compiled structure
(:func:`~clipcls._strategies.structure_arrays`), the file's per-node
thresholds and a JSON member with the taxonomy's name, node ids, text hashes,
labels and metadata.  The embeddings are not in it: they come from the text
index, which must hold every node under the same text hash, or the node is
encoded again as in any sync.

The file's bytes (and its stem, which names a taxonomy that has no
``name``) are the key: a file edited by hand, or by ``add_class``
with ``save=True``, has new bytes and gets a new entry; the newest
:data:`KEEP` entries are kept.  An entry exists only for bytes that parsed
and validated, so a warm start may skip parsing and read the file lazily,
from the bytes it hashed, when something needs the :class:`Taxonomy` object.
An entry that fails to load is ignored with a warning and written again.

>>> path = entry_path(cache, "fp", b"name: shapes ...", Path("shapes.yaml"))  # doctest: +SKIP
>>> entry = load_entry(path)                              # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipcls._index import _atomic_write_bytes, _sweep_dead_writers
from clipcls._strategies import check_structure

log = logging.getLogger("clipcls")

FORMAT = 1
KEEP = 32  # entries per model; one is ~100 bytes a node


@dataclass(frozen=True)
class CompiledEntry:
    """What a warm start needs from one taxonomy file's bytes."""

    name: str
    nodes: list[str]
    hashes: list[str]
    labels: tuple[str, ...]
    metadata: tuple[Mapping[str, Any], ...]
    thresholds: np.ndarray  # the file's own, NaN where it gives none
    structure: dict[str, np.ndarray]


def _entry_name(data: bytes, path: Path) -> str:
    # The file's stem too: a taxonomy without a 'name' is named after its file.
    digest = hashlib.sha256(path.stem.encode() + b"\0" + data).hexdigest()
    return f"v{FORMAT}-{digest}.npz"


def entry_path(cache_dir: Path, model_fingerprint: str, data: bytes, path: Path) -> Path:
    """Where the entry for the bytes ``data`` of the taxonomy file ``path`` lives."""
    return cache_dir / "compiled" / model_fingerprint / _entry_name(data, path)


def any_entry(cache_dir: Path, data: bytes, path: Path) -> bool:
    """Whether these bytes were compiled before, for any model: then they parsed and validated."""
    name = _entry_name(data, path)
    folder = cache_dir / "compiled"
    return folder.is_dir() and any((d / name).is_file() for d in folder.iterdir())


def load_entry(path: Path) -> CompiledEntry | None:
    """The entry at ``path``; ``None`` when there is none, or (with a warning) when it is unusable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("clipcls: compiled taxonomy %s is unreadable (%s); compiling again", path, e)
        return None
    try:
        # zipfile checks each member's CRC-32 as it reads it.
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
        thresholds = arrays.pop("thresholds").astype(np.float32)
        n = len(meta["nodes"])
        if not (len(meta["hashes"]) == len(meta["labels"]) == len(meta["metadata"]) == len(thresholds) == n):
            raise ValueError("its parts disagree on the number of nodes")
        check_structure(arrays, n)
        return CompiledEntry(name=str(meta["name"]), nodes=[str(x) for x in meta["nodes"]], hashes=list(meta["hashes"]),
                             labels=tuple(meta["labels"]), metadata=tuple(meta["metadata"]), thresholds=thresholds,
                             structure=arrays)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        log.warning("clipcls: compiled taxonomy %s is unusable (%s); compiling again", path, e)
        return None


def save_entry(path: Path, *, name: str, nodes: Sequence[str], hashes: Sequence[str], labels: Sequence[str],
               metadata: Sequence[Mapping[str, Any]], thresholds: np.ndarray, structure: dict[str, np.ndarray]) -> None:
    """Write an entry atomically, then drop all but the newest :data:`KEEP` in its folder."""
    meta = {"name": name, "nodes": list(nodes), "hashes": list(hashes), "labels": list(labels),
            "metadata": [dict(m) for m in metadata]}
    buf = io.BytesIO()
    np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8),
             thresholds=np.asarray(thresholds, np.float32), **structure)
    path.parent.mkdir(parents=True, exist_ok=True)
    # No fsync: a torn entry fails its CRC and is compiled again.
    _atomic_write_bytes(path, buf.getvalue(), fsync=False)
    entries = sorted(path.parent.glob(f"v{FORMAT}-*.npz"), key=_mtime, reverse=True)
    for old in entries[KEEP:]:
        old.unlink(missing_ok=True)
    _sweep_dead_writers(path.parent)


def touch(path: Path) -> None:
    """Mark an entry as used, so pruning keeps it."""
    try:
        path.touch()
    except OSError:
        pass  # a read-only cache still serves warm starts


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0
