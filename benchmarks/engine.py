"""What clipcls costs beyond the image encoder, and how it scales with the taxonomy.

1. Engine overhead: ``Classifier.classify`` on already decoded images
   against the raw forward of the same model plus one matrix product with the
   cached class embeddings (same preprocessing, same batch size), flat and
   top-down, at 100 and 1,000 leaves.  Targets: <= 1.05x flat, <= 1.10x top-down.
2. Large taxonomies: per-image cost after the image embedding, and the
   memory of the compiled taxonomy, for flat, top-down and beam 3 at 1k, 10k
   and 100k nodes.
3. Against the anchors' way: re-encoding every class prompt on every call
   (as transformers' zero-shot pipeline does) against the cached classifier,
   for a batch of 64 images at 100 and 1,000 classes.

Every figure is a ratio or a median measured side by side in one run.

    python benchmarks/engine.py [--images 512] [--repeats 5] [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

import clipcls
from _common import images, interleaved, median_time, tree


def overhead(enc: clipcls.OpenClipEncoder, cache: str, imgs: list, repeats: int) -> None:
    import torch

    print("## 1. Engine overhead on decoded images (ratio to raw forward + matmul; median of "
          f"{repeats} interleaved repeats, {len(imgs)} images)")
    print("| leaves | raw img/s | flat img/s | flat ratio | top-down img/s | top-down ratio |\n|---|---|---|---|---|---|")
    for n in (100, 1000):
        clf = clipcls.Classifier(tree(n), encoder=enc, cache_dir=cache)
        ct = clf._state.compiled
        W = ct.emb[ct.leaves]

        def raw() -> None:
            with torch.inference_mode():
                for i in range(0, len(imgs), clf.batch_size):
                    x = torch.stack([enc.preprocess(im) for im in imgs[i:i + clf.batch_size]])
                    f = enc._model.encode_image(x, normalize=True).numpy()
                    (f @ W.T).argmax(1)

        runs = {"raw": raw, "flat": lambda: clf.classify(imgs, strategy="flat"),
                "topdown": lambda: clf.classify(imgs, strategy="topdown")}
        t = interleaved(runs, repeats)
        ratio = {k: float(np.median(np.array(t[k]) / np.array(t["raw"]))) for k in ("flat", "topdown")}
        ips = {k: len(imgs) / float(np.median(v)) for k, v in t.items()}
        print(f"| {n} | {ips['raw']:.0f} | {ips['flat']:.0f} | {ratio['flat']:.3f}x | {ips['topdown']:.0f} | {ratio['topdown']:.3f}x |")


def large(enc: clipcls.OpenClipEncoder, cache: str, sizes: list[int], repeats: int) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, enc.embed_dim)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    print(f"\n## 2. Large taxonomies: cost per image after the embedding (batch of {len(X)}), median of {repeats}")
    print("| nodes | leaves | flat us/img | top-down us/img | beam 3 us/img | compiled MB | build s (encode) |\n|---|---|---|---|---|---|---|")
    for n in sizes:
        tax = tree(int(n * 0.95))
        t0 = time.perf_counter()
        clf = clipcls.Classifier(tax, encoder=enc, cache_dir=cache)
        build = time.perf_counter() - t0
        ct = clf._state.compiled
        mb = sum(getattr(ct, f).nbytes for f in ("emb_buffer", "edge_parent", "edge_child", "first_edge", "n_children", "leaves",
                                                  "desc_leaf", "desc_start", "thresholds")) / 1e6
        us = {}
        for name, kw in (("flat", {"strategy": "flat"}), ("topdown", {"strategy": "topdown"}),
                         ("beam", {"strategy": "topdown", "beam": 3})):
            us[name] = 1e6 * median_time(lambda kw=kw: clf.classify_embeddings(X, top_k=5, **kw), repeats) / len(X)
        print(f"| {len(tax)} | {len(ct.leaves)} | {us['flat']:.1f} | {us['topdown']:.1f} | {us['beam']:.1f} | {mb:.1f} | {build:.1f} |")


def anchors(enc: clipcls.OpenClipEncoder, cache: str, repeats: int) -> None:
    import torch

    batch = images(64, seed=5)
    print("\n## 3. Re-encoding prompts on every call (the transformers pipeline's way) vs the cached classifier, batch of 64")
    print("| classes | re-encode ms/call | clipcls ms/call | ratio |\n|---|---|---|---|")
    for n in (100, 1000):
        tax = tree(n)
        clf = clipcls.Classifier(tax, encoder=enc, cache_dir=cache)
        leaves = tax.leaves()

        def reencode() -> None:
            texts = [t for leaf in leaves for t in tax.texts(leaf)]
            W = enc.encode_texts(texts)
            with torch.inference_mode():
                x = torch.stack([enc.preprocess(im) for im in batch])
                f = enc._model.encode_image(x, normalize=True).numpy()
            (f @ W.T).argmax(1)

        a = median_time(reencode, repeats)
        b = median_time(lambda: clf.classify(batch, strategy="flat"), repeats)
        print(f"| {n} | {1000 * a:.1f} | {1000 * b:.1f} | {a / b:.1f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sizes", default="1000,10000,100000")
    args = ap.parse_args()
    enc = clipcls.OpenClipEncoder()
    with tempfile.TemporaryDirectory() as cache:
        overhead(enc, cache, images(args.images), args.repeats)
        large(enc, cache, [int(s) for s in args.sizes.split(",")], args.repeats)
        anchors(enc, cache, args.repeats)


if __name__ == "__main__":
    main()
