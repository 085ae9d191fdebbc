"""Inference strategies over image embeddings: pure numpy, no torch.

A taxonomy is compiled once into flat arrays (:class:`CompiledTaxonomy`):
edges grouped by parent in BFS order, so each parent's softmax over its
children is a segment softmax (``np.*.reduceat``); joint path probabilities
are propagated level by level; flat marginals are segment sums over each
node's descendant leaves.  Everything is vectorised over a batch of images.

Scores per strategy:

* ``topdown``: conditional probability of each child given its parent
  (softmax over siblings); a node's joint probability is the product along
  its path (summed over routes in a DAG).
* ``flat``: softmax over all leaves; a node's score is the sum over its
  descendant leaves, so a parent never scores below any child.
* ``multilabel``: ``sigmoid(scale * (sim - mean sibling sim) - bias)`` per
  node, independently; a child only counts when its ancestors do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np

from clipcls._appendonly import RowIndex, Rows

MAX_CHUNK_FLOATS = 16_000_000  # bounds the (images x nodes) working arrays


@dataclass(frozen=True)
class CompiledTaxonomy:
    """Array form of a taxonomy plus its node embeddings."""

    nodes: Rows[str]
    index: RowIndex
    emb: np.ndarray  # (n, d) L2-normalised
    root: int
    edge_parent: np.ndarray  # (m,) parent node of each edge, grouped by parent
    edge_child: np.ndarray  # (m,)
    group_start: np.ndarray  # first edge of each parent that has children
    group_parent: np.ndarray  # that parent
    first_edge: np.ndarray  # (n,) first edge of a node's children, -1 for leaves
    n_children: np.ndarray  # (n,)
    edge_levels: tuple[np.ndarray, ...]  # edges grouped by child level, top first
    is_tree: bool
    leaves: np.ndarray  # node indices of leaves
    desc_leaf: np.ndarray  # concatenated leaf positions (into ``leaves``) below each node
    desc_start: np.ndarray  # (n,) offsets into desc_leaf
    thresholds: np.ndarray  # (n,) node threshold for deciding among its children, NaN = global
    # Per level (top first): its edges, the start of each parent's run within them, those parents.
    level_groups: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...] = ()
    node_level: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))  # (n,) longest-path depth
    # ``emb`` is a view of the first n rows of this buffer; its spare rows let add_leaf append
    # without copying every row (older snapshots never look past their own n).
    emb_buffer: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.nodes)


def compile_taxonomy(G: nx.DiGraph, root: str, emb: np.ndarray, nodes: list[str], thresholds: np.ndarray) -> CompiledTaxonomy:
    """Compile a DiGraph whose node order matches ``nodes`` / ``emb`` rows."""
    index = {n: i for i, n in enumerate(nodes)}
    succ = G.succ
    # Breadth first by hand: networkx's bfs_edges costs ~15 us a node, 0.3 s at 20k.
    order, seen = [root], {root}
    for u in order:  # grows while iterating
        for v in succ[u]:
            if v not in seen:
                seen.add(v)
                order.append(v)
    edges = [(index[u], index[v]) for u in order for v in succ[u]]
    ep = np.array([e[0] for e in edges], dtype=np.int64)
    ec = np.array([e[1] for e in edges], dtype=np.int64)
    n = len(nodes)
    n_children = np.zeros(n, np.int64)
    first_edge = np.full(n, -1, np.int64)
    if len(ep):
        starts = np.flatnonzero(np.r_[True, ep[1:] != ep[:-1]])
        group_parent = ep[starts]
        n_children[group_parent] = np.diff(np.r_[starts, len(ep)])
        first_edge[group_parent] = starts
    else:
        starts = np.zeros(0, np.int64)
        group_parent = np.zeros(0, np.int64)
    is_tree = all(d <= 1 for _, d in G.in_degree())
    # Plain Python lists in these loops: per-node numpy calls cost ~10x more at 100k nodes.
    topo = order if is_tree else list(nx.topological_sort(G))
    kids_of = [[] for _ in range(n)]
    for u, v in edges:
        kids_of[u].append(v)
    # Longest-path level, so every parent's joint is final before its children's.
    lvl = [0] * n
    for v in topo:
        i = index[v]
        for c in kids_of[i]:
            if lvl[c] < lvl[i] + 1:
                lvl[c] = lvl[i] + 1
    level = np.array(lvl, np.int64)
    edge_levels = tuple(np.flatnonzero(level[ec] == lv) for lv in range(1, int(level.max(initial=0)) + 1))
    leaf_list = [i for i in range(n) if not kids_of[i]]
    leaf_nodes = np.array(leaf_list, dtype=np.int64)
    leaf_pos = {v: i for i, v in enumerate(leaf_list)}
    desc: list[list[int]] = [[] for _ in range(n)]
    # Descendant leaves, children before parents (reverse topological order).
    for v in reversed(topo):
        i = index[v]
        if not kids_of[i]:
            desc[i] = [leaf_pos[i]]
        elif is_tree:
            desc[i] = [x for k in kids_of[i] for x in desc[k]]
        else:
            desc[i] = sorted({x for k in kids_of[i] for x in desc[k]})
    desc_start = np.cumsum([0] + [len(d) for d in desc[:-1]]).astype(np.int64)
    buffer = _grow(np.zeros((0, emb.shape[1]), np.float32), n)
    buffer[:n] = emb
    rows = Rows(nodes)
    return CompiledTaxonomy(
        level_groups=_level_groups(ep, edge_levels), node_level=level, emb_buffer=buffer,
        nodes=rows, index=RowIndex(rows, index), emb=buffer[:n], root=index[root],
        edge_parent=ep, edge_child=ec, group_start=starts, group_parent=group_parent,
        first_edge=first_edge, n_children=n_children, edge_levels=edge_levels, is_tree=is_tree,
        leaves=leaf_nodes, desc_leaf=np.fromiter((x for d in desc for x in d), np.int64),
        desc_start=desc_start, thresholds=thresholds,
    )


def _grow(buffer: np.ndarray, n: int) -> np.ndarray:
    """A buffer holding ``buffer``'s rows with room for ``n`` rows plus a quarter to spare."""
    out = np.zeros((n + max(64, n // 4), buffer.shape[1]), np.float32)
    out[:len(buffer)] = buffer
    return out


def _level_groups(ep: np.ndarray, edge_levels: tuple[np.ndarray, ...]) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]:
    out = []
    for edges in edge_levels:
        # BFS order keeps each parent's children contiguous, also within one level.
        par = ep[edges]
        starts_l = np.flatnonzero(np.r_[True, par[1:] != par[:-1]]) if len(par) else np.zeros(0, np.int64)
        out.append((edges, starts_l, par[starts_l]))
    return tuple(out)


def add_leaf(ct: CompiledTaxonomy, node: str, parent: int, emb_row: np.ndarray, threshold: float) -> CompiledTaxonomy:
    """``ct`` with a new leaf under ``parent``, equal to compiling the edited tree from scratch.

    Costs O(edges) in numpy and O(depth) in Python, not a Python pass over every
    node.  ``parent`` may be a leaf, which then becomes a parent.  Trees only.

    >>> ct2 = add_leaf(ct, "octagon", ct.index["polygon"], row, float("nan"))  # doctest: +SKIP
    """
    if not ct.is_tree or node in ct.index:
        raise ValueError("add_leaf needs a tree and a new node id")
    n, m = ct.n, len(ct.edge_parent)
    was_leaf = ct.n_children[parent] == 0
    if was_leaf:
        # Edges are grouped by parent in BFS order, and a tree's BFS meets each node through
        # its incoming edge: the new group goes before the first parent reached by a later edge.
        edge_of = np.full(n, -1, np.int64)
        edge_of[ct.edge_child] = np.arange(m)
        k = int(np.searchsorted(edge_of[ct.group_parent], edge_of[parent]))
        at = int(ct.group_start[k]) if k < len(ct.group_start) else m
        group_start = _insert(ct.group_start + (ct.group_start >= at), [k], at)
        group_parent = _insert(ct.group_parent, [k], parent)
    else:
        at = int(ct.first_edge[parent] + ct.n_children[parent])  # the new edge ends its parent's run
        group_start, group_parent = ct.group_start + (ct.group_start >= at), ct.group_parent
    ep = _insert(ct.edge_parent, [at], parent)
    ec = _insert(ct.edge_child, [at], n)
    first_edge = _shift_append(ct.first_edge, at, -1)  # leaves' -1 stays below ``at``
    if was_leaf:
        first_edge[parent] = at
    n_children = _insert(ct.n_children, [], 0, tail=True)
    n_children[parent] += 1
    lv_new = int(ct.node_level[parent]) + 1
    level = _insert(ct.node_level, [], lv_new, tail=True)
    # Edge indices from ``at`` on move up by one; the new edge joins its level, kept sorted.
    edge_levels = [_insert(e + (e >= at), [int(np.searchsorted(e, at))], at) if lv == lv_new else e + (e >= at)
                   for lv, e in enumerate(ct.edge_levels, start=1)]
    # Only the new edge's level regroups; elsewhere the edge indices just moved up.
    level_groups = [_level_groups(ep, (e,))[0] if lv == lv_new else (e, g[1], g[2])
                    for lv, (e, g) in enumerate(zip(edge_levels, ct.level_groups), start=1)]
    if lv_new > len(edge_levels):  # the tree grew a level
        edge_levels.append(np.array([at], np.int64))
        level_groups.append(_level_groups(ep, (edge_levels[-1],))[0])
    if was_leaf:
        leaves, desc_leaf, desc_start = _leaf_to_parent(ct, parent)
    else:
        leaves, desc_leaf, desc_start = _new_leaf_ranges(ct, parent)
    buffer = ct.emb_buffer if ct.emb_buffer is not None and len(ct.emb_buffer) > n else _grow(ct.emb, n + 1)
    buffer[n] = emb_row
    # Shared with ``ct``, not copied: copying touched every node (see _appendonly).
    nodes = ct.nodes.appended(node)
    return dataclasses.replace(
        ct, nodes=nodes, index=ct.index.appended(nodes), emb=buffer[:n + 1], emb_buffer=buffer,
        edge_parent=ep, edge_child=ec, group_start=group_start, group_parent=group_parent, first_edge=first_edge,
        n_children=n_children, edge_levels=tuple(edge_levels), node_level=level, level_groups=tuple(level_groups),
        leaves=leaves, desc_leaf=desc_leaf, desc_start=desc_start,
        thresholds=np.append(ct.thresholds, np.float32(threshold)))


def _new_leaf_ranges(ct: CompiledTaxonomy, parent: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(leaves, desc_leaf, desc_start) after a new leaf (node ``ct.n``) under ``parent``, which has children."""
    n, ds, total = ct.n, ct.desc_start, len(ct.desc_leaf)

    def lengths(x: np.ndarray) -> np.ndarray:  # ranges lie in node order: a node's ends where the next one's starts
        return np.where(x + 1 < n, ds[np.minimum(x + 1, n - 1)], total) - ds[x]

    # Every ancestor's range lists its children's ranges in edge order, so the new leaf sits
    # at the same offset within the path child's block as within that child's own range.
    new_pos = len(ct.leaves)
    rel = int(lengths(np.array([parent]))[0])  # the end of the parent's own range
    cuts = [int(ds[parent]) + rel]
    child = parent
    while child != ct.root:
        edge = int(np.flatnonzero(ct.edge_child == child)[0])
        up = int(ct.edge_parent[edge])
        lo = int(ct.first_edge[up])
        rel += int(lengths(ct.edge_child[lo:edge]).sum())
        cuts.append(int(ds[up]) + rel)
        child = up
    cuts_sorted = np.sort(np.array(cuts, np.int64))
    desc_leaf = _insert(ct.desc_leaf, cuts_sorted.tolist(), new_pos, tail=True)
    desc_start = _insert(ds + np.searchsorted(cuts_sorted, ds, side="right"), [], len(desc_leaf) - 1, tail=True)
    return _insert(ct.leaves, [], n, tail=True), desc_leaf, desc_start


def _leaf_to_parent(ct: CompiledTaxonomy, parent: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(leaves, desc_leaf, desc_start) after a new leaf (node ``ct.n``) under the leaf ``parent``.

    Leaves are numbered in node order: ``parent``'s number goes, later ones move
    down by one and the new leaf takes the last.  Every range that held
    ``parent`` now holds the new leaf in its place, so no range changes length.
    """
    lp = int(np.searchsorted(ct.leaves, parent))
    new_pos = len(ct.leaves) - 1
    d = ct.desc_leaf
    desc_leaf = np.empty(len(d) + 1, np.int64)
    body = desc_leaf[:-1]
    np.subtract(d, d > lp, out=body)
    body[d == lp] = new_pos
    desc_leaf[-1] = new_pos
    leaves = _insert(np.delete(ct.leaves, lp), [], ct.n, tail=True)
    return leaves, desc_leaf, _insert(ct.desc_start, [], len(d), tail=True)


_STRUCTURE = ("edge_parent", "edge_child", "group_start", "group_parent", "first_edge", "n_children", "node_level",
              "leaves", "desc_leaf", "desc_start")


def structure_arrays(ct: CompiledTaxonomy) -> dict[str, np.ndarray]:
    """The structure of ``ct`` as flat int64 arrays (no names, embeddings or thresholds).

    >>> ct2 = from_structure_arrays(structure_arrays(ct), ct.nodes, ct.emb, ct.thresholds)  # doctest: +SKIP
    """
    out = {k: np.asarray(getattr(ct, k), np.int64) for k in _STRUCTURE}
    out["edge_levels"] = np.concatenate(ct.edge_levels).astype(np.int64) if ct.edge_levels else np.zeros(0, np.int64)
    out["edge_level_sizes"] = np.array([len(e) for e in ct.edge_levels], np.int64)
    out["scalars"] = np.array([ct.root, int(ct.is_tree)], np.int64)
    return out


def check_structure(arrays: dict[str, np.ndarray], n: int) -> None:
    """Raise ``ValueError`` unless ``arrays`` (from :func:`structure_arrays`) can describe ``n`` nodes."""
    try:
        a = {k: np.asarray(arrays[k]) for k in (*_STRUCTURE, "edge_levels", "edge_level_sizes", "scalars")}
    except KeyError as e:
        raise ValueError(f"compiled taxonomy arrays lack {e}") from None
    m = len(a["edge_parent"])
    # Indices out of range would fail later, far from the cause.
    if (any(x.dtype != np.int64 or x.ndim != 1 for x in a.values())
            or any(len(a[k]) != n for k in ("first_edge", "n_children", "node_level", "desc_start"))
            or len(a["edge_child"]) != m or int(a["edge_level_sizes"].sum()) != m or len(a["edge_levels"]) != m
            or len(a["scalars"]) != 2 or len(a["group_start"]) != len(a["group_parent"]) or int(a["n_children"].sum()) != m
            or any(len(a[k]) and (a[k].min() < 0 or a[k].max() >= n) for k in ("edge_parent", "edge_child", "leaves", "group_parent"))
            or not 0 <= int(a["scalars"][0]) < n):
        raise ValueError("compiled taxonomy arrays do not fit together")


def from_structure_arrays(arrays: dict[str, np.ndarray], nodes: Sequence[str], emb: np.ndarray,
                          thresholds: np.ndarray) -> CompiledTaxonomy:
    """A :class:`CompiledTaxonomy` from :func:`structure_arrays` output that passed :func:`check_structure`."""
    n = len(nodes)
    sizes = arrays["edge_level_sizes"]
    edge_levels = tuple(np.split(arrays["edge_levels"], np.cumsum(sizes)[:-1])) if len(sizes) else ()
    buffer = _grow(np.zeros((0, emb.shape[1]), np.float32), n)
    buffer[:n] = emb
    rows = Rows(nodes)
    return CompiledTaxonomy(
        nodes=rows, index=RowIndex.of(rows), emb=buffer[:n], emb_buffer=buffer,
        root=int(arrays["scalars"][0]), is_tree=bool(arrays["scalars"][1]), edge_levels=edge_levels,
        level_groups=_level_groups(arrays["edge_parent"], edge_levels), thresholds=np.asarray(thresholds, np.float32),
        **{k: arrays[k] for k in _STRUCTURE},
    )


def _insert(a: np.ndarray, cuts: Sequence[int], value: int, tail: bool = False) -> np.ndarray:
    """``np.insert(a, cuts, value)`` for sorted ``cuts``, plus ``value`` at the end when ``tail``.

    Slice copies: np.insert's general path cost 3-5x more, and add_leaf runs it on
    every per-edge and per-node array.

    >>> _insert(np.array([1, 2, 3]), [0, 2], 9, tail=True).tolist()
    [9, 1, 2, 9, 3, 9]
    """
    k = len(cuts)
    out = np.empty(len(a) + k + tail, a.dtype)
    prev = 0
    for j, c in enumerate(cuts):
        out[prev + j:c + j] = a[prev:c]
        out[c + j] = value
        prev = c
    out[prev + k:len(a) + k] = a[prev:]
    if tail:
        out[-1] = value
    return out


def _shift_append(a: np.ndarray, at: int, value: int) -> np.ndarray:
    """``a + (a >= at)`` with ``value`` appended, in one allocation."""
    out = np.empty(len(a) + 1, a.dtype)
    np.add(a, a >= at, out=out[:-1])
    out[-1] = value
    return out


def chunk_size(ct: CompiledTaxonomy) -> int:
    per_image = max(ct.n, len(ct.desc_leaf), len(ct.edge_child), 1)
    return max(1, MAX_CHUNK_FLOATS // per_image)


def softmax_rows(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def edge_conditionals(ct: CompiledTaxonomy, sims: np.ndarray, scale: float) -> np.ndarray:
    """P(child | parent) for every edge: a softmax over each parent's children."""
    z = scale * sims[:, ct.edge_child]
    if not z.shape[1]:
        return z
    gmax = np.maximum.reduceat(z, ct.group_start, axis=1)
    z -= np.repeat(gmax, ct.n_children[ct.group_parent], axis=1)
    np.exp(z, out=z)
    gsum = np.add.reduceat(z, ct.group_start, axis=1)
    z /= np.repeat(gsum, ct.n_children[ct.group_parent], axis=1)
    return z


def joint_probabilities(ct: CompiledTaxonomy, cond: np.ndarray) -> np.ndarray:
    """P(node) under top-down: product of conditionals along the path (summed over routes)."""
    joint = np.zeros((cond.shape[0], ct.n), np.float32)
    joint[:, ct.root] = 1.0
    for edges in ct.edge_levels:
        contrib = joint[:, ct.edge_parent[edges]] * cond[:, edges]
        if ct.is_tree:
            joint[:, ct.edge_child[edges]] = contrib
        else:
            np.add.at(joint.T, ct.edge_child[edges], contrib.T)
    return joint


def flat_marginals(ct: CompiledTaxonomy, sims: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(leaf probabilities, per-node marginal = sum over descendant leaves)."""
    p_leaf = softmax_rows(scale * sims[:, ct.leaves])
    if not ct.is_tree:
        # A DAG leaf under two parents must count once per ancestor: sum over the explicit sets.
        return p_leaf, np.add.reduceat(p_leaf[:, ct.desc_leaf], ct.desc_start, axis=1)
    # In a tree, children sum into parents level by bottom-up level: O(edges), not O(leaves x depth).
    marg = np.zeros((sims.shape[0], ct.n), np.float32)
    marg[:, ct.leaves] = p_leaf
    for edges, starts, parents in reversed(ct.level_groups):
        marg[:, parents] = np.add.reduceat(marg[:, ct.edge_child[edges]], starts, axis=1)
    return p_leaf, marg


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's ``k`` highest scores, best first (ties: lower index first).

    For small ``k`` a few argmax passes beat ``argpartition`` by several times on wide rows.
    """
    n = scores.shape[1]
    k = min(k, n)
    if k > 8:
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(scores), 1))
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
        return np.take_along_axis(top, order, 1)
    work = np.array(scores, dtype=np.float64, order="C", copy=True)
    rows = np.arange(len(work))
    out = np.empty((len(work), k), np.int64)
    for j in range(k):
        best = work.argmax(1)
        out[:, j] = best
        work[rows, best] = -np.inf
    return out


def subtree_max(ct: CompiledTaxonomy, sims: np.ndarray) -> np.ndarray:
    """Each node's best similarity over its descendant leaves (CHiLS: a parent seen through its children)."""
    leaf = sims[:, ct.leaves]
    return np.maximum.reduceat(leaf[:, ct.desc_leaf], ct.desc_start, axis=1)


def multilabel_scores(ct: CompiledTaxonomy, sims: np.ndarray, scale: float, bias: float,
                      overrides: Sequence[tuple[int, np.ndarray]] = ()) -> np.ndarray:
    """Independent sigmoid per node, centred on the mean similarity of its siblings.

    ``overrides`` replaces the edge probabilities of a parent's children,
    ``(first edge, (B, k) probabilities)``, as fitted probes do.
    """
    z = sims[:, ct.edge_child]
    if not z.shape[1]:
        return np.zeros_like(sims)
    gmean = np.add.reduceat(z, ct.group_start, axis=1) / ct.n_children[ct.group_parent]
    z = scale * (z - np.repeat(gmean, ct.n_children[ct.group_parent], axis=1)) - bias
    p_edge = 1.0 / (1.0 + np.exp(-z))
    for lo, p in overrides:
        p_edge[:, lo:lo + p.shape[1]] = p
    out = np.zeros_like(sims)
    out[:, ct.root] = 1.0
    # A node's score is its best route's edge score; in a tree, its only edge.
    np.maximum.at(out.T, ct.edge_child, p_edge.T)
    return out


def greedy_descent(ct: CompiledTaxonomy, score_edge: np.ndarray, node_score: np.ndarray | None,
                   threshold: float) -> tuple[np.ndarray, list[list[int]], list[list[float]]]:
    """Follow the best child from the root while its score clears the threshold.

    ``score_edge`` (B, m) is the score of choosing each edge's child (the
    conditional for top-down); when ``node_score`` is given (flat marginals),
    children are ranked and thresholded by that instead.  Returns the final
    node per image, the paths and the per-level scores.
    """
    b = score_edge.shape[0] if node_score is None else node_score.shape[0]
    cur = np.full(b, ct.root, np.int64)
    active = np.ones(b, bool)
    paths = [[ct.root] for _ in range(b)]
    scores: list[list[float]] = [[1.0] for _ in range(b)]
    thr = np.where(np.isnan(ct.thresholds), threshold, ct.thresholds)
    rows = np.arange(b)
    while active.any():
        act = rows[active]
        nc = ct.n_children[cur[act]]
        done = nc == 0
        active[act[done]] = False
        act = act[~done]
        if not len(act):
            break
        for u in np.unique(cur[act]):
            sel = act[cur[act] == u]
            lo, k = ct.first_edge[u], ct.n_children[u]
            kids = ct.edge_child[lo:lo + k]
            s = score_edge[np.ix_(sel, np.arange(lo, lo + k))] if node_score is None else node_score[np.ix_(sel, kids)]
            best = s.argmax(axis=1)
            best_s = s[np.arange(len(sel)), best]
            ok = best_s >= thr[u]
            active[sel[~ok]] = False
            for r, child, sc in zip(sel[ok], kids[best[ok]], best_s[ok]):
                paths[r].append(int(child))
                scores[r].append(float(sc))
            cur[sel[ok]] = kids[best[ok]]
    return cur, paths, scores


def beam_search(ct: CompiledTaxonomy, cond: np.ndarray, width: int) -> list[list[int]]:
    """Best full path per image by joint probability, keeping ``width`` partial paths per level."""
    out = []
    for r in range(cond.shape[0]):
        beam: list[tuple[float, list[int]]] = [(1.0, [ct.root])]
        finished: list[tuple[float, list[int]]] = []
        while beam:
            cand: list[tuple[float, list[int]]] = []
            for p, path in beam:
                u = path[-1]
                k = ct.n_children[u]
                if k == 0:
                    finished.append((p, path))
                    continue
                lo = ct.first_edge[u]
                for e in range(lo, lo + k):
                    cand.append((p * float(cond[r, e]), path + [int(ct.edge_child[e])]))
            cand.sort(key=lambda t: -t[0])
            beam = cand[:width]
        out.append(max(finished, key=lambda t: t[0])[1])
    return out


def edge_between(ct: CompiledTaxonomy, parent: int, child: int) -> int:
    lo, k = ct.first_edge[parent], ct.n_children[parent]
    hits = np.flatnonzero(ct.edge_child[lo:lo + k] == child)
    return int(lo + hits[0])
