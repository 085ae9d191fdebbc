from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipcls import ImageError, load_image
from clipcls._images import iter_image_paths, to_rgb


def png_bytes(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def marked() -> Image.Image:
    """A 40x20 image, red on the left half and blue on the right, to see orientation."""
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    return Image.fromarray(arr)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    img = load_image(png_bytes(marked(), "JPEG", exif=exif.tobytes(), quality=95))
    # Orientations 5-8 swap width and height.
    assert img.size == ((20, 40) if orientation >= 5 else (40, 20))
    assert img.mode == "RGB"


def test_16_bit_is_rescaled_not_clipped() -> None:
    arr = np.linspace(1000, 3000, 64 * 64).reshape(64, 64).astype(np.uint16)
    src = Image.fromarray(arr)
    assert src.mode.startswith("I;16")
    out = np.asarray(load_image(png_bytes(src)))
    assert out.min() == 0 and out.max() == 255  # clipped would be all 255


def test_cmyk_palette_transparency_la_rgba_and_1bit() -> None:
    assert np.asarray(load_image(png_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG")))[0, 0, 0] > 200
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.info["transparency"] = 1
    out = np.asarray(load_image(png_bytes(pal)))
    assert tuple(out[0, 0]) == (255, 255, 255)  # transparent -> white background
    la = Image.new("LA", (8, 8), (0, 0))
    assert tuple(np.asarray(load_image(png_bytes(la)))[0, 0]) == (255, 255, 255)
    rgba = Image.new("RGBA", (8, 8), (0, 255, 0, 255))
    assert tuple(np.asarray(load_image(png_bytes(rgba)))[0, 0]) == (0, 255, 0)
    one = Image.new("1", (8, 8), 1)
    assert tuple(np.asarray(load_image(png_bytes(one)))[0, 0]) == (255, 255, 255)


def test_multi_frame_uses_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    assert tuple(np.asarray(load_image(buf.getvalue()))[0, 0])[0] > 200


def test_pil_input_passes_through_as_rgb() -> None:
    assert to_rgb(Image.new("L", (4, 4), 9)).mode == "RGB"
    assert load_image(Image.new("RGBA", (4, 4))).mode == "RGB"


@pytest.mark.parametrize("kind", ["truncated_jpeg", "truncated_png", "empty", "text", "missing", "directory", "bomb", "eps"])
def test_bad_files_raise_image_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    p = tmp_path / f"{kind}.png"
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    if kind == "truncated_jpeg":
        p = tmp_path / "t.jpg"
        p.write_bytes(png_bytes(img, "JPEG")[:300])
    elif kind == "truncated_png":
        p.write_bytes(png_bytes(img)[:200])
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "text":
        p.write_text("hello, I am not an image")
    elif kind == "directory":
        p.mkdir()
    elif kind == "bomb":
        # A valid PNG header that claims 100k x 100k pixels.
        big = Image.new("1", (1, 1))
        data = bytearray(png_bytes(big))
        data[16:24] = (100_000).to_bytes(4, "big") * 2
        p.write_bytes(bytes(data))
    elif kind == "eps":
        p = tmp_path / "x.eps"
        p.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert str(p) in str(e.value)


def test_iter_image_paths_walks_folders_sorted(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    for name in ("b/2.png", "b/1.JPG", "a.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    got = [p.relative_to(tmp_path).as_posix() for p in iter_image_paths([tmp_path])]
    assert got == ["a.png", "b/1.JPG", "b/2.png"]


def test_min_size_decodes_jpeg_at_a_reduced_scale_but_never_below_it() -> None:
    big = Image.new("RGB", (1600, 900), (10, 200, 30))
    data = png_bytes(big, "JPEG", quality=90)
    small = load_image(data, min_size=64)
    assert min(small.size) >= 64 and small.size[0] < 1600 and small.mode == "RGB"
    assert load_image(data).size == (1600, 900)
    assert load_image(png_bytes(big), min_size=64).size == (1600, 900)  # PNG has no reduced decode
