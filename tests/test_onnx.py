from __future__ import annotations

import builtins
import logging
from pathlib import Path

import numpy as np
import pytest

import clipcls
from clipcls import Classifier, ModelError, OpenClipEncoder
from conftest import SHAPES_YAML, shape_images

pytest.importorskip("onnxruntime")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLIPCLS_CACHE", str(tmp_path))
    return tmp_path


def test_onnx_backend_gives_the_same_embeddings_and_predictions(cache: Path, encoder: OpenClipEncoder) -> None:
    onnx = OpenClipEncoder(backend="onnx")
    assert onnx.fingerprint == encoder.fingerprint  # same weights: the prompt cache is shared
    imgs, names = shape_images(4)
    a, b = encoder.encode_images(imgs), onnx.encode_images(imgs)
    assert b.dtype == np.float32 and b.shape == a.shape
    np.testing.assert_allclose(a, b, atol=1e-5)
    pa = Classifier(SHAPES_YAML, encoder=encoder, cache_dir=cache).classify(imgs)
    pb = Classifier(SHAPES_YAML, encoder=onnx, cache_dir=cache).classify(imgs)
    assert [p.node for p in pa] == [p.node for p in pb]
    assert max(abs(p.confidence - q.confidence) for p, q in zip(pa, pb)) < 1e-3


def test_a_corrupt_export_is_redone_with_a_warning(cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = OpenClipEncoder(backend="onnx")
    path = first._onnx.path  # type: ignore[union-attr]
    path.write_bytes(path.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING, logger="clipcls"):
        again = OpenClipEncoder(backend="onnx")
    assert "checksum" in caplog.text
    assert again.encode_images(shape_images(1)[0][:2]).shape == (2, again.embed_dim)


def test_unknown_backend_and_missing_runtime_are_clear(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        OpenClipEncoder(backend="tensorrt")
    real_import = builtins.__import__

    def no_ort(name, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        if name == "onnxruntime":
            raise ImportError(name)
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    with pytest.raises(ModelError, match=r"clipcls\[onnx\]"):
        clipcls.OpenClipEncoder(backend="onnx")
