"""The folder pipeline: decode, preprocess, encode and classify image files, against the encoder alone.

Three ways over the same folder of JPEG and PNG files, interleaved, median of
``--repeats``:

* **encoder only**: the model's forward on tensors decoded and preprocessed
  beforehand (the physical limit: no file is read);
* **clipcls**: ``Classifier.classify(paths)`` end to end (parallel decoding
  while the encoder runs, batching, classification);
* **naive loop**: one image at a time: open, preprocess, encode, classify.

Target: clipcls reaches >= 90% of encoder-only images/s.

``--arch ViT-B-32`` times a real CLIP architecture instead of the embedded
model: its weights are random (written to a temporary checkpoint and loaded
through the ordinary local-checkpoint path, as no pretrained weights can be
downloaded here), so its predictions mean nothing and only its speed counts.

    python benchmarks/pipeline.py [--images 512] [--size 256] [--repeats 3] [--files mixed|jpeg|png] [--backend torch|onnx]
                                  [--arch OPEN_CLIP_ARCH]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import clipcls
from _common import images, interleaved


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


def random_checkpoint(arch: str, folder: Path) -> Path:
    """A checkpoint of ``arch`` with random weights: for timing only."""
    import logging

    import open_clip
    import torch

    from clipcls.zoo import ARCH_CONFIGS

    for cfg in ARCH_CONFIGS:  # the embedded model's architecture too
        if cfg.stem not in open_clip.list_models():
            open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    path = folder / f"{arch}-random.pt"
    logging.disable(logging.WARNING)  # open_clip's "initialized randomly": that is the point here
    try:
        torch.save(open_clip.create_model(arch).state_dict(), path)
    finally:
        logging.disable(logging.NOTSET)
    return path


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--files", choices=("mixed", "jpeg", "png"), default="mixed")
    ap.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    ap.add_argument("--arch", help="time this open_clip architecture, with random weights, instead of the embedded model")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_folder(Path(tmp), args.images, args.size, args.files)
        weights = (args.arch, random_checkpoint(args.arch, Path(tmp))) if args.arch else (None, None)
        clf = clipcls.Classifier(Path(__file__).resolve().parent.parent / "taxonomies" / "shapes.yaml", *weights,
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
        t = interleaved(runs, args.repeats)
        what = {"mixed": "half JPEG, half PNG", "jpeg": "JPEG", "png": "PNG"}[args.files]
        model = f"{args.arch}, random weights (timing only)" if args.arch else "embedded model"
        print(f"## Folder pipeline: {len(paths)} files ({args.size} px, {what}), {model}, {args.backend} backend, "
              f"batch {clf.batch_size}, {torch.get_num_threads()} torch threads, median of {args.repeats}")
        print("| way | img/s | share of encoder-only |\n|---|---|---|")
        base = np.array(t["encoder only"])
        for k, v in t.items():
            share = float(np.median(base / np.array(v)))
            print(f"| {k} | {len(paths) / float(np.median(v)):.0f} | {100 * share:.1f}% |")


if __name__ == "__main__":
    main()
