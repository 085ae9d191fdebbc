from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import clipcls
from clipcls.zoo import synth

REPO = Path(__file__).resolve().parents[1]
SHAPES_YAML = REPO / "taxonomies" / "shapes.yaml"


class CountingEncoder:
    """Wraps an encoder and records every text it is asked to encode."""

    def __init__(self, inner: clipcls.Encoder) -> None:
        self.inner = inner
        self.name, self.fingerprint = inner.name, inner.fingerprint
        self.embed_dim, self.logit_scale = inner.embed_dim, inner.logit_scale
        self.text_calls: list[list[str]] = []
        self.preprocess = inner.preprocess  # type: ignore[attr-defined]
        self.encode_pixels = inner.encode_pixels  # type: ignore[attr-defined]

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.text_calls.append(list(texts))
        return self.inner.encode_texts(texts)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.inner.encode_images(images)

    @property
    def texts_encoded(self) -> int:
        return sum(len(c) for c in self.text_calls)


@pytest.fixture(scope="session")
def encoder() -> clipcls.OpenClipEncoder:
    """The embedded model (or CLIPCLS_TEST_MODEL), loaded once per session."""
    return clipcls.OpenClipEncoder(os.environ.get("CLIPCLS_TEST_MODEL") or None)


@pytest.fixture
def counting(encoder: clipcls.OpenClipEncoder) -> CountingEncoder:
    return CountingEncoder(encoder)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def shape_images(n_per_shape: int, seed: int = 777, size: int = 64, **kw: object) -> tuple[list[Image.Image], list[str]]:
    """Single-object generated images, ``n_per_shape`` per shape, with their shape names."""
    imgs, names = [], []
    for k, shape in enumerate(synth.SHAPES):
        for i in range(n_per_shape):
            scene = synth.make_scene(seed + k, i, n_objects=1, shape=shape, **kw)  # type: ignore[arg-type]
            imgs.append(synth.render(scene, size=size))
            names.append(shape)
    return imgs, names


@pytest.fixture(scope="session", autouse=True)
def _repo_taxonomies_untouched():  # noqa: ANN202
    """Fail the run if a test wrote to the shipped taxonomy files (add_class saves by default)."""
    before = {p: p.read_bytes() for p in (REPO / "taxonomies").rglob("*") if p.is_file()}
    yield
    changed = sorted(str(p) for p, b in before.items() if not p.exists() or p.read_bytes() != b)
    if changed:
        pytest.fail(f"tests changed shipped files: {changed}", pytrace=False)
