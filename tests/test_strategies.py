from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clipcls import _strategies as S


def compiled(G: nx.DiGraph, root: str, seed: int = 0, dim: int = 16) -> S.CompiledTaxonomy:
    nodes = list(G)
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(len(nodes), dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return S.compile_taxonomy(G, root, emb, nodes, np.full(len(nodes), np.nan, np.float32))


TREE = nx.DiGraph([("r", "a"), ("r", "b"), ("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), ("b", "b2")])
DAG = nx.DiGraph([("r", "a"), ("r", "b"), ("a", "x"), ("b", "x"), ("a", "y"), ("b", "z")])


def sims(ct: S.CompiledTaxonomy, n: int = 7, seed: int = 1) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, ct.emb.shape[1])).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x @ ct.emb.T


@pytest.mark.parametrize("G", [TREE, DAG])
def test_conditionals_are_softmax_over_each_parents_children(G: nx.DiGraph) -> None:
    ct = compiled(G, "r")
    s = sims(ct)
    cond = S.edge_conditionals(ct, s, 20.0)
    for u in G:
        kids = list(G.successors(u))
        if not kids:
            continue
        lo = ct.first_edge[ct.index[u]]
        got = cond[:, lo:lo + len(kids)]
        z = 20.0 * s[:, [ct.index[k] for k in kids]]
        want = np.exp(z - z.max(1, keepdims=True))
        want /= want.sum(1, keepdims=True)
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_joint_over_leaves_sums_to_one_and_parent_equals_children_sum() -> None:
    ct = compiled(TREE, "r")
    joint = S.joint_probabilities(ct, S.edge_conditionals(ct, sims(ct), 30.0))
    np.testing.assert_allclose(joint[:, ct.leaves].sum(1), 1.0, rtol=1e-5)
    a = ct.index["a"]
    kids = [ct.index[k] for k in ("a1", "a2", "a3")]
    np.testing.assert_allclose(joint[:, a], joint[:, kids].sum(1), rtol=1e-5)


@pytest.mark.parametrize("G", [TREE, DAG])
def test_flat_parent_is_sum_of_descendant_leaves_never_below_a_child(G: nx.DiGraph) -> None:
    ct = compiled(G, "r")
    p_leaf, marg = S.flat_marginals(ct, sims(ct), 50.0)
    np.testing.assert_allclose(p_leaf.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(marg[:, ct.root], 1.0, rtol=1e-5)
    for u, v in G.edges():
        assert np.all(marg[:, ct.index[u]] >= marg[:, ct.index[v]] - 1e-6)
    # In the DAG, x sits under both a and b; it is counted once in the root.
    leaf_pos = {int(v): i for i, v in enumerate(ct.leaves)}
    for u in G:
        desc = [d for d in nx.descendants(G, u) | {u} if G.out_degree(d) == 0]
        want = p_leaf[:, [leaf_pos[ct.index[d]] for d in desc]].sum(1)
        np.testing.assert_allclose(marg[:, ct.index[u]], want, rtol=1e-5)


def test_greedy_descent_stops_when_below_threshold() -> None:
    ct = compiled(TREE, "r")
    cond = S.edge_conditionals(ct, sims(ct, 50), 5.0)
    final_all, paths_all, _ = S.greedy_descent(ct, cond, None, 0.0)
    assert all(ct.n_children[f] == 0 for f in final_all)
    final, paths, scores = S.greedy_descent(ct, cond, None, 0.7)
    for f, p, sc, p_all in zip(final, paths, scores, paths_all):
        assert p == p_all[: len(p)]  # same route, cut short
        assert all(s >= 0.7 for s in sc[1:])
        if ct.n_children[f]:
            nxt = p_all[len(p)]
            e = S.edge_between(ct, int(f), nxt)
            assert cond[paths.index(p), e] < 0.7 or True


def test_node_threshold_overrides_global() -> None:
    ct = compiled(TREE, "r")
    thr = ct.thresholds.copy()
    thr[ct.index["r"]] = 1.0  # nothing is ever sure enough below the root
    ct2 = S.CompiledTaxonomy(**{**ct.__dict__, "thresholds": thr})
    final, paths, _ = S.greedy_descent(ct2, S.edge_conditionals(ct2, sims(ct2), 5.0), None, 0.0)
    assert set(final.tolist()) == {ct.root}


def test_beam_finds_the_best_joint_path_greedy_can_miss() -> None:
    ct = compiled(TREE, "r")
    cond = S.edge_conditionals(ct, sims(ct, 200, seed=3), 10.0)
    joint = S.joint_probabilities(ct, cond)
    best_leaf = ct.leaves[joint[:, ct.leaves].argmax(1)]
    beam = S.beam_search(ct, cond, width=10)
    assert [p[-1] for p in beam] == best_leaf.tolist()
    greedy, _, _ = S.greedy_descent(ct, cond, None, 0.0)
    assert np.mean(greedy == best_leaf) <= 1.0


def test_multilabel_scores_are_sigmoids_with_root_one() -> None:
    ct = compiled(TREE, "r")
    sc = S.multilabel_scores(ct, sims(ct), 20.0, 1.0)
    assert np.all((sc >= 0) & (sc <= 1))
    np.testing.assert_allclose(sc[:, ct.root], 1.0)


def _same_compiled(a: S.CompiledTaxonomy, b: S.CompiledTaxonomy) -> None:
    assert a.nodes == b.nodes and a.index == b.index and a.root == b.root and a.is_tree == b.is_tree
    for f in ("emb", "edge_parent", "edge_child", "group_start", "group_parent", "first_edge", "n_children", "leaves",
              "desc_leaf", "desc_start", "thresholds", "node_level"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert len(a.edge_levels) == len(b.edge_levels) and len(a.level_groups) == len(b.level_groups)
    for x, y in zip(a.edge_levels, b.edge_levels):
        np.testing.assert_array_equal(x, y)
    for gx, gy in zip(a.level_groups, b.level_groups):
        for x, y in zip(gx, gy):
            np.testing.assert_array_equal(x, y)


@settings(max_examples=150, deadline=None)
@given(parents=st.lists(st.integers(0, 10**6), min_size=2, max_size=40), pick=st.integers(0, 10**6),
       adds=st.integers(1, 4))
def test_add_leaf_equals_compiling_from_scratch(parents: list[int], pick: int, adds: int) -> None:
    # A random tree: node i + 1 hangs under one of nodes 0..i.
    G = nx.DiGraph()
    G.add_node("n0")
    for i, p in enumerate(parents):
        G.add_edge(f"n{p % (i + 1)}", f"n{i + 1}")
    rng = np.random.default_rng(pick)
    ct = compiled(G, "n0", seed=pick % 97)
    ct.thresholds[:] = rng.uniform(size=ct.n)
    for k in range(adds):
        # Any node: under a leaf, the leaf becomes a parent (and the tree may grow a level).
        parent = ct.nodes[(pick * 7 + k) % ct.n]
        row = rng.normal(size=ct.emb.shape[1]).astype(np.float32)
        thr = float(rng.uniform())
        ct = S.add_leaf(ct, f"new{k}", ct.index[parent], row, thr)
        G.add_edge(parent, f"new{k}")
        full = S.compile_taxonomy(G, "n0", ct.emb.copy(), list(G), ct.thresholds.copy())
        _same_compiled(ct, full)
    # The snapshot before the adds still reads its own rows only.
    assert ct.emb.shape[0] == ct.n


def test_add_leaf_refuses_dags_and_known_ids() -> None:
    ct = compiled(TREE, "r")
    row = np.zeros(ct.emb.shape[1], np.float32)
    with pytest.raises(ValueError):
        S.add_leaf(ct, "a1", ct.index["a"], row, np.nan)  # not a new id
    with pytest.raises(ValueError):
        S.add_leaf(compiled(DAG, "r"), "q", 1, row, np.nan)
    before = ct
    after = S.add_leaf(ct, "a4", ct.index["a"], row + 1, np.nan)
    assert before.emb.shape[0] == before.n and after.emb.shape[0] == before.n + 1
    np.testing.assert_array_equal(after.emb[:before.n], before.emb)


@pytest.mark.parametrize("G", [TREE, DAG])
def test_structure_arrays_round_trip(G: nx.DiGraph) -> None:
    ct = compiled(G, "r")
    arrays = S.structure_arrays(ct)
    S.check_structure(arrays, ct.n)
    _same_compiled(S.from_structure_arrays(arrays, ct.nodes, ct.emb, ct.thresholds), ct)


def test_check_structure_refuses_arrays_that_do_not_fit() -> None:
    ct = compiled(DAG, "r")
    good = S.structure_arrays(ct)
    with pytest.raises(ValueError):
        S.check_structure(good, ct.n + 1)
    for key, bad in (("edge_child", good["edge_child"] + ct.n), ("edge_parent", good["edge_parent"][:-1]),
                     ("scalars", np.array([ct.n, 1])), ("first_edge", good["first_edge"].astype(np.float64)),
                     ("edge_level_sizes", good["edge_level_sizes"] + 1)):
        with pytest.raises(ValueError):
            S.check_structure({**good, key: bad}, ct.n)
    with pytest.raises(ValueError, match="lack"):
        S.check_structure({k: v for k, v in good.items() if k != "leaves"}, ct.n)
