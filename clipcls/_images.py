"""Safe image loading: one path for files, bytes and PIL images.

The contract of :func:`load_image`:

* every failure raises :class:`~clipcls.ImageError` naming the source and the
  reason, never another exception type, a crash or a hang;
* only the decoders of :attr:`ImageLimits.formats` run (no EPS, which runs
  Ghostscript, nor other rarely used ones); files over ``max_bytes`` are not
  read, and images over ``max_pixels`` are refused from their header, before
  any pixel is decoded (Pillow's own decompression-bomb check stays on too);
* truncated files are refused unless ``allow_truncated``;
* EXIF orientation 1-8 is applied; multi-frame files give their first frame;
  every mode becomes RGB: 16-bit and float rescaled to 0..255 (not clipped),
  CMYK and 1-bit converted, transparency (palette, LA, RGBA) composited on
  :data:`BACKGROUND`.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from PIL import Image, ImageFile, ImageOps

from clipcls._errors import ImageError

ImageSource = Union[str, os.PathLike, bytes, Image.Image]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
# Decoders allowed to open files: no EPS (runs Ghostscript) or other exotic formats.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
MAX_BYTES = 64 * 1024 * 1024
BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white
# Pillow's flag is global: flipping it for one allow_truncated decode must not race another.
_TRUNCATED_LOCK = threading.Lock()


@dataclass(frozen=True)
class ImageLimits:
    """What :func:`load_image` accepts; the defaults suit untrusted files.

    >>> ImageLimits(max_pixels=10_000_000).max_bytes == MAX_BYTES
    True
    """

    max_bytes: int = MAX_BYTES
    max_pixels: int = Image.MAX_IMAGE_PIXELS or 89_478_485
    allow_truncated: bool = False
    formats: tuple[str, ...] = ALLOWED_FORMATS

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_pixels <= 0:
            raise ValueError("max_bytes and max_pixels must be positive")
        unknown = [f for f in self.formats if f not in ALLOWED_FORMATS]
        if unknown:
            raise ValueError(f"formats {unknown} are not allowed; choose from {', '.join(ALLOWED_FORMATS)}")


DEFAULT_LIMITS = ImageLimits()


def describe(source: ImageSource) -> str:
    """A short name for ``source`` in messages and output rows."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    return f"<PIL {source.mode} {source.size[0]}x{source.size[1]}>"


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB, compositing transparency on :data:`BACKGROUND`.

    >>> to_rgb(Image.new("LA", (2, 2))).mode
    'RGB'
    """
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float images are rescaled to 0..255, not clipped.
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.round().astype("uint8"), "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def load_image(source: ImageSource, *, min_size: int | None = None, limits: ImageLimits = DEFAULT_LIMITS) -> Image.Image:
    """Open ``source`` and return an RGB image with EXIF orientation applied.

    ``min_size`` lets a JPEG decode at a reduced DCT scale (Pillow's ``draft``)
    while both sides stay at least that large: an encoder that resizes to
    64 px needs no 4,000 px decode, and the decode gets several times cheaper.
    """
    if isinstance(source, Image.Image):
        try:
            return to_rgb(ImageOps.exif_transpose(source) or source)
        except Exception as e:  # noqa: BLE001 - any decoder failure becomes an ImageError
            raise ImageError(f"{describe(source)}: cannot convert image ({e})") from e
    name = describe(source)
    try:
        if isinstance(source, bytes):
            data = source
        else:
            size = os.path.getsize(source)
            if size > limits.max_bytes:
                raise ImageError(f"{name}: file is {size} bytes, over the {limits.max_bytes}-byte limit (ImageLimits.max_bytes)")
            with open(source, "rb") as f:
                data = f.read(limits.max_bytes + 1)
        if not data:
            raise ImageError(f"{name}: file is empty")
        if len(data) > limits.max_bytes:
            raise ImageError(f"{name}: {len(data)} bytes, over the {limits.max_bytes}-byte limit (ImageLimits.max_bytes)")
        with Image.open(io.BytesIO(data), formats=limits.formats) as img:
            w, h = img.size
            if w * h > limits.max_pixels:
                raise ImageError(f"{name}: {w}x{h} pixels, over the {limits.max_pixels}-pixel limit "
                                 "(decompression-bomb guard; raise ImageLimits.max_pixels to accept it)")
            img.seek(0)
            if min_size and img.format == "JPEG":
                img.draft("RGB", (min_size, min_size))
            _decode(img, limits.allow_truncated)
            return to_rgb(ImageOps.exif_transpose(img) or img)
    except ImageError:
        raise
    except FileNotFoundError as e:
        raise ImageError(f"{name}: no such file") from e
    except IsADirectoryError as e:
        raise ImageError(f"{name}: is a directory, not an image") from e
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: too many pixels (decompression-bomb limit): {e}") from e
    except Exception as e:  # noqa: BLE001 - Pillow raises many types; callers get one
        raise ImageError(f"{name}: cannot read image ({type(e).__name__}: {e})") from e


def _decode(img: Image.Image, allow_truncated: bool) -> None:
    if not allow_truncated:
        img.load()  # Pillow's default refuses truncated data
        return
    with _TRUNCATED_LOCK:
        saved = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            img.load()
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved


def iter_image_paths(inputs: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Expand files and folders (recursively, sorted) into image paths, lazily."""
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if Path(f).suffix.lower() in IMAGE_SUFFIXES:
                        yield Path(root) / f
        else:
            yield p
