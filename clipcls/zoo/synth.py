"""Procedural image + caption generator: the world the embedded model knows.

Every scene is a pure function of ``(seed, index)``, so any image can be
re-created on demand and datasets are reproducible across machines and
process counts.

>>> scene = make_scene(seed=0, index=3)
>>> img = render(scene, size=64)
>>> img.size
(64, 64)
"""

from __future__ import annotations

import colorsys
import math
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES: tuple[str, ...] = (
    "circle", "ellipse", "square", "rectangle", "triangle",
    "pentagon", "hexagon", "star", "heart", "cross",
)
COLORS: tuple[str, ...] = (
    "red", "orange", "yellow", "green", "blue", "purple",
    "pink", "brown", "black", "white", "gray",
)
PATTERNS: tuple[str, ...] = ("solid", "striped", "dotted", "outline")
SIZES: tuple[str, ...] = ("small", "large")

# Prototype RGB per colour name; objects are jittered around these in HSV.
COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 135, 20),
    "yellow": (245, 225, 30),
    "green": (40, 170, 50),
    "blue": (35, 75, 220),
    "purple": (130, 45, 180),
    "pink": (250, 140, 190),
    "brown": (125, 75, 35),
    "black": (15, 15, 15),
    "white": (245, 245, 245),
    "gray": (128, 128, 128),
}

# Words a caption may use for each attribute value.  The first entry is the
# canonical class name used by the shipped taxonomies.
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc"),
    "ellipse": ("ellipse", "oval"),
    "square": ("square",),
    "rectangle": ("rectangle", "oblong"),
    "triangle": ("triangle",),
    "pentagon": ("pentagon",),
    "hexagon": ("hexagon",),
    "star": ("star",),
    "heart": ("heart",),
    "cross": ("cross", "plus sign"),
}
COLOR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red",), "orange": ("orange",), "yellow": ("yellow",),
    "green": ("green",), "blue": ("blue",), "purple": ("purple", "violet"),
    "pink": ("pink",), "brown": ("brown",), "black": ("black",),
    "white": ("white",), "gray": ("gray", "grey"),
}
PATTERN_WORDS: dict[str, tuple[str, ...]] = {
    "solid": ("solid", "filled", "plain"),
    "striped": ("striped", "stripy"),
    "dotted": ("dotted", "spotted", "polka-dot"),
    "outline": ("outlined", "hollow"),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little"),
    "large": ("large", "big"),
}
NUMBER_WORDS = {2: "two", 3: "three"}

# Colour x shape pairs that never appear in training data (16 of 110 = 14.5%).
# Each shape loses one or two colours, and each colour at most two shapes, so
# every attribute value is still seen often; only these *combinations* are new.
HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    [(s, COLORS[(3 * i + 1) % 11]) for i, s in enumerate(SHAPES)]
    + [(s, COLORS[(3 * i + 6) % 11]) for i, s in enumerate(SHAPES[:6])]
)

# Wordings used to build training captions.  Benchmarks compare these with
# UNSEEN_TEMPLATES, whose words never occur in any training caption.
TRAIN_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.", "a picture of a {}.", "an image of a {}.",
    "a rendering of a {}.", "a drawing of a {}.", "a {}.", "{}",
    "there is a {}.", "a photo of the {}.", "a picture showing a {}.",
)
UNSEEN_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.", "a sketch of a {}.", "a close-up photo of the {}.",
    "a bright photo of a {}.", "art of the {}.", "a cropped photo of a {}.",
    "a low resolution photo of the {}.", "a good photo of a {}.",
)

_BACKGROUND_NAMES = ("white", "black", "gray")


@dataclass(frozen=True)
class Obj:
    """One object in a scene; geometry is in unit coordinates (0..1)."""

    shape: str
    color: str
    pattern: str
    size: str
    cx: float
    cy: float
    radius: float
    rotation: float
    aspect: float
    rgb: tuple[int, int, int]


@dataclass(frozen=True)
class Scene:
    """A renderable scene plus everything a caption may mention."""

    objects: tuple[Obj, ...]
    background: str  # "plain", "gradient", "noise" or "checker"
    background_name: str | None  # a colour word when the plain background has one
    bg_rgb: tuple[tuple[int, int, int], tuple[int, int, int]]
    noise: float
    blur: float
    seed: int


def _jitter_rgb(rng: np.random.Generator, name: str) -> tuple[int, int, int]:
    r, g, b = (c / 255.0 for c in COLOR_RGB[name])
    h, l, s = colorsys.rgb_to_hls(r, g, b)
    if name in ("black", "white", "gray"):
        l = float(np.clip(l + rng.uniform(-0.06, 0.06), 0, 1))
        s = rng.uniform(0.0, 0.06)
    else:
        h = (h + rng.uniform(-0.02, 0.02)) % 1.0
        l = float(np.clip(l + rng.uniform(-0.06, 0.06), 0.05, 0.95))
        s = float(np.clip(s + rng.uniform(-0.12, 0.05), 0.0, 1.0))
    r, g, b = colorsys.hls_to_rgb(h, l, s)
    return (int(r * 255), int(g * 255), int(b * 255))


def _far_enough(a: tuple[int, int, int], others: list[tuple[int, int, int]], d: float) -> bool:
    return all(math.dist(a, o) >= d for o in others)


def _background(
    rng: np.random.Generator, object_rgbs: list[tuple[int, int, int]]
) -> tuple[str, str | None, tuple[tuple[int, int, int], tuple[int, int, int]]]:
    kind = str(rng.choice(["plain", "plain", "gradient", "noise", "checker"]))
    for _ in range(50):
        name: str | None = None
        if kind == "plain" and rng.random() < 0.5:
            name = str(rng.choice(_BACKGROUND_NAMES))
            c1 = _jitter_rgb(rng, name)
        else:
            # Muted tones: saturated backgrounds would compete with object colours.
            h, l, s = rng.random(), rng.uniform(0.1, 0.92), rng.uniform(0.0, 0.25)
            c1 = tuple(int(v * 255) for v in colorsys.hls_to_rgb(h, l, s))  # type: ignore[assignment]
        shift = rng.uniform(-40, 40)
        c2 = tuple(int(np.clip(v + shift, 0, 255)) for v in c1)
        if _far_enough(c1, object_rgbs, 110) and _far_enough(c2, object_rgbs, 110):  # type: ignore[arg-type]
            return kind, name, (c1, c2)  # type: ignore[return-value]
    return "plain", None, ((128, 128, 128), (128, 128, 128)) if not object_rgbs else (
        (255 - object_rgbs[0][0], 255 - object_rgbs[0][1], 255 - object_rgbs[0][2]),
    ) * 2


def make_scene(
    seed: int,
    index: int,
    *,
    n_objects: int | None = None,
    shape: str | None = None,
    color: str | None = None,
    pattern: str | None = None,
    size: str | None = None,
    allow_held_out: bool = False,
) -> Scene:
    """Draw scene ``index`` of the stream ``seed``.

    Attributes passed explicitly are forced on every object.  Unless
    ``allow_held_out`` is set, no object ever has a :data:`HELD_OUT` colour x
    shape combination.
    """
    if shape and color and (shape, color) in HELD_OUT and not allow_held_out:
        # Otherwise the rejection loop below would never end.
        raise ValueError(f"{color} {shape} is a held-out combination; pass allow_held_out=True to draw it")
    rng = np.random.default_rng([seed, index])
    if n_objects is None:
        n_objects = int(rng.choice([1, 2, 3], p=[0.7, 0.2, 0.1]))
    same = n_objects > 1 and rng.random() < 0.35
    objs: list[Obj] = []
    # Multi-object scenes use a grid so objects never overlap.
    cells = [(0.5, 0.5)] if n_objects == 1 else (
        [(0.27, 0.5), (0.73, 0.5)] if n_objects == 2 else [(0.27, 0.28), (0.73, 0.28), (0.5, 0.74)]
    )
    first: tuple[str, str, str] | None = None
    for k in range(n_objects):
        while True:
            if same and first is not None:
                sh, co, pa = first
            else:
                sh = shape or str(rng.choice(SHAPES))
                co = color or str(rng.choice(COLORS))
                pa = pattern or str(rng.choice(PATTERNS))
            if allow_held_out or (sh, co) not in HELD_OUT:
                break
        first = (sh, co, pa)
        if n_objects == 1:
            sz = size or str(rng.choice(SIZES))
            radius = rng.uniform(0.2, 0.27) if sz == "small" else rng.uniform(0.36, 0.45)
            cx = 0.5 + rng.uniform(-1, 1) * (0.48 - radius) * 0.6
            cy = 0.5 + rng.uniform(-1, 1) * (0.48 - radius) * 0.6
        else:
            sz = "small"
            radius = rng.uniform(0.17, 0.21)
            cx = cells[k][0] + rng.uniform(-0.03, 0.03)
            cy = cells[k][1] + rng.uniform(-0.03, 0.03)
        aspect = 1.0
        if sh == "ellipse":
            aspect = rng.uniform(0.45, 0.65)
        elif sh == "rectangle":
            aspect = rng.uniform(0.4, 0.62)
        objs.append(Obj(
            shape=sh, color=co, pattern=pa, size=sz, cx=float(cx), cy=float(cy),
            radius=float(radius), rotation=float(rng.uniform(0, 2 * math.pi)),
            aspect=float(aspect), rgb=_jitter_rgb(rng, co),
        ))
    kind, bg_name, bg_rgb = _background(rng, [o.rgb for o in objs])
    return Scene(
        objects=tuple(objs), background=kind, background_name=bg_name, bg_rgb=bg_rgb,
        noise=float(rng.choice([0.0, rng.uniform(0, 10)])),
        blur=float(rng.choice([0.0, 0.0, rng.uniform(0.3, 0.8)])),
        seed=int(rng.integers(0, 2**31 - 1)),
    )


def shape_outline(shape: str, cx: float, cy: float, r: float, rot: float, aspect: float = 1.0) -> list[tuple[float, float]]:
    """Polygon vertices of ``shape`` centred at (cx, cy) with outer radius r."""
    def regular(n: int, start: float = -math.pi / 2) -> list[tuple[float, float]]:
        return [(math.cos(start + 2 * math.pi * i / n), math.sin(start + 2 * math.pi * i / n)) for i in range(n)]

    if shape in ("circle", "ellipse"):
        pts = [(math.cos(t), math.sin(t) * aspect) for t in np.linspace(0, 2 * math.pi, 72, endpoint=False)]
    elif shape == "square":
        pts = [(x * 0.78, y * 0.78) for x, y in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    elif shape == "rectangle":
        pts = [(x * 0.92, y * 0.92 * aspect) for x, y in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    elif shape == "triangle":
        pts = [(x, y + 0.15) for x, y in regular(3)]
    elif shape == "pentagon":
        pts = regular(5)
    elif shape == "hexagon":
        pts = regular(6)
    elif shape == "star":
        outer = regular(5)
        inner = regular(5, -math.pi / 2 + math.pi / 5)
        pts = [p for pair in zip(outer, [(x * 0.42, y * 0.42) for x, y in inner]) for p in pair]
    elif shape == "heart":
        ts = np.linspace(0, 2 * math.pi, 72, endpoint=False)
        pts = [(16 * math.sin(t) ** 3 / 17, -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)) / 17 + 0.05) for t in ts]
    elif shape == "cross":
        a = 0.32
        pts = [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a)]
        pts = [(x * 0.9, y * 0.9) for x, y in pts]
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in pts]


def _background_array(scene: Scene, n: int, rng: np.random.Generator) -> np.ndarray:
    c1 = np.array(scene.bg_rgb[0], dtype=np.float32)
    c2 = np.array(scene.bg_rgb[1], dtype=np.float32)
    if scene.background == "gradient":
        ang = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:n, 0:n] / max(n - 1, 1)
        t = np.clip((xx * math.cos(ang) + yy * math.sin(ang) + 1) / 2, 0, 1)[..., None]
        return c1 * (1 - t) + c2 * t
    if scene.background == "noise":
        coarse = rng.random((8, 8)).astype(np.float32)
        t = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((n, n), Image.BICUBIC), np.float32)[..., None] / 255
        return c1 * (1 - t) + c2 * t
    if scene.background == "checker":
        k = max(2, n // int(rng.integers(4, 9)))
        yy, xx = np.mgrid[0:n, 0:n]
        t = (((yy // k) + (xx // k)) % 2).astype(np.float32)[..., None]
        return c1 * (1 - t) + c2 * t
    return np.broadcast_to(c1, (n, n, 3)).copy()


def _pattern_mask(obj: Obj, n: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) + 0.5
    rpx = obj.radius * n
    if obj.pattern == "striped":
        ang = obj.rotation + rng.uniform(0, math.pi)
        period = max(3.0, rpx / rng.uniform(2.2, 3.2))
        proj = xx * math.cos(ang) + yy * math.sin(ang)
        return (np.mod(proj, period) < period / 2)
    if obj.pattern == "dotted":
        period = max(4.0, rpx / rng.uniform(2.0, 2.8))
        gx = np.mod(xx - obj.cx * n, period) - period / 2
        gy = np.mod(yy - obj.cy * n, period) - period / 2
        return gx * gx + gy * gy < (period * 0.3) ** 2
    return np.ones((n, n), dtype=bool)


def render(scene: Scene, size: int = 64, supersample: int = 3) -> Image.Image:
    """Rasterise ``scene`` to an RGB image of ``size`` x ``size`` pixels."""
    n = size * supersample
    rng = np.random.default_rng(scene.seed)
    canvas = _background_array(scene, n, rng)
    for obj in scene.objects:
        pts = [(x * n, y * n) for x, y in shape_outline(obj.shape, obj.cx, obj.cy, obj.radius, obj.rotation, obj.aspect)]
        fill = Image.new("L", (n, n), 0)
        ImageDraw.Draw(fill).polygon(pts, fill=255)
        inside = np.asarray(fill) > 127
        edge = Image.new("L", (n, n), 0)
        width = max(2, int(obj.radius * n * rng.uniform(0.12, 0.18)))
        ImageDraw.Draw(edge).line(pts + [pts[0]], fill=255, width=width, joint="curve")
        border = (np.asarray(edge) > 127) & inside if obj.pattern != "outline" else np.asarray(edge) > 127
        if obj.pattern == "outline":
            paint = border
        else:
            paint = (inside & _pattern_mask(obj, n, rng)) | border
        canvas[paint] = obj.rgb
    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
    img = img.resize((size, size), Image.BOX)
    if scene.blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(scene.blur * size / 64))
    if scene.noise > 0:
        arr = np.asarray(img, np.float32) + rng.normal(0, scene.noise, (size, size, 3))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return img


def _phrase(rng: np.random.Generator, obj: Obj, count: int = 1, full: bool = False) -> str:
    """Noun phrase for one object (or ``count`` identical ones)."""
    keep = {a: full or rng.random() < p for a, p in (("size", 0.35), ("pattern", 0.5), ("color", 0.75), ("shape", 0.8))}
    if not (keep["shape"] or keep["color"]):
        keep["shape"] = True
    words: list[str] = []
    if keep["size"] and count == 1:
        words.append(str(rng.choice(SIZE_WORDS[obj.size])))
    if keep["pattern"]:
        words.append(str(rng.choice(PATTERN_WORDS[obj.pattern])))
    if keep["color"]:
        words.append(str(rng.choice(COLOR_WORDS[obj.color])))
    if keep["shape"]:
        noun = str(rng.choice(SHAPE_WORDS[obj.shape]))
    else:
        # Colour-only phrases still need a noun: "a red shape".
        noun = str(rng.choice(["shape", "object"]))
    if count > 1:
        noun = noun + ("es" if noun.endswith(("s", "x")) else "s")
        words.insert(0, NUMBER_WORDS[count])
    words.append(noun)
    return " ".join(words)


def caption(scene: Scene, rng: np.random.Generator, full: bool = False) -> str:
    """A random natural caption for ``scene`` (``full`` names every attribute)."""
    objs = scene.objects
    if len(objs) > 1 and all((o.shape, o.color, o.pattern) == (objs[0].shape, objs[0].color, objs[0].pattern) for o in objs):
        body = _phrase(rng, objs[0], count=len(objs), full=full)
        text = body if rng.random() < 0.5 else f"a picture of {body}"
    elif len(objs) > 1:
        parts = [_phrase(rng, o, full=full) for o in objs]
        parts = [("an " if p[0] in "aeiou" else "a ") + p for p in parts]
        text = " and ".join(parts) if len(parts) == 2 else f"{parts[0]}, {parts[1]} and {parts[2]}"
    else:
        phrase = _phrase(rng, objs[0], full=full)
        template = str(rng.choice(TRAIN_TEMPLATES))
        text = template.format(phrase)
    if scene.background_name and rng.random() < 0.25:
        text = text.rstrip(".") + f" on a {rng.choice(COLOR_WORDS[scene.background_name])} background"
    return fix_articles(text)


_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")


def fix_articles(text: str) -> str:
    """Turn "a ellipse" into "an ellipse".

    >>> fix_articles("a photo of a oval")
    'a photo of an oval'
    """
    return _A_BEFORE_VOWEL.sub(lambda m: m.group(1) + "n ", text)
