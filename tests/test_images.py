from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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


def test_limits_are_configurable(tmp_path: Path) -> None:
    from clipcls import ImageLimits

    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    jpeg = png_bytes(img, "JPEG", quality=95)
    with pytest.raises(ImageError, match="pixel limit"):
        load_image(jpeg, limits=ImageLimits(max_pixels=80 * 60 - 1))
    assert load_image(jpeg, limits=ImageLimits(max_pixels=80 * 60)).size == (80, 60)
    p = tmp_path / "a.jpg"
    p.write_bytes(jpeg)
    with pytest.raises(ImageError, match="byte limit"):
        load_image(p, limits=ImageLimits(max_bytes=len(jpeg) - 1))
    with pytest.raises(ImageError, match="byte limit"):
        load_image(jpeg, limits=ImageLimits(max_bytes=100))
    cut = jpeg[: len(jpeg) * 2 // 3]
    with pytest.raises(ImageError, match="truncated"):
        load_image(cut)
    assert load_image(cut, limits=ImageLimits(allow_truncated=True)).size == (80, 60)
    with pytest.raises(ImageError):  # the default is back in force afterwards
        load_image(cut)
    with pytest.raises(ImageError, match="cannot read"):
        load_image(png_bytes(img), limits=ImageLimits(formats=("JPEG",)))
    with pytest.raises(ValueError, match="not allowed"):
        ImageLimits(formats=("EPS",))


def _valid_files() -> list[bytes]:
    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    out = [png_bytes(img, f) for f in ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")]
    out += [png_bytes(img.convert("P"), "PNG", transparency=0), png_bytes(img.convert("CMYK"), "JPEG"),
            png_bytes(img.convert("1"), "PNG"), png_bytes(img.convert("LA"), "PNG")]
    return out


VALID = _valid_files()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(range(len(VALID))), cut=st.integers(0, 4000),
       flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=8), junk=st.binary(max_size=64))
def test_mutated_and_random_files_only_ever_raise_image_error(base: int, cut: int, flips: list, junk: bytes) -> None:
    data = bytearray(VALID[base])
    for pos, val in flips:
        if data:
            data[pos % len(data)] = val
    data = bytes(data[: max(cut, 1)]) + junk if cut < len(data) else bytes(data) + junk
    try:
        img = load_image(data)
    except ImageError:
        return
    assert img.mode == "RGB" and img.size[0] > 0
