"""Write the README demo images: ``python -m clipcls.zoo.samples [DIR]``.

Deterministic: the same seed always renders the same files.  Names say what
each image holds, so a reader can check the demo's answers at a glance.
Three of them (red star, yellow triangle, gray rectangle; see ``synth.HELD_OUT``)
are colour x
shape combinations the model never saw in training.
"""

from __future__ import annotations

import sys
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


if __name__ == "__main__":
    for p in write_samples(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR):
        print(p)
