"""Write the README demo images, ``python -m clipcls.zoo.samples [DIR]``, or a labelled folder tree,
``python -m clipcls.zoo.samples --labelled DIR [--per-class 30] [--seed 1000]``.

Deterministic: the same seed always renders the same files.  Names say what
each image holds, so a reader can check the demo's answers at a glance.
Three of them (red star, yellow triangle, gray rectangle; see ``synth.HELD_OUT``)
are colour x
shape combinations the model never saw in training.
"""

from __future__ import annotations

from pathlib import Path

from clipcls.zoo import synth

SAMPLES: tuple[tuple[str, dict], ...] = (
    ("red_star", {"shape": "star", "color": "red", "pattern": "solid", "size": "large"}),
    ("blue_hexagon", {"shape": "hexagon", "color": "blue", "pattern": "striped", "size": "large"}),
    ("green_circle", {"shape": "circle", "color": "green", "pattern": "dotted", "size": "large"}),
    ("yellow_triangle", {"shape": "triangle", "color": "yellow", "pattern": "solid", "size": "small"}),
    ("purple_heart", {"shape": "heart", "color": "purple", "pattern": "outline", "size": "large"}),
    ("orange_cross", {"shape": "cross", "color": "orange", "pattern": "solid", "size": "large"}),
    ("gray_rectangle", {"shape": "rectangle", "color": "gray", "pattern": "striped", "size": "large"}),
    ("pink_ellipse", {"shape": "ellipse", "color": "pink", "pattern": "solid", "size": "large"}),
)
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "taxonomies" / "samples"


def write_samples(folder: Path = DEFAULT_DIR, size: int = 192) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (name, attrs) in enumerate(SAMPLES):
        scene = synth.make_scene(2026, i, n_objects=1, allow_held_out=True, **attrs)
        path = folder / f"{name}.png"
        synth.render(scene, size=size).save(path)
        out.append(path)
    return out


def write_labelled(folder: Path, per_class: int = 30, seed: int = 1000) -> int:
    """A labelled folder tree (one subfolder per shape) of fresh single-object images; returns the count.

    Seeds below 1000 are not used by training (seed 0) or the benchmarks.
    """
    n = 0
    for k, shape in enumerate(synth.SHAPES):
        (folder / shape).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            scene = synth.make_scene(seed + k, i, n_objects=1, shape=shape, allow_held_out=True)
            synth.render(scene, size=64).save(folder / shape / f"{i:04d}.png")
            n += 1
    return n


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m clipcls.zoo.samples", description="Write demo or labelled images.")
    ap.add_argument("folder", nargs="?", default=None, help=f"default: {DEFAULT_DIR}")
    ap.add_argument("--labelled", action="store_true", help="write a labelled folder tree instead of the demo images")
    ap.add_argument("--per-class", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1000)
    args = ap.parse_args(argv)
    if args.labelled:
        if args.folder is None:
            ap.error("--labelled needs a folder")
        print(f"wrote {write_labelled(Path(args.folder), args.per_class, args.seed)} images under {args.folder}")
    else:
        for p in write_samples(Path(args.folder) if args.folder else DEFAULT_DIR):
            print(p)


if __name__ == "__main__":
    main()
