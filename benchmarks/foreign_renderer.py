"""Zero-shot accuracy on shapes drawn by a renderer the model never saw.

``clipcls.zoo.synth`` draws training images with PIL polygons.  This script
draws the same vocabulary with matplotlib's own patches (its geometry, its
anti-aliasing, its colour names from the CSS/X11 table, plain or tinted
backgrounds, 224 px), so a model that learnt the generator's quirks rather
than shapes and colours scores low here.

    python benchmarks/foreign_renderer.py [--n 20] [--model NAME]
"""

from __future__ import annotations

import argparse
import io
import math

import numpy as np
from PIL import Image


SHAPES = ("circle", "ellipse", "square", "rectangle", "triangle", "pentagon", "hexagon", "star", "heart", "cross")
# matplotlib's named colours, not the generator's prototypes.
COLORS = {
    "red": "red", "orange": "darkorange", "yellow": "gold", "green": "forestgreen", "blue": "royalblue",
    "purple": "darkviolet", "pink": "hotpink", "brown": "saddlebrown", "black": "black", "white": "white",
    "gray": "gray",
}


def _patch(shape: str, rng: np.random.Generator, color: str):  # noqa: ANN202
    from matplotlib import patches
    from matplotlib.path import Path as MPath

    cx, cy = rng.uniform(0.35, 0.65, 2)
    r = rng.uniform(0.2, 0.3)
    rot = float(rng.uniform(-0.3, 0.3))
    kw = dict(facecolor=color, edgecolor=color, linewidth=0)
    if shape == "circle":
        return patches.Circle((cx, cy), r, **kw)
    if shape == "ellipse":
        return patches.Ellipse((cx, cy), 2 * r, 2 * r * rng.uniform(0.45, 0.6), angle=math.degrees(rot), **kw)
    if shape in ("square", "rectangle"):
        w = 1.5 * r
        h = w if shape == "square" else w * rng.uniform(0.45, 0.6)
        return patches.Rectangle((cx - w / 2, cy - h / 2), w, h, angle=math.degrees(rot), rotation_point="center", **kw)
    if shape in ("triangle", "pentagon", "hexagon"):
        n = {"triangle": 3, "pentagon": 5, "hexagon": 6}[shape]
        return patches.RegularPolygon((cx, cy), n, radius=r, orientation=rot, **kw)
    if shape == "star":
        pts = [(cx + (r if i % 2 == 0 else 0.4 * r) * math.sin(rot + math.pi * i / 5),
                cy + (r if i % 2 == 0 else 0.4 * r) * math.cos(rot + math.pi * i / 5)) for i in range(10)]
        return patches.Polygon(pts, closed=True, **kw)
    if shape == "heart":
        # Two arcs and a point, as Bezier curves: not the generator's parametric heart.
        s = r / 1.0
        verts = [(0, -0.9), (-1.3, 0.1), (-0.7, 1.1), (0, 0.45), (0.7, 1.1), (1.3, 0.1), (0, -0.9)]
        codes = [MPath.MOVETO, MPath.CURVE4, MPath.CURVE4, MPath.CURVE4, MPath.CURVE4, MPath.CURVE4, MPath.CURVE4]
        return patches.PathPatch(MPath([(cx + x * s, cy + y * s) for x, y in verts], codes), **kw)
    a = 0.3 * r
    pts = [(-a, -r), (a, -r), (a, -a), (r, -a), (r, a), (a, a), (a, r), (-a, r), (-a, a), (-r, a), (-r, -a), (-a, -a)]
    c, s_ = math.cos(rot), math.sin(rot)
    return patches.Polygon([(cx + x * c - y * s_, cy + x * s_ + y * c) for x, y in pts], closed=True, **kw)


def draw(shape: str, color: str, rng: np.random.Generator, size: int = 224) -> Image.Image:
    """One object on a plain or lightly tinted background, via matplotlib's Agg renderer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1), dpi=size)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    dark = color in ("white", "yellow", "pink")
    bg = tuple(rng.uniform(0.05, 0.25, 3)) if dark else tuple(rng.uniform(0.85, 1.0, 3))
    if color in ("black", "brown", "gray"):
        bg = tuple(rng.uniform(0.8, 1.0, 3))
    fig.patch.set_facecolor(bg)
    ax.add_patch(_patch(shape, rng, COLORS[color]))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor=bg)
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="images per shape and per colour")
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    import clipcls
    from clipcls.zoo import synth, zeroshot

    enc = clipcls.OpenClipEncoder(args.model)
    rng = np.random.default_rng(7)
    shape_imgs, shape_y, color_imgs, color_y = [], [], [], []
    for i, s in enumerate(SHAPES):
        for _ in range(args.n):
            shape_imgs.append(draw(s, str(rng.choice(["red", "blue", "green", "black", "orange", "purple"])), rng))
            shape_y.append(i)
    colors = list(COLORS)
    for i, c in enumerate(colors):
        for _ in range(args.n):
            color_imgs.append(draw(str(rng.choice(SHAPES)), c, rng))
            color_y.append(i)
    w_shape = zeroshot.class_weights(enc.encode_texts, [synth.SHAPE_WORDS[s] for s in SHAPES], synth.TRAIN_TEMPLATES)
    w_color = zeroshot.class_weights(enc.encode_texts, [[f"{w} shape" for w in synth.COLOR_WORDS[c]] for c in colors],
                                     synth.TRAIN_TEMPLATES)
    fs, fc = enc.encode_images(shape_imgs), enc.encode_images(color_imgs)
    ps, pc = (fs @ w_shape.T).argmax(1), (fc @ w_color.T).argmax(1)
    print(f"foreign renderer (matplotlib), {args.n} images per class, model {enc.name}")
    print(f"shape (10-way)  {100 * np.mean(ps == np.array(shape_y)):5.1f} %")
    print(f"colour (11-way) {100 * np.mean(pc == np.array(color_y)):5.1f} %")
    for i, s in enumerate(SHAPES):
        m = np.array(shape_y) == i
        print(f"  {s:10s} {100 * np.mean(ps[m] == i):5.1f} %")


if __name__ == "__main__":
    main()
