"""Zero-shot figures of the embedded model (or any model) on the synthetic world.

Prints the model card's table (same code, same seed, same images as
``python -m clipcls.zoo.train`` uses to write it), then leaf and parent
accuracy on ``taxonomies/shapes.yaml`` through the public API, flat and
top-down, with the taxonomy's own templates and with templates never seen in
training.

    python benchmarks/zeroshot.py [--n 1000] [--model NAME] [--size 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import clipcls
from clipcls.zoo import synth, zeroshot

REPO = Path(__file__).resolve().parents[1]


def hierarchy_figures(enc: clipcls.Encoder, n: int, size: int) -> list[tuple[str, float]]:
    """Leaf and parent accuracy on shapes.yaml, flat and top-down, train vs unseen templates."""
    tax = clipcls.load_taxonomy(REPO / "taxonomies" / "shapes.yaml")
    rng = np.random.default_rng([zeroshot.EVAL_SEED, 3])
    scenes = [synth.make_scene(zeroshot.EVAL_SEED + 3, i, n_objects=1, shape=str(rng.choice(synth.SHAPES)),
                               allow_held_out=True) for i in range(n)]
    images = [synth.render(s, size=size) for s in scenes]
    truth = [s.objects[0].shape for s in scenes]
    parent = {leaf: tax.parents(leaf)[0] for leaf in tax.leaves()}
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for tname, templates in (("taxonomy templates", tax.templates), ("unseen templates", synth.UNSEEN_TEMPLATES)):
            t = tax.copy()
            t.templates = tuple(templates)
            # Parents' explicit prompts stay as written; leaves follow the templates.
            clf = clipcls.Classifier(t, encoder=enc, cache_dir=cache, persist=False)
            emb = clf.embed(images)
            for strategy in ("flat", "topdown"):
                preds = clf.classify_embeddings(emb, strategy=strategy)
                leaf = np.mean([p.node == y for p, y in zip(preds, truth)])
                par = np.mean([len(p.path) > 1 and p.path[1] == parent[y] for p, y in zip(preds, truth)])
                rows.append((f"shapes.yaml leaf, {strategy}, {tname}", 100 * leaf))
                rows.append((f"shapes.yaml parent, {strategy}, {tname}", 100 * par))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="fresh images per figure")
    ap.add_argument("--model", default=None, help="default: the embedded model")
    ap.add_argument("--size", type=int, default=64, help="render size in pixels (the model resizes to its own)")
    args = ap.parse_args()
    t0 = time.time()
    enc = clipcls.OpenClipEncoder(args.model)
    report = zeroshot.evaluate(enc.encode_images, enc.encode_texts, n=args.n, size=args.size)
    print(f"model {enc.name}, {args.n} fresh images per figure, rendered at {args.size} px (seed {zeroshot.EVAL_SEED})")
    print("| figure | accuracy % |\n|---|---|")
    for name, v in report.rows():
        print(f"| {name} | {v:.1f} |")
    for name, v in hierarchy_figures(enc, args.n, args.size):
        print(f"| {name} | {v:.1f} |")
    gap = report.shape - report.shape_unseen_templates
    print(f"\nshape accuracy, training minus unseen templates: {gap:+.1f} points")
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
