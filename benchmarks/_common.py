"""Helpers shared by the benchmark scripts: synthetic taxonomies and timing."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

import clipcls
from clipcls.zoo import synth

WORDS = [f"{c} {p} {s}" for c in synth.COLORS for p in ("solid", "striped", "dotted", "hollow") for s in synth.SHAPES]


def tree(n_leaves: int, fanout: int = 0, name: str | None = None) -> clipcls.Taxonomy:
    """A realistic tree with about ``n_leaves`` leaves in groups of ``fanout`` (default sqrt), labels from the model's world."""
    fanout = fanout or max(2, int(round(n_leaves ** 0.5)))
    groups = max(1, n_leaves // fanout)
    nodes = [{"id": "root"}]
    k = 0
    for g in range(groups):
        nodes.append({"id": f"g{g}", "parent": "root", "label": f"{synth.SHAPES[g % 10]} group {g}"})
        for _ in range(fanout):
            nodes.append({"id": f"n{k}", "parent": f"g{g}", "label": f"{WORDS[k % len(WORDS)]} {k // len(WORDS)}"})
            k += 1
    return clipcls.Taxonomy.from_dict({"name": name or f"tree{n_leaves}", "templates": ["a photo of a {}."], "nodes": nodes})


def deep_tree(n_nodes: int, branching: int = 10, name: str | None = None) -> clipcls.Taxonomy:
    """A WordNet-like tree of ``n_nodes`` nodes, ``branching`` children each, breadth first."""
    nodes = [{"id": "n0"}]
    for i in range(1, n_nodes):
        nodes.append({"id": f"n{i}", "parent": f"n{(i - 1) // branching}", "label": f"{WORDS[i % len(WORDS)]} {i // len(WORDS)}"})
    return clipcls.Taxonomy.from_dict({"name": name or f"deep{n_nodes}", "templates": ["a photo of a {}.", "a drawing of a {}."],
                                       "nodes": nodes})


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in seconds."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall times of each function over ``repeats`` turns, run in turns after one warm-up each,
    so drift on these shared machines hits all alike."""
    for f in fns.values():
        f()
    t: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            t[k].append(time.perf_counter() - t0)
    return t


def images(n: int, seed: int = 9) -> list:
    return [synth.render(synth.make_scene(seed, i)) for i in range(n)]
