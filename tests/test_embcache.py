from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from clipcls import DataError
from clipcls._embcache import ImageEmbeddingCache


def _files(tmp_path: Path, n: int) -> list[str]:
    out = []
    for i in range(n):
        p = tmp_path / f"{i}.bin"
        p.write_bytes(f"image {i}".encode())
        out.append(str(p))
    return out


class Enc:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, paths: list[str]) -> np.ndarray:
        self.calls.append(paths)
        return np.stack([np.full(4, float(Path(p).stem), np.float32) for p in paths])


def test_second_run_encodes_nothing_and_rows_follow_content(tmp_path: Path) -> None:
    paths = _files(tmp_path, 5)
    enc = Enc()
    a = ImageEmbeddingCache(tmp_path / "c", model_fingerprint="m", dim=4).embed(paths, enc)
    cache = ImageEmbeddingCache(tmp_path / "c", model_fingerprint="m", dim=4)
    b = cache.embed(paths[::-1] + [paths[0]], enc)
    assert len(enc.calls) == 1 and cache.last_encoded == 0
    np.testing.assert_array_equal(b[:5], a[::-1])
    # A copy of a file under another name is the same content: no encoding.
    Path(tmp_path / "copy.bin").write_bytes(Path(paths[2]).read_bytes())
    cache.embed([str(tmp_path / "copy.bin")], enc)
    assert len(enc.calls) == 1
    # Another model shares nothing.
    ImageEmbeddingCache(tmp_path / "c", model_fingerprint="other", dim=4).embed(paths[:1], enc)
    assert len(enc.calls) == 2


def test_corrupt_cache_is_rebuilt_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    paths = _files(tmp_path, 3)
    enc = Enc()
    cache = ImageEmbeddingCache(tmp_path / "c", model_fingerprint="m", dim=4)
    cache.embed(paths, enc)
    data = next(cache.dir.glob("rows-*.npy"))
    data.write_bytes(data.read_bytes()[:-8])
    with caplog.at_level(logging.WARNING, logger="clipcls"):
        out = cache.embed(paths, enc)
    assert "unusable" in caplog.text and cache.last_encoded == 3
    assert out[:, 0].tolist() == [0.0, 1.0, 2.0]


def test_unreadable_file_is_a_data_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing.png"):
        ImageEmbeddingCache(tmp_path, model_fingerprint="m", dim=4).embed([str(tmp_path / "missing.png")], Enc())


def test_a_write_removes_temporary_files_of_dead_writers_only(tmp_path: Path) -> None:
    import multiprocessing as mp

    p = mp.get_context("spawn").Process(target=int)
    p.start()
    p.join()
    cache = ImageEmbeddingCache(tmp_path / "c", model_fingerprint="m", dim=4)
    cache.dir.mkdir(parents=True)
    dead = cache.dir / f".rows-0.npy.{p.pid}.1.tmp"  # named as _atomic_write_bytes names them
    mine = cache.dir / f".rows-1.npy.{__import__('os').getpid()}.1.tmp"
    dead.write_bytes(b"half a file")
    mine.write_bytes(b"being written")
    cache.embed(_files(tmp_path, 2), Enc())
    assert not dead.exists() and mine.exists()
