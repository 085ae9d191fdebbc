"""The optional ONNX Runtime backend for the image tower.

On 2 CPU cores, ONNX Runtime runs the embedded model's image tower 1.5-2x
faster than eager torch (``python benchmarks/backends.py``).  The tower is
exported once per model fingerprint and torch version to ``<cache>/onnx/``,
next to a JSON sidecar holding the file's sha256; a file that fails the
check is exported again, with a warning, never used.  ONNX files are
protobuf, not pickle: loading one runs no Python code.

Text encoding stays on torch: prompt embeddings are cached anyway.

>>> enc = OpenClipEncoder(backend="onnx")   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from clipcls._errors import ModelError

log = logging.getLogger("clipcls")

FORMAT = 1
OPSET = 17


def _require() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ModelError("the onnx backend needs ONNX Runtime: pip install 'clipcls[onnx]' "
                         "(or use the default backend='torch')") from None
    return onnxruntime


class OnnxImageTower:
    """``pixels (N, 3, H, W) float32 -> L2-normalised embeddings (N, D)`` through ONNX Runtime."""

    def __init__(self, model: Any, fingerprint: str, image_size: int, folder: Path, threads: int) -> None:
        ort = _require()
        import torch

        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{fingerprint}-torch{torch.__version__.split('+')[0]}-opset{OPSET}"
        self.path = folder / f"{stem}.onnx"
        sidecar = folder / f"{stem}.json"
        if not _verified(self.path, sidecar):
            _export(model, image_size, self.path, sidecar)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own types for unreadable graphs
            raise ModelError(f"{self.path}: ONNX Runtime cannot load the exported image tower ({e}); "
                             "delete the file to export it again, or use backend='torch'") from e
        self._input = self._session.get_inputs()[0].name

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        out = self._session.run(None, {self._input: np.ascontiguousarray(pixels, np.float32)})[0]
        return np.ascontiguousarray(out, np.float32)


def _verified(path: Path, sidecar: Path) -> bool:
    if not path.exists():
        return False
    try:
        meta = json.loads(sidecar.read_text())
        ok = meta.get("format") == FORMAT and meta.get("sha256") == _digest(path)
    except (OSError, ValueError, AttributeError):
        ok = False
    if not ok:
        log.warning("clipcls: %s fails its checksum; exporting it again", path)
    return ok


def _digest(path: Path) -> str:
    from clipcls._index import _sha256

    return _sha256(path)


def _export(model: Any, image_size: int, path: Path, sidecar: Path) -> None:
    import torch

    from clipcls._index import _atomic_write_bytes

    class Tower(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.normalize(self.m.encode_image(x), dim=-1)

    import io
    import warnings

    buf = io.BytesIO()
    example = torch.zeros(2, 3, image_size, image_size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation notices are not the user's business
            torch.onnx.export(Tower(model).eval(), (example,), buf, input_names=["pixels"], output_names=["embeddings"],
                              dynamic_axes={"pixels": {0: "n"}, "embeddings": {0: "n"}}, opset_version=OPSET,
                              dynamo=False)
    except Exception as e:  # noqa: BLE001 - the exporter raises many types for unsupported models
        raise ModelError(f"cannot export this model's image tower to ONNX ({type(e).__name__}: {e}); "
                         "use backend='torch'") from e
    data = buf.getvalue()
    _atomic_write_bytes(path, data)
    _atomic_write_bytes(sidecar, json.dumps({"format": FORMAT, "sha256": hashlib.sha256(data).hexdigest()}).encode())
