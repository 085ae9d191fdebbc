"""The engine's design choices, each measured against its alternatives in one run.

1. Autograd mode for the encoder's forward: ``torch.inference_mode`` (used),
   ``torch.no_grad``, and plain autograd.
2. Batch size of the image encoder: images/s at 8 to 256 (clipcls uses 64).
3. Torch threads for the forward: 1 against all cores (the default).
4. Scoring a batch against the class embeddings: a numpy matrix product
   (used) against a FAISS ``IndexFlatIP`` search returning every class, at
   100 to 10,000 classes.

    python benchmarks/choices.py [--images 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib

import faiss
import numpy as np

import clipcls
from _common import images, interleaved


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    enc = clipcls.OpenClipEncoder()
    model = enc._model  # the raw module: these rows time torch itself, not clipcls's wrapper
    pixels = torch.stack([enc.preprocess(im) for im in images(args.images)])
    cores = torch.get_num_threads()

    def forward(mode: contextlib.AbstractContextManager, batch: int = 64) -> None:
        with mode:
            for i in range(0, len(pixels), batch):
                model.encode_image(pixels[i:i + batch], normalize=True)

    print(f"## Design choices, embedded model, {len(pixels)} images, median of {args.repeats}\n")
    print("| 1. autograd mode | img/s | ratio to inference_mode |\n|---|---|---|")
    modes = {"torch.inference_mode": torch.inference_mode, "torch.no_grad": torch.no_grad,
             "autograd on": contextlib.nullcontext}
    t = _medians(interleaved({k: lambda m=m: forward(m()) for k, m in modes.items()}, args.repeats))
    for k, v in t.items():
        print(f"| {k} | {len(pixels) / v:.0f} | {v / t['torch.inference_mode']:.2f}x time |")

    print("\n| 2. batch size | img/s |\n|---|---|")
    t = _medians(interleaved({str(b): lambda b=b: forward(torch.inference_mode(), b) for b in (8, 16, 32, 64, 128, 256)
                              if b <= len(pixels)}, args.repeats))
    for k, v in t.items():
        print(f"| {k} | {len(pixels) / v:.0f} |")

    def with_threads(n: int) -> None:
        torch.set_num_threads(n)
        try:
            forward(torch.inference_mode())
        finally:
            torch.set_num_threads(cores)

    print("\n| 3. torch threads | img/s |\n|---|---|")
    t = _medians(interleaved({str(n): lambda n=n: with_threads(n) for n in sorted({1, cores})}, args.repeats))
    for k, v in t.items():
        print(f"| {k} | {len(pixels) / v:.0f} |")

    print("\n| 4. classes | numpy matmul us/img | FAISS IndexFlatIP (k = all) us/img | FAISS / numpy |\n|---|---|---|---|")
    X = enc.encode_pixels(pixels)
    rng = np.random.default_rng(0)
    for n in (100, 1000, 10000):
        W = rng.normal(size=(n, X.shape[1])).astype(np.float32)
        W /= np.linalg.norm(W, axis=1, keepdims=True)
        index = faiss.IndexFlatIP(W.shape[1])
        index.add(W)
        t = _medians(interleaved({"numpy": lambda: np.ascontiguousarray(X @ W.T), "faiss": lambda: index.search(X, n)},
                                 args.repeats))
        mm, fs = t["numpy"], t["faiss"]
        print(f"| {n} | {mm / len(X) * 1e6:.1f} | {fs / len(X) * 1e6:.1f} | {fs / mm:.1f}x |")


def _medians(t: dict[str, list[float]]) -> dict[str, float]:
    return {k: float(np.median(v)) for k, v in t.items()}


if __name__ == "__main__":
    main()
