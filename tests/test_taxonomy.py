from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipcls import Taxonomy, TaxonomyError, load_taxonomy, save_taxonomy
from clipcls._taxonomy import (
    depth,
    height,
    leaves,
    lowest_common_ancestor,
    path_to_root,
    root_of,
)

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", ["shapes.yaml", "colors.yaml"])
def test_shipped_taxonomies_load_and_round_trip(tmp_path: Path, name: str) -> None:
    tax = load_taxonomy(REPO / "taxonomies" / name)
    assert len(tax.leaves()) >= 10
    for suffix in (".yaml", ".json"):
        out = save_taxonomy(tax, tmp_path / f"copy{suffix}")
        again = load_taxonomy(out)
        assert again == tax
        assert list(again.graph.edges()) == list(tax.graph.edges())


def test_shapes_is_three_levels() -> None:
    tax = load_taxonomy(REPO / "taxonomies" / "shapes.yaml")
    assert tax.children(tax.root) == ["round", "polygon", "other"]
    assert {depth(tax.graph, leaf) for leaf in tax.leaves()} == {2}
    assert tax.path("hexagon") == ["shape", "polygon", "hexagon"]


def test_flat_nodes_with_dag_and_fields(tmp_path: Path) -> None:
    p = write(tmp_path, json.dumps({
        "name": "zoo",
        "templates": ["a photo of a {}."],
        "nodes": [
            {"id": "animal"},
            {"id": "mammal", "parent": "animal"},
            {"id": "flyer", "parent": "animal", "threshold": 0.4},
            {"id": "bat", "parents": ["mammal", "flyer"], "synonyms": ["flying fox"], "metadata": {"sku": 7}},
            {"id": "dog", "parent": "mammal", "prompts": ["a dog", "a puppy"], "templates": ["{}!"]},
        ],
    }), "zoo.json")
    tax = load_taxonomy(p)
    assert not tax.is_tree()
    assert tax.parents("bat") == ["mammal", "flyer"]
    assert tax.node("flyer").threshold == 0.4
    assert tax.node("bat").metadata == {"sku": 7}
    assert tax.texts("bat") == ["a photo of a bat.", "a photo of a flying fox."]
    assert tax.texts("dog") == ["a dog", "a puppy"]  # explicit prompts win over templates
    out = save_taxonomy(tax, tmp_path / "zoo2.yaml")
    assert load_taxonomy(out) == tax


def test_articles_are_fixed_in_prompts() -> None:
    tax = Taxonomy.from_dict({"templates": ["a photo of a {}."], "root": {"id": "x", "children": [{"id": "ellipse"}]}})
    assert tax.texts("ellipse") == ["a photo of an ellipse."]


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"nodes": [{"id": "a"}, {"id": "b", "parent": "a"}, {"id": "a", "parent": "b"}]}, "duplicate node id 'a'"),
        ({"nodes": [{"id": "a", "parent": "c"}, {"id": "b", "parent": "a"}, {"id": "c", "parent": "b"}]}, "cycle"),
        ({"nodes": [{"id": "a"}, {"id": "b"}]}, "exactly one root"),
        ({"nodes": [{"id": "a"}, {"id": "b", "parent": "aa"}]}, "unknown parent 'aa'"),
        ({"root": {"id": "a", "label": ""}}, "'label' must be a non-empty string"),
        ({"root": {"id": "a", "synonyms": "x", "children": [{"id": "b", "synonyms": [1]}]}}, "'synonyms' must be a list of strings"),
        ({"root": {"id": "a", "threshold": 2}}, "'threshold' must be a number between 0 and 1"),
        ({"root": {"id": "a", "childs": []}}, "did you mean 'children'"),
        ({"root": {"id": "a"}, "templates": ["no slot"]}, "has no '{}'"),
        ({"root": {"id": ""}}, "non-empty string 'id'"),
        ({"root": {"id": "a"}, "nodes": []}, "exactly one of 'root'"),
        ([1, 2], "top level must be a mapping"),
    ],
)
def test_validation_names_file_node_and_fix(tmp_path: Path, doc: object, needle: str) -> None:
    p = write(tmp_path, json.dumps(doc), "bad.json")
    with pytest.raises(TaxonomyError) as e:
        load_taxonomy(p)
    assert needle in str(e.value)
    assert "bad.json" in str(e.value)


def test_yaml_errors_and_unsafe_tags(tmp_path: Path) -> None:
    with pytest.raises(TaxonomyError, match=r"invalid YAML at line \d+, column \d+"):
        load_taxonomy(write(tmp_path, "root:\n  id: [unclosed\n"))
    # safe_load: a Python object tag is refused, not executed.
    with pytest.raises(TaxonomyError, match="invalid YAML"):
        load_taxonomy(write(tmp_path, "root: !!python/object/apply:os.system ['echo pwned']\n"))
    with pytest.raises(TaxonomyError, match="no such taxonomy file"):
        load_taxonomy(tmp_path / "missing.yaml")


def test_edits_add_remove_update() -> None:
    tax = Taxonomy.from_dict({"root": {"id": "r", "children": [{"id": "a", "children": [{"id": "a1"}]}, {"id": "b"}]}})
    tax.add_node("c", "r", label="sea lion", synonyms=["seal"])
    assert tax.children("r") == ["a", "b", "c"]
    with pytest.raises(TaxonomyError, match="already exists"):
        tax.add_node("c", "r")
    with pytest.raises(TaxonomyError, match="no node 'zz'"):
        tax.add_node("d", "zz")
    assert tax.remove_node("a") == ["a", "a1"]
    with pytest.raises(TaxonomyError, match="cannot remove the root"):
        tax.remove_node("r")
    tax.update_node("b", label="bee", synonyms=["honeybee"])
    assert tax.node("b").names == ("bee", "honeybee")
    assert tax.resolve("Honeybee") == "b"
    with pytest.raises(TaxonomyError, match="did you mean"):
        tax.resolve("bea")


def test_remove_keeps_dag_nodes_that_still_have_a_route() -> None:
    tax = Taxonomy.from_dict({"nodes": [{"id": "r"}, {"id": "x", "parent": "r"}, {"id": "y", "parent": "r"},
                                        {"id": "z", "parents": ["x", "y"]}]})
    assert tax.remove_node("x") == ["x"]
    assert tax.parents("z") == ["y"]


def test_graph_functions() -> None:
    G = nx.DiGraph([("r", "a"), ("a", "a1"), ("a", "a2"), ("r", "b")])
    assert root_of(G) == "r"
    assert leaves(G) == ["a1", "a2", "b"]
    assert path_to_root(G, "a2") == ["r", "a", "a2"]
    assert lowest_common_ancestor(G, "a1", "a2") == "a"
    assert lowest_common_ancestor(G, "a1", "b") == "r"
    assert lowest_common_ancestor(G, "a1", "a1") == "a1"
    assert height(G, "r") == 2


def test_deep_and_wide_trees_load_without_recursion(tmp_path: Path) -> None:
    deep = {"nodes": [{"id": "n0"}] + [{"id": f"n{i}", "parent": f"n{i - 1}"} for i in range(1, 10_000)]}
    tax = Taxonomy.from_dict(deep)
    assert depth(tax.graph, "n9999") == 9999
    out = save_taxonomy(tax, tmp_path / "deep.yaml")
    assert load_taxonomy(out) == tax
    wide = {"root": {"id": "r", "children": [{"id": f"c{i}"} for i in range(100_000)]}}
    assert len(Taxonomy.from_dict(wide).leaves()) == 100_000


# -- property-based: whatever the file holds, only TaxonomyError comes out ---------------------
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=6),
                     st.sampled_from(["a", "b", "r", "{}", "a {}.", ""]))
_keys = st.sampled_from(["id", "label", "synonyms", "prompts", "templates", "description", "threshold", "metadata",
                         "children", "parent", "parents", "root", "nodes", "name", "version", "lable", "x"])
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(_keys, inner, max_size=5)), max_leaves=25)


def _only_taxonomy_errors(fn, *args: object) -> None:  # noqa: ANN001
    try:
        fn(*args)
    except TaxonomyError:
        pass


@settings(max_examples=400, deadline=None)
@given(doc=st.dictionaries(_keys, _values, max_size=6))
def test_random_documents_raise_only_taxonomy_error(doc: dict) -> None:
    _only_taxonomy_errors(Taxonomy.from_dict, doc)


@settings(max_examples=150, deadline=None)
@given(nodes=st.lists(st.fixed_dictionaries({"id": st.sampled_from("abcdefg")},
                                            optional={"parent": st.sampled_from("abcdefgz"),
                                                      "parents": st.lists(st.sampled_from("abcdefgz"), max_size=3),
                                                      "label": _scalars, "threshold": _scalars}), max_size=8))
def test_random_flat_graphs_raise_only_taxonomy_error(nodes: list) -> None:
    # Cycles, several roots, unknown parents, duplicates and wrong types all land here.
    _only_taxonomy_errors(Taxonomy.from_dict, {"nodes": nodes})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))),
       suffix=st.sampled_from([".yaml", ".json"]))
def test_random_file_text_raises_only_taxonomy_error(tmp_path: Path, text: str, suffix: str) -> None:
    p = tmp_path / f"t{suffix}"
    p.write_text(text, encoding="utf-8")
    _only_taxonomy_errors(load_taxonomy, p)


def test_non_utf8_file_is_a_taxonomy_error(tmp_path: Path) -> None:
    p = tmp_path / "t.yaml"
    p.write_bytes(b"root:\n  id: \xff\xfe\n")
    with pytest.raises(TaxonomyError, match="cannot read"):
        load_taxonomy(p)


def test_nesting_and_alias_bombs_are_refused(tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_text("[" * 20000 + "]" * 20000)
    with pytest.raises(TaxonomyError, match="nesting is too deep"):
        load_taxonomy(tmp_path / "deep.json")
    (tmp_path / "deep.yaml").write_text("[" * 20000 + "]" * 20000)
    with pytest.raises(TaxonomyError, match="nesting is too deep"):
        load_taxonomy(tmp_path / "deep.yaml")
    # "Billion laughs": 9 levels of 9 aliases each would be 387M strings, from 11 lines.
    lines = ["root:", "  id: r", "  metadata:", '    a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(TaxonomyError, match="expands to more than"):
        load_taxonomy(tmp_path / "bomb.yaml")
    # A modest alias is fine.
    (tmp_path / "ok.yaml").write_text("templates: &t ['a photo of a {}.']\nroot:\n  id: r\n  children:\n"
                                      "    - {id: a, templates: *t}\n    - {id: b, templates: *t}\n")
    assert load_taxonomy(tmp_path / "ok.yaml").node("a").templates == ("a photo of a {}.",)
