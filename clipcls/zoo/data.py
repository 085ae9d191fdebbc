"""Pre-generated training data for the embedded model.

Rendering costs more than a training step's share of CPU, so the images are
rendered once, in parallel, into a uint8 array cached on disk and reused by
every epoch.  Attributes are stored beside them so batches can be built as
hard negatives (same colour, different shapes).
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipcls.zoo import synth

MAX_OBJECTS = 3


@dataclass(frozen=True)
class SynthDataset:
    """Rendered images plus per-object attribute indices (-1 = no object)."""

    seed: int
    images: np.ndarray  # (N, S, S, 3) uint8
    shape: np.ndarray  # (N, MAX_OBJECTS) int8
    color: np.ndarray
    pattern: np.ndarray
    size: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def single_label(self, attr: str) -> np.ndarray:
        """Label per image where every object agrees on ``attr``, else -1."""
        a = getattr(self, attr).astype(np.int64)
        first = a[:, 0]
        agree = np.all((a == first[:, None]) | (a < 0), axis=1)
        return np.where(agree, first, -1)


def _render_chunk(args: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    seed, start, stop, size = args
    imgs = np.empty((stop - start, size, size, 3), np.uint8)
    attrs = np.full((stop - start, 4, MAX_OBJECTS), -1, np.int8)
    for k, i in enumerate(range(start, stop)):
        scene = synth.make_scene(seed, i)
        imgs[k] = np.asarray(synth.render(scene, size=size, supersample=2))
        for j, o in enumerate(scene.objects):
            attrs[k, :, j] = (
                synth.SHAPES.index(o.shape), synth.COLORS.index(o.color),
                synth.PATTERNS.index(o.pattern), synth.SIZES.index(o.size),
            )
    return imgs, attrs


def generate(
    seed: int, n: int, size: int = 64, workers: int = 2, cache_dir: str | os.PathLike[str] | None = None,
    log: bool = True,
) -> SynthDataset:
    """Render scenes ``0..n-1`` of stream ``seed``, reusing an on-disk cache.

    >>> ds = generate(seed=5, n=8, workers=1, cache_dir=None, log=False)
    >>> ds.images.shape
    (8, 64, 64, 3)
    """
    key = hashlib.sha256(json.dumps([seed, n, size, _generator_fingerprint()]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"synth-{key}.npz" if cache_dir else None
    if path is not None and path.exists():
        with np.load(path) as z:
            imgs, attrs = z["images"], z["attrs"]
    else:
        chunk = 2000
        jobs = [(seed, s, min(s + chunk, n), size) for s in range(0, n, chunk)]
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                for k, part in enumerate(pool.map(_render_chunk, jobs)):
                    parts.append(part)
                    if log and k % 10 == 0:
                        print(f"rendered {min((k + 1) * chunk, n)}/{n}", flush=True)
        else:
            parts = [_render_chunk(j) for j in jobs]
        imgs = np.concatenate([p[0] for p in parts])
        attrs = np.concatenate([p[1] for p in parts])
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, images=imgs, attrs=attrs)
            os.replace(tmp, path)
    return SynthDataset(seed, imgs, attrs[:, 0], attrs[:, 1], attrs[:, 2], attrs[:, 3])


def _generator_fingerprint() -> str:
    """Hash of synth.py, so a changed generator never reuses stale images."""
    return hashlib.sha256(Path(synth.__file__).read_bytes()).hexdigest()[:16]
