"""The folder pipeline: decode, preprocess, encode and classify image files, against the encoder alone.

Three ways over the same folder of JPEG and PNG files, interleaved, median of
``--repeats``:

* **encoder only**: the model's forward on tensors decoded and preprocessed
  beforehand (the physical limit: no file is read);
* **clipcls**: ``Classifier.classify(paths)`` end to end (parallel decoding
  while the encoder runs, batching, classification);
* **naive loop**: one image at a time: open, preprocess, encode, classify.

Target: clipcls reaches >= 90% of encoder-only images/s.

    python benchmarks/pipeline.py [--images 512] [--size 256] [--repeats 3] [--files mixed|jpeg|png] [--backend torch|onnx]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import clipcls
from _common import images


def write_folder(folder: Path, n: int, size: int, kind: str = "mixed") -> list[str]:
    """JPEG, PNG or half of each, at ``size`` px: realistic files, not the model's 64 px."""
    paths = []
    for i, im in enumerate(images(n, seed=21)):
        im = im.resize((size, size))
        jpeg = kind == "jpeg" or (kind == "mixed" and i % 2)
        p = folder / (f"{i:05d}.jpg" if jpeg else f"{i:05d}.png")
        im.save(p, quality=90) if p.suffix == ".jpg" else im.save(p)
        paths.append(str(p))
    return paths


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--files", choices=("mixed", "jpeg", "png"), default="mixed")
    ap.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_folder(Path(tmp), args.images, args.size, args.files)
        clf = clipcls.Classifier(Path(__file__).resolve().parent.parent / "taxonomies" / "shapes.yaml",
                                 cache_dir=Path(tmp) / "cache", backend=args.backend)
        enc = clf.encoder
        pixels = torch.stack([enc.preprocess(clipcls.load_image(p)) for p in paths])

        def encoder_only() -> None:
            for i in range(0, len(pixels), clf.batch_size):
                enc.encode_pixels(pixels[i:i + clf.batch_size])

        def pipeline() -> None:
            preds = clf.classify(paths, strategy="flat")
            if len(preds) != len(paths):
                raise RuntimeError("lost predictions")

        def naive() -> None:
            for p in paths:
                clf.classify_embeddings(enc.encode_images([clipcls.load_image(p)]), strategy="flat")

        runs = {"encoder only": encoder_only, "clipcls": pipeline, "naive loop": naive}
        for f in runs.values():
            f()
        t: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeats):
            for k, f in runs.items():  # interleaved, so drift hits all alike
                t0 = time.perf_counter()
                f()
                t[k].append(time.perf_counter() - t0)
        what = {"mixed": "half JPEG, half PNG", "jpeg": "JPEG", "png": "PNG"}[args.files]
        print(f"## Folder pipeline: {len(paths)} files ({args.size} px, {what}), {args.backend} backend, "
              f"batch {clf.batch_size}, {torch.get_num_threads()} torch threads, median of {args.repeats}")
        print("| way | img/s | share of encoder-only |\n|---|---|---|")
        base = np.array(t["encoder only"])
        for k, v in t.items():
            share = float(np.median(base / np.array(v)))
            print(f"| {k} | {len(paths) / float(np.median(v)):.0f} | {100 * share:.1f}% |")


if __name__ == "__main__":
    main()
