"""The prompt cache on a WordNet-scale taxonomy (a generated tree of ``--nodes`` nodes, 10 children each).

1. First build against a warm start from the cache, in the same process:
   each builds a ``Classifier`` from the taxonomy file; the first build
   parses it, encodes every node's prompts, writes the FAISS index and the
   compiled taxonomy; the warm start reads the file's bytes, the compiled
   taxonomy keyed by them and the index, and encodes nothing.
   Target: warm >= 50x faster.
2. Adding one class: ``Classifier.add_class`` against encoding that class's
   prompts alone, over 300 adds (median, and the mean with the occasional
   compaction of the index's delta files).  Target: <= 2x, and no other
   node re-encoded.  Then classes under current leaves, which become parents.
3. Cold process start to first prediction on a warm cache, in a fresh
   Python process, broken down by stage.

    python benchmarks/prompt_cache.py [--nodes 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import clipcls
from _common import deep_tree, median_time

REPO = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter: each stage timed on its own.
COLD = r"""
import json, sys, time
t = [time.perf_counter()]
import clipcls
t.append(time.perf_counter())
enc = clipcls.OpenClipEncoder()
t.append(time.perf_counter())
clf = clipcls.Classifier(sys.argv[1], encoder=enc, cache_dir=sys.argv[2])
t.append(time.perf_counter())
clf.classify(sys.argv[3])
t.append(time.perf_counter())
print(json.dumps({"stages": [b - a for a, b in zip(t, t[1:])], "encoded": clf.last_sync.encoded}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    enc = clipcls.OpenClipEncoder()
    tax = deep_tree(args.nodes, name=f"wordnet-like-{args.nodes}")
    n_texts = sum(len(tax.texts(n)) for n in tax)
    with tempfile.TemporaryDirectory() as cache:
        spec = Path(cache) / "tax.json"
        spec.write_text(json.dumps(tax.to_dict()))
        t0 = time.perf_counter()
        clf = clipcls.Classifier(spec, encoder=enc, cache_dir=cache)
        first = time.perf_counter() - t0
        if clf.last_sync.encoded != len(tax):
            raise RuntimeError("the first build did not encode every node")
        warm_stats = []

        def warm() -> None:
            c = clipcls.Classifier(spec, encoder=enc, cache_dir=cache)
            warm_stats.append(c.last_sync.encoded)

        w = median_time(warm, args.repeats)
        print(f"## Prompt cache, {len(tax)} nodes ({n_texts} prompts), embedded model, median of {args.repeats}")
        print("| step | seconds | ratio |\n|---|---|---|")
        print(f"| first build (parse file, encode all, write index and compiled taxonomy) | {first:.2f} | |")
        print(f"| warm start (read file, compiled cache and index, {max(warm_stats)} encoded) | {w:.3f} | "
              f"{first / w:.0f}x faster |")

        # Many adds, so the occasional compaction of the delta files (every 256) is in the mean.
        # Each add is paired with encoding the same prompts alone, right after: a ratio per pair.
        n_adds = max(args.repeats, 300)
        times, alone, added = [], [], []
        for i in range(n_adds):
            t0 = time.perf_counter()
            clf.add_class(f"new{i}", parent=f"n{1 + i % 9}", label=f"striped violet star number {i}", save=False)
            t1 = time.perf_counter()
            enc.encode_texts(clf.taxonomy.texts(f"new{i}"))
            times.append(t1 - t0)
            alone.append(time.perf_counter() - t1)
            added.append(clf.last_sync.encoded)
        ratio = np.array(times) / np.array(alone)
        print(f"| add one class, median of {n_adds} (nodes encoded: {max(added)}) | {np.median(times):.4f} | "
              f"{np.median(ratio):.2f}x its prompts' encoding ({np.median(alone):.4f} s) |")
        print(f"| add one class, mean of {n_adds} (with compactions) | {np.mean(times):.4f} | "
              f"{np.mean(times) / np.mean(alone):.2f}x |")

        # A class under a current leaf: the leaf becomes a parent, and the leaf set changes.
        leaves = [n for n in clf.taxonomy.leaves() if not n.startswith("new")][:max(30, args.repeats)]
        slow, slow_alone, slow_added = [], [], []
        for i, leaf in enumerate(leaves):
            t0 = time.perf_counter()
            clf.add_class(f"sub{i}", parent=leaf, label=f"dotted amber star number {i}", save=False)
            t1 = time.perf_counter()
            enc.encode_texts(clf.taxonomy.texts(f"sub{i}"))
            slow.append(t1 - t0)
            slow_alone.append(time.perf_counter() - t1)
            slow_added.append(clf.last_sync.encoded)
        print(f"| add one class under a leaf, median of {len(leaves)} (nodes encoded: {max(slow_added)}) | "
              f"{np.median(slow):.4f} | {np.median(np.array(slow) / np.array(slow_alone)):.2f}x its prompts' encoding |")

        sample = REPO / "taxonomies" / "samples" / "red_star.png"
        runs = []
        for _ in range(max(1, args.repeats // 2)):
            out = subprocess.run([sys.executable, "-c", COLD, str(spec), cache, str(sample)], capture_output=True,
                                 text=True, check=True)
            runs.append(json.loads(out.stdout.splitlines()[-1]))
        st = np.median([r["stages"] for r in runs], axis=0)
        names = ["import clipcls (numpy, faiss, networkx)", "load the model (torch, open_clip, weights)",
                 f"Classifier from the taxonomy file on the warm cache ({runs[0]['encoded']} encoded)",
                 "classify one image"]
        print(f"\n## Cold process start to first prediction, warm cache, median of {len(runs)} fresh processes")
        print("| stage | seconds |\n|---|---|")
        for name, s in zip(names, st):
            print(f"| {name} | {s:.3f} |")
        print(f"| total | {float(np.sum(st)):.3f} |")


if __name__ == "__main__":
    main()
