"""What decoding a file costs against the encoder's forward, per image, on this machine.

For each file kind, the CPU time to decode one file as clipcls does (Pillow;
JPEG at a reduced DCT scale when the model is small) and to crop it to the
model's input, against the embedded model's forward per image (its wall
time in a batch times the torch threads, since it uses every core).  When
decoding and encoding share the same cores, the pipeline can reach at most
``forward / (forward + decode)`` of encoder-only throughput.

    python benchmarks/decode.py [--images 128] [--size 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np

import clipcls
from _common import images, median_time


def cpu_ms_per_item(f, items: list, repeats: int) -> float:  # noqa: ANN001
    """Median over repeats of the process CPU time per item, in ms."""
    out = []
    for _ in range(repeats):
        t0 = time.process_time()
        for x in items:
            f(x)
        out.append((time.process_time() - t0) / len(items) * 1e3)
    return float(np.median(out))


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    enc = clipcls.OpenClipEncoder()
    pics = [im.resize((args.size, args.size)) for im in images(args.images, seed=21)]
    files = {}
    for fmt, kw in (("JPEG", {"quality": 90}), ("PNG", {})):
        blobs = []
        for im in pics:
            b = io.BytesIO()
            im.save(b, format=fmt, **kw)
            blobs.append(b.getvalue())
        files[fmt] = blobs
    limits = clipcls.ImageLimits()

    pixels = torch.stack([enc.preprocess(im) for im in pics[:64]])
    forward = median_time(lambda: enc.encode_pixels(pixels), args.repeats) / len(pixels) * 1e3 * torch.get_num_threads()

    print(f"## Decoding against the forward, {args.size} px files, embedded model, median of {args.repeats}")
    print(f"forward: {forward:.2f} core-ms per image ({torch.get_num_threads()} torch threads, batch 64)\n")
    print("| files | decode core-ms | decode + crop core-ms | ceiling on the pipeline's share |\n|---|---|---|---|")
    for fmt, blobs in files.items():
        dec = cpu_ms_per_item(lambda b: clipcls.load_image(b, limits=limits, min_size=enc.min_decode_size), blobs,
                              args.repeats)
        both = cpu_ms_per_item(lambda b: enc.preprocess(clipcls.load_image(b, limits=limits, min_size=enc.min_decode_size)),
                               blobs, args.repeats)
        print(f"| {fmt} | {dec:.2f} | {both:.2f} | {100 * forward / (forward + both):.0f}% |")


if __name__ == "__main__":
    main()
