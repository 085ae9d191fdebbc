"""The one place that knows about torch and open_clip.

:class:`OpenClipEncoder` turns texts and images into L2-normalised float32
numpy rows.  It loads any open_clip model the same way:

* an embedded model name (``tinyclip-rn24.shapes_v1``, the default);
* an open_clip architecture with a pretrained tag (``ViT-B-32`` +
  ``laion2b_s34b_b79k``) or a local checkpoint file;
* ``hf-hub:org/repo``, or ``local-dir:PATH`` / a folder in that layout.

Weights are resolved before open_clip is asked to build anything, so a
missing download fails in seconds with a :class:`~clipcls.ModelError`
instead of a minute of retries, and nothing ever falls back to random weights.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from clipcls._errors import ModelError
from clipcls.zoo import ARCH_CONFIGS, DEFAULT_MODEL, EMBEDDED_MODELS

log = logging.getLogger("clipcls")

_PROBE_TIMEOUT_S = 3.0
# "onnx": the image tower on ONNX Runtime (clipcls._onnx), 1.5-1.9x faster on 2 CPU cores.
BACKENDS = ("torch", "onnx")


@runtime_checkable
class Encoder(Protocol):
    """What the engine needs from a model; everything after it is numpy."""

    name: str
    fingerprint: str
    embed_dim: int
    logit_scale: float

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...


def list_models() -> dict[str, str]:
    """Embedded model names with a one-line description each."""
    out = {}
    for name, path in EMBEDDED_MODELS.items():
        status = "embedded" if (path / "open_clip_model.safetensors").is_file() else "embedded (weights missing)"
        out[name] = f"{status}, {path}"
    return out


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size <= 64 * 1024 * 1024:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:
            # Hashing gigabytes on every start costs seconds; size plus both
            # ends identifies a checkpoint file well enough to key caches.
            h.update(str(size).encode())
            h.update(f.read(1 << 20))
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return h.hexdigest()


def _reachable(url: str) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get("CLIPCLS_OFFLINE", "") not in ("", "0"):
        return False
    host = urlparse(url).hostname or url
    try:
        with socket.create_connection((host, 443), timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _offline_error(what: str, model: str) -> ModelError:
    return ModelError(
        f"cannot get weights for {what}: they are not in the local cache and the hub is not reachable. "
        f"Download them on a machine with network access, or use a local checkpoint: "
        f"Classifier(tax, model={model!r}, pretrained='/path/to/weights.safetensors') or "
        f"`clipcls classify --model {model} --pretrained /path/to/weights.safetensors`, "
        f"or a folder with open_clip_config.json + open_clip_model.safetensors as --model local-dir:/path. "
        f"Without --model, clipcls uses its embedded model {DEFAULT_MODEL!r}."
    )


def _hf_cached(repo: str, filename: str, cache_dir: str | None) -> str | None:
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo, filename, cache_dir=cache_dir, local_files_only=True)
    except Exception:  # noqa: BLE001 - any miss means "not cached"
        return None


def _hf_fetch(repo: str, filename: str, cache_dir: str | None, what: str, model: str) -> str:
    cached = _hf_cached(repo, filename, cache_dir)
    if cached:
        return cached
    if not _reachable(_hf_endpoint()):
        raise _offline_error(what, model)
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo, filename, cache_dir=cache_dir)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"downloading {filename} from hf-hub:{repo} failed: {e}") from e


def _resolve_local_dir(path: Path) -> Path:
    if not path.is_dir():
        raise ModelError(f"model folder {path} does not exist; pass a folder holding open_clip_config.json and open_clip_model.safetensors")
    if not (path / "open_clip_config.json").is_file():
        raise ModelError(f"model folder {path} has no open_clip_config.json; it must be in open_clip's local-dir layout")
    weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) + sorted(path.glob("*.pth"))
    if not weights:
        raise ModelError(
            f"model folder {path} has no weights file (open_clip_model.safetensors); "
            "clipcls never runs a model on random weights"
        )
    return path


class OpenClipEncoder:
    """Encode texts and images with an open_clip model.

    >>> enc = OpenClipEncoder()                       # embedded default  # doctest: +SKIP
    >>> enc = OpenClipEncoder("ViT-B-32", "laion2b_s34b_b79k")            # doctest: +SKIP
    >>> enc = OpenClipEncoder("ViT-B-32", "/ckpt/vitb32.safetensors")     # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        pretrained: str | os.PathLike[str] | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        cache_dir: str | None = None,
        exact_preprocess: bool = False,
        backend: str = "torch",
    ) -> None:
        import torch  # deferred: importing torch costs ~1 s and only encoders need it

        self.batch_size = int(batch_size)
        self.device = device
        model = os.fspath(model) if model is not None else DEFAULT_MODEL
        pretrained = os.fspath(pretrained) if pretrained is not None else None
        self.name = model if pretrained is None else f"{model}:{pretrained}"
        self._lock = threading.Lock()
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.backend = backend
        self._model, self._preprocess, self._tokenizer, files = self._load(model, pretrained, cache_dir)
        fast = None if exact_preprocess else FastPreprocess.from_transform(self._preprocess)
        # The image side the preprocessing needs; lets the loader decode JPEGs at a reduced scale.
        self.min_decode_size: int | None = fast.size if fast is not None else None
        # Set when decoding processes may crop to uint8 for encode_uint8 (clipcls._decode).
        self.pixel_geometry: tuple[int, int] | None = fast.geometry if fast is not None else None
        self._fast = fast
        self._model.eval().to(device)
        digest = hashlib.sha256()
        for f in files:
            digest.update(f.name.encode())
            digest.update(_file_digest(f).encode())
        self.fingerprint = digest.hexdigest()[:24]
        # Keys cached image embeddings: the fast and the exact preprocessing give slightly different rows.
        self.image_fingerprint = f"{self.fingerprint}-{'exact' if exact_preprocess else 'fast1'}"
        self.logit_scale = float(self._model.logit_scale.exp().item())
        self.embed_dim = int(self._model.text_projection.shape[1]) if hasattr(self._model, "text_projection") and self._model.text_projection is not None else int(self.encode_texts(["x"]).shape[1])
        self._torch = torch
        self._onnx = None
        if backend == "onnx":
            from clipcls._index import default_cache_dir
            from clipcls._onnx import OnnxImageTower

            size = self._model.visual.image_size
            size = size[0] if isinstance(size, (tuple, list)) else int(size)
            self._onnx = OnnxImageTower(self._model, self.fingerprint, size, default_cache_dir() / "onnx",
                                        torch.get_num_threads())

    # -- loading -----------------------------------------------------------------
    def _load(self, model: str, pretrained: str | None, cache_dir: str | None):  # noqa: ANN202
        import open_clip

        _register_archs(open_clip)

        kw = {"device": "cpu", "cache_dir": cache_dir}
        try:
            if model in EMBEDDED_MODELS or model.startswith("local-dir:") or Path(model).is_dir():
                if pretrained is not None and model in EMBEDDED_MODELS:
                    raise ModelError(f"{model!r} is an embedded model and takes no pretrained tag; got {pretrained!r}")
                path = EMBEDDED_MODELS.get(model) or Path(model.removeprefix("local-dir:"))
                path = _resolve_local_dir(Path(path))
                return self._from_local_dir(open_clip, path, kw)
            if model.startswith("hf-hub:"):
                repo = model.removeprefix("hf-hub:")
                config = _hf_fetch(repo, "open_clip_config.json", cache_dir, model, model)
                weights = None
                for fname in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
                    weights = _hf_cached(repo, fname, cache_dir)
                    if weights:
                        break
                if weights is None:
                    weights = _hf_fetch(repo, "open_clip_model.safetensors", cache_dir, model, model)
                folder = Path(config).parent
                if Path(weights).parent != folder:
                    raise ModelError(f"hf-hub:{repo}: config and weights resolved to different snapshots")
                return self._from_local_dir(open_clip, folder, kw)
            if model not in open_clip.list_models():
                raise ModelError(
                    f"unknown model {model!r}. Use an embedded model ({', '.join(EMBEDDED_MODELS)}), an open_clip "
                    f"architecture such as 'ViT-B-32' (see `clipcls models --all`), 'hf-hub:org/repo', or 'local-dir:/path'"
                )
            if pretrained is None:
                tags = [t for m, t in open_clip.list_pretrained() if m == model]
                raise ModelError(
                    f"model {model!r} needs weights: pass pretrained=<tag> (one of {tags[:6]}) or a local checkpoint "
                    "file; clipcls never classifies with random weights"
                )
            if os.path.isfile(pretrained):
                return self._from_file(open_clip, model, Path(pretrained), {}, kw)
            cfg = open_clip.get_pretrained_cfg(model, pretrained)
            if not cfg:
                if any(sep in pretrained for sep in ("/", "\\", ".")):
                    raise ModelError(f"checkpoint file {pretrained!r} does not exist")
                tags = [t for m, t in open_clip.list_pretrained() if m == model]
                raise ModelError(f"unknown pretrained tag {pretrained!r} for {model!r}; known tags: {tags}")
            path = self._fetch_tag(cfg, cache_dir, f"{model} / {pretrained}", model)
            return self._from_file(open_clip, model, Path(path), cfg, kw)
        except ModelError:
            raise
        except Exception as e:  # noqa: BLE001 - open_clip/torch raise many types for bad checkpoints
            raise ModelError(f"cannot load model {self.name!r}: {type(e).__name__}: {e}") from e

    @staticmethod
    def _fetch_tag(cfg: dict, cache_dir: str | None, what: str, model: str) -> str:
        if cfg.get("hf_hub"):
            repo, filename = os.path.split(cfg["hf_hub"].rstrip("/")) if not cfg["hf_hub"].endswith("/") else (cfg["hf_hub"].rstrip("/"), "")
            candidates = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
            for fname in candidates:
                hit = _hf_cached(repo, fname, cache_dir)
                if hit:
                    return hit
            return _hf_fetch(repo, candidates[0], cache_dir, what, model)
        url = cfg.get("url", "")
        if url:
            root = cache_dir or os.path.expanduser("~/.cache/clip")
            target = os.path.join(root, os.path.basename(urlparse(url).path))
            if os.path.isfile(target):
                return target
            if not _reachable(url):
                raise _offline_error(what, model)
            import open_clip

            return open_clip.pretrained.download_pretrained_from_url(url, cache_dir=cache_dir)
        raise ModelError(f"{what}: no download location is known")

    @staticmethod
    def _from_local_dir(open_clip, path: Path, kw: dict):  # noqa: ANN001, ANN205
        spec = f"local-dir:{path}"
        model, _, preprocess = open_clip.create_model_and_transforms(spec, **kw)
        tokenizer = open_clip.get_tokenizer(spec)
        files = [path / "open_clip_config.json"] + sorted(p for p in path.glob("*.safetensors"))
        return model, preprocess, tokenizer, files

    @staticmethod
    def _from_file(open_clip, model_name: str, path: Path, cfg: dict, kw: dict):  # noqa: ANN001, ANN205
        extra = {}
        for src, dst in (("mean", "image_mean"), ("std", "image_std"), ("interpolation", "image_interpolation"), ("resize_mode", "image_resize_mode")):
            if src in cfg:
                extra[dst] = cfg[src]
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(path), **kw, **extra)
        return model, preprocess, open_clip.get_tokenizer(model_name), [path]

    # -- encoding ----------------------------------------------------------------
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``texts`` in batches; rows are L2-normalised float32."""
        import torch

        out = []
        with self._lock, torch.inference_mode():
            for i in range(0, len(texts), 256):
                tokens = self._tokenizer(list(texts[i:i + 256])).to(self.device)
                out.append(self._model.encode_text(tokens, normalize=True).float().cpu().numpy())
        return _stack(out, getattr(self, "embed_dim", 0))

    def preprocess(self, image: Image.Image):  # noqa: ANN201 - returns a torch tensor
        """The model's resize, crop and normalisation for one RGB image.

        For open_clip's standard transform this is :class:`FastPreprocess`
        (same steps, about 2x cheaper); ``exact_preprocess=True`` keeps the
        model's own transform object.
        """
        return self._fast(image) if self._fast is not None else self._preprocess(image)

    def encode_pixels(self, pixels) -> np.ndarray:  # noqa: ANN001 - a (N, 3, H, W) tensor
        """Encode already preprocessed pixels; rows are L2-normalised float32."""
        import torch

        if self._onnx is not None:
            return self._onnx(pixels.numpy())
        with self._lock, torch.inference_mode():
            return self._model.encode_image(pixels.to(self.device), normalize=True).float().cpu().numpy()

    def encode_uint8(self, pixels: np.ndarray) -> np.ndarray:
        """Encode images already cropped to :attr:`pixel_geometry`, as uint8 (N, size, size, 3)."""
        if self._fast is None:
            raise ModelError("encode_uint8 needs the standard preprocessing (exact_preprocess=False)")
        return self.encode_pixels(self._fast.normalize(pixels))

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Preprocess and encode RGB images in batches of ``batch_size``."""
        import torch

        out = []
        for i in range(0, len(images), self.batch_size):
            batch = torch.stack([self.preprocess(im) for im in images[i:i + self.batch_size]])
            out.append(self.encode_pixels(batch))
        return _stack(out, self.embed_dim)

    def __repr__(self) -> str:
        return f"OpenClipEncoder({self.name!r}, fingerprint={self.fingerprint!r}, backend={self.backend!r})"


class FastPreprocess:
    """open_clip's standard eval transform (shorter side resize, centre crop, normalise), cheaper.

    The same steps as ``Resize(n) -> CenterCrop(n) -> ToTensor -> Normalize``
    on a PIL image, with two savings measured on 256 px inputs on one core:
    Pillow's ``reducing_gap=2`` (a box reduction by an integer factor before
    the bicubic pass; 0.50 -> 0.30 ms) and one tensor op for the
    normalisation.  Embeddings stay within cosine 0.999 of the exact
    transform's (``tests/test_encoder.py`` checks it).  Any other transform
    is left alone: :meth:`from_transform` returns ``None`` for it.
    """

    def __init__(self, size: int, interpolation: int, mean: Sequence[float], std: Sequence[float]) -> None:
        import torch

        self.size = int(size)
        self.interpolation = interpolation
        self._mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1) * 255.0
        self._std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1) * 255.0

    @classmethod
    def from_transform(cls, transform: object) -> FastPreprocess | None:
        """A fast twin of ``transform`` when it is open_clip's standard one, else ``None``."""
        from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize

        steps = list(getattr(transform, "transforms", [])) if isinstance(transform, Compose) else []
        kinds = [type(t).__name__ for t in steps]
        if len(steps) < 4 or not isinstance(steps[0], Resize) or not isinstance(steps[1], CenterCrop) \
                or not isinstance(steps[-1], Normalize) or not set(kinds[2:-1]) <= {"MaybeConvertMode", "MaybeToTensor", "ToTensor", "function"}:
            return None
        resize, crop, norm = steps[0], steps[1], steps[-1]
        size = resize.size[0] if isinstance(resize.size, (list, tuple)) and len(resize.size) == 1 else resize.size
        pil = {InterpolationMode.BICUBIC: Image.BICUBIC, InterpolationMode.BILINEAR: Image.BILINEAR}.get(resize.interpolation)
        if not isinstance(size, int) or pil is None or resize.max_size is not None or tuple(crop.size) != (size, size):
            return None
        return cls(size, pil, list(norm.mean), list(norm.std))

    @property
    def geometry(self) -> tuple[int, int]:
        """(size, PIL interpolation): what a decoding process needs to crop for this transform."""
        return self.size, self.interpolation

    def normalize(self, pixels: np.ndarray):  # noqa: ANN201 - a (N, 3, size, size) float tensor
        """Cropped uint8 images (N, size, size, 3) to the model's normalised input, in one op."""
        import torch

        return (torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() - self._mean) / self._std

    def __call__(self, image: Image.Image):  # noqa: ANN204 - a (3, size, size) float tensor
        from clipcls._decode import crop_uint8

        return self.normalize(crop_uint8(image, self.size, self.interpolation)[None])[0]


def _register_archs(open_clip) -> None:  # noqa: ANN001
    known = set(open_clip.list_models())
    for cfg in ARCH_CONFIGS:
        if cfg.stem not in known:
            open_clip.add_model_config(cfg)


def _stack(parts: list[np.ndarray], dim: int) -> np.ndarray:
    if not parts:
        return np.zeros((0, dim), np.float32)
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
