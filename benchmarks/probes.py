"""Linear probes against zero-shot: few-shot accuracy, imbalance handling, real images.

Prints, for the embedded model:

1. leaf top-1 on ``taxonomies/shapes.yaml`` (top-down) for zero-shot, the
   probe alone (alpha = 1) and the chosen blend, at 1, 4 and 16 shots per
   class, mean over seeds, on fresh generated images;
2. balanced accuracy with and without class weighting, trained on a 20:1
   imbalanced set (probe alone and blend);
3. the same few-shot table on scikit-learn's bundled handwritten digits
   (real scans, upscaled to RGB), where zero-shot cannot know the classes,
   beside scikit-learn's ``LogisticRegression`` with ``C`` tuned by 5-fold CV.

    python benchmarks/probes.py [--seeds 3] [--test 1000]

Needs scikit-learn (``pip install -e '.[test]'``) for the digits and the reference.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import clipcls
from clipcls.zoo import synth

REPO = Path(__file__).resolve().parents[1]
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def shapes(clf: clipcls.Classifier, seed: int, counts: dict[str, int]) -> tuple[np.ndarray, list[tuple[str]]]:
    imgs, y = [], []
    for k, (shape, n) in enumerate(counts.items()):
        for i in range(n):
            imgs.append(synth.render(synth.make_scene(seed * 100 + k, i, n_objects=1, shape=shape)))
            y.append((shape,))
    return clf.embed(imgs), y


def top1(clf: clipcls.Classifier, X: np.ndarray, y: list[tuple[str]]) -> float:
    return 100 * float(np.mean([p.node == t[0] for p, t in zip(clf.classify_embeddings(X), y)]))


def balanced(clf: clipcls.Classifier, X: np.ndarray, y: list[tuple[str]]) -> float:
    preds = [p.node for p in clf.classify_embeddings(X)]
    truth = [t[0] for t in y]
    return 100 * float(np.mean([np.mean([p == c for p, t in zip(preds, truth) if t == c]) for c in set(truth)]))


def three_ways(clf: clipcls.Classifier, probes: clipcls.Probes, metric, X, y) -> tuple[float, float, float]:  # noqa: ANN001
    try:
        alone = metric(clf.set_probes(probes.with_alpha(1.0)), X, y)
        blend = metric(clf.set_probes(probes), X, y)
    finally:
        clf.set_probes(None)
    return metric(clf, X, y), alone, blend


def few_shot_table(clf, make, Xte, yte, seeds: int, reference=None) -> None:  # noqa: ANN001
    head = "| shots | zero-shot | probe alone | blend |" + (" LogisticRegression (tuned C) |" if reference else "")
    print(head + "\n|---|---|---|---|" + ("---|" if reference else ""))
    for shots in (1, 4, 16):
        rows = []
        for s in range(seeds):
            X, y = make(shots, s)
            rows.append(three_ways(clf, clipcls.Probes(seed=s).fit(X, y, clf), top1, Xte, yte)
                        + ((reference(X, y, Xte, yte),) if reference else ()))
        m = np.mean(rows, axis=0)
        print(f"| {shots} | " + " | ".join(f"{v:.1f}" for v in m) + " |")


def digits(enc: clipcls.Encoder, cache: str, seeds: int) -> None:
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, train_test_split

    tax = clipcls.Taxonomy.from_dict({"name": "digits", "root": {"id": "digit", "children": [{"id": d} for d in DIGITS]}})
    clf = clipcls.Classifier(tax, encoder=enc, cache_dir=cache, persist=False)
    d = load_digits()
    X = clf.embed([Image.fromarray((255 - x * 255 / 16).astype(np.uint8)).resize((64, 64)).convert("RGB") for x in d.images])
    Xpool, Xte, ypool, yte = train_test_split(X, d.target, test_size=0.5, random_state=0, stratify=d.target)
    label = lambda ys: [(DIGITS[t],) for t in ys]  # noqa: E731

    def make(shots: int, seed: int) -> tuple[np.ndarray, list[tuple[str]]]:
        rng = np.random.default_rng(seed)
        idx = np.concatenate([rng.choice(np.flatnonzero(ypool == c), shots, replace=False) for c in range(10)])
        return Xpool[idx], label(ypool[idx])

    def reference(X, y, Xt, yt) -> float:  # noqa: ANN001
        ys = [DIGITS.index(t[0]) for t in y]
        cv = min(5, min(np.bincount(ys)))
        if cv < 2:
            model = LogisticRegression(C=1.0, max_iter=3000).fit(X, ys)  # no CV possible at 1 shot
        else:
            model = GridSearchCV(LogisticRegression(max_iter=3000), {"C": [0.1, 1, 10, 100, 1000]}, cv=cv).fit(X, ys)
        return 100 * float(model.score(Xt, [DIGITS.index(t[0]) for t in yt]))

    print(f"\n## Handwritten digits (scikit-learn, {len(Xte)} test scans), top-1 %, mean of {seeds} seeds")
    few_shot_table(clf, make, Xte, label(yte), seeds, reference)
    ours, theirs = [], []
    for s in range(seeds):
        # One split differs by a few scans either way, so the full-data figure is a mean over splits.
        Xa, Xb, ya, yb = train_test_split(X, d.target, test_size=0.5, random_state=s, stratify=d.target)
        theirs.append(reference(Xa, label(ya), Xb, label(yb)))
        clf.set_probes(clipcls.Probes(seed=s).fit(Xa, label(ya), clf).with_alpha(1.0))
        ours.append(top1(clf, Xb, label(yb)))
        clf.set_probes(None)
    print(f"all {len(Xpool)} training scans, mean of {seeds} splits: probe alone {np.mean(ours):.1f}, "
          f"LogisticRegression {np.mean(theirs):.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--test", type=int, default=1000, help="test images for the shapes figures")
    ap.add_argument("--no-digits", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    enc = clipcls.OpenClipEncoder()
    with tempfile.TemporaryDirectory() as cache:
        clf = clipcls.Classifier(REPO / "taxonomies" / "shapes.yaml", encoder=enc, cache_dir=cache, persist=False)
        per = max(1, args.test // len(synth.SHAPES))
        Xte, yte = shapes(clf, 7, {s: per for s in synth.SHAPES})
        print(f"## shapes.yaml, top-down leaf top-1 %, {len(Xte)} fresh images, mean of {args.seeds} seeds")
        few_shot_table(clf, lambda shots, s: shapes(clf, 10 + s, {c: shots for c in synth.SHAPES}), Xte, yte, args.seeds)

        counts = {c: (200 if c == "circle" else 10) for c in synth.SHAPES}
        print("\n## Imbalance: circle 200 images, every other shape 10 (20:1); balanced accuracy %")
        print("| class weighting | zero-shot | probe alone | blend |\n|---|---|---|---|")
        for balance in (True, False):
            rows = []
            for s in range(args.seeds):
                X, y = shapes(clf, 50 + s, counts)
                rows.append(three_ways(clf, clipcls.Probes(seed=s, balance=balance).fit(X, y, clf), balanced, Xte, yte))
            m = np.mean(rows, axis=0)
            print(f"| {'on (default)' if balance else 'off'} | " + " | ".join(f"{v:.1f}" for v in m) + " |")
        if not args.no_digits:
            digits(enc, cache, args.seeds)
    print(f"\n({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
