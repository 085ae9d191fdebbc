"""Image-tower backends side by side: eager torch, ONNX Runtime, and (with ``--compile``) torch.compile.

Same preprocessed pixels, batch 64, interleaved repeats, median.  Also the
largest embedding difference from eager torch and the share of identical
flat predictions on ``shapes.yaml``.

    python benchmarks/backends.py [--images 512] [--repeats 5] [--compile]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import clipcls
from _common import images, interleaved

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="also torch.compile (about a minute to compile)")
    args = ap.parse_args()
    eager = clipcls.OpenClipEncoder()
    onnx = clipcls.OpenClipEncoder(backend="onnx")
    pixels = torch.stack([eager.preprocess(im) for im in images(args.images, seed=33)])
    batches = [pixels[i:i + 64] for i in range(0, len(pixels), 64)]
    runs = {"torch (eager)": eager.encode_pixels, "onnxruntime": onnx.encode_pixels}
    if args.compile:
        t0 = time.perf_counter()
        compiled = torch.compile(eager._model.encode_image)
        with torch.inference_mode():
            compiled(batches[0])
        print(f"torch.compile: {time.perf_counter() - t0:.0f} s to compile")

        def run_compiled(x: torch.Tensor) -> np.ndarray:
            with torch.inference_mode():
                return torch.nn.functional.normalize(compiled(x), dim=-1).numpy()

        runs["torch.compile"] = run_compiled
    outs = {k: np.concatenate([f(b) for b in batches]) for k, f in runs.items()}
    t = interleaved({k: lambda f=f: [f(b) for b in batches] for k, f in runs.items()}, args.repeats)
    with tempfile.TemporaryDirectory() as cache:
        clf = clipcls.Classifier(REPO / "taxonomies" / "shapes.yaml", encoder=eager, cache_dir=cache)
        ref = [p.node for p in clf.classify_embeddings(outs["torch (eager)"], strategy="flat")]
        print(f"## Image-tower backends, {len(pixels)} images, batch 64, {torch.get_num_threads()} threads, "
              f"median of {args.repeats}")
        print("| backend | img/s | speed-up | max abs diff | same flat answer |\n|---|---|---|---|---|")
        base = np.array(t["torch (eager)"])
        for k in runs:
            same = np.mean([a == b for a, b in zip(ref, (p.node for p in clf.classify_embeddings(outs[k], strategy="flat")))])
            diff = float(np.abs(outs[k] - outs["torch (eager)"]).max())
            print(f"| {k} | {len(pixels) / float(np.median(t[k])):.0f} | {float(np.median(base / np.array(t[k]))):.2f}x | "
                  f"{diff:.1e} | {100 * same:.1f}% |")


if __name__ == "__main__":
    main()
