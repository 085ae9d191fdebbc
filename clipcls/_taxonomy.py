"""Taxonomies: load, validate, edit and save; pure graph functions.

A taxonomy is a rooted tree or DAG held in a networkx ``DiGraph`` whose edges
point from parent to child.  Each graph node carries a frozen :class:`Node`
under the attribute ``"node"``.

File format (YAML or JSON), either nested::

    name: shapes
    templates: ["a photo of a {}."]
    root:
      id: shape
      children:
        - id: round
          label: round shape
          children: [{id: circle}, {id: ellipse, synonyms: [oval]}]

or a flat list, where ``parents`` makes a DAG::

    nodes:
      - {id: animal}
      - {id: bat, parents: [mammal, flyer]}
"""

from __future__ import annotations

import difflib
import json
import math
import os
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from clipcls._errors import TaxonomyError
from clipcls._gc import gc_paused
from clipcls._prompts import DEFAULT_TEMPLATES, expand, text_hash

NODE_KEYS = ("id", "label", "synonyms", "prompts", "templates", "description", "threshold", "metadata", "children", "parent", "parents")
FILE_KEYS = ("name", "version", "description", "templates", "root", "nodes")


@dataclass(frozen=True)
class Node:
    """One class of a taxonomy."""

    id: str
    label: str
    synonyms: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()
    templates: tuple[str, ...] | None = None
    description: str = ""
    threshold: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.label, *self.synonyms)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id}
        if self.label != default_label(self.id):
            d["label"] = self.label
        for key in ("synonyms", "prompts"):
            if getattr(self, key):
                d[key] = list(getattr(self, key))
        if self.templates is not None:
            d["templates"] = list(self.templates)
        if self.description:
            d["description"] = self.description
        if self.threshold is not None:
            d["threshold"] = self.threshold
        if self.metadata:
            d["metadata"] = dict(self.metadata)
        return d


def default_label(node_id: str) -> str:
    """The label used when a node gives none: ``"sea_lion"`` -> ``"sea lion"``."""
    return node_id.replace("_", " ").replace("-", " ").strip()


# -- pure graph functions ----------------------------------------------------------

def root_of(G: nx.DiGraph) -> str:
    """The one node without a parent.

    >>> G = nx.DiGraph([("a", "b")]); root_of(G)
    'a'
    """
    roots = [n for n, d in G.in_degree() if d == 0]
    if len(roots) != 1:
        raise TaxonomyError(f"expected exactly one root, found {len(roots)}: {roots[:5]}")
    return roots[0]


def leaves(G: nx.DiGraph) -> list[str]:
    """Nodes without children, in insertion order.

    >>> leaves(nx.DiGraph([("a", "b"), ("a", "c")]))
    ['b', 'c']
    """
    return [n for n, d in G.out_degree() if d == 0]


def path_to_root(G: nx.DiGraph, node: str) -> list[str]:
    """Ids from the root down to ``node`` (first parent at each step, so a DAG gives one route).

    >>> path_to_root(nx.DiGraph([("a", "b"), ("b", "c")]), "c")
    ['a', 'b', 'c']
    """
    out = [node]
    seen = {node}
    while True:
        preds = list(G.predecessors(out[-1]))
        if not preds:
            return out[::-1]
        nxt = preds[0]
        if nxt in seen:
            raise TaxonomyError(f"cycle through node {nxt!r}")
        seen.add(nxt)
        out.append(nxt)


def depth(G: nx.DiGraph, node: str) -> int:
    """Edges from the root to ``node`` along :func:`path_to_root`.

    >>> depth(nx.DiGraph([("a", "b")]), "b")
    1
    """
    return len(path_to_root(G, node)) - 1


def ancestors_of(G: nx.DiGraph, node: str) -> set[str]:
    """Every node above ``node`` (all routes in a DAG), without ``node`` itself."""
    return nx.ancestors(G, node)


def lowest_common_ancestor(G: nx.DiGraph, a: str, b: str) -> str:
    """The deepest node that is an ancestor-or-self of both ``a`` and ``b``.

    >>> G = nx.DiGraph([("r", "x"), ("x", "a"), ("x", "b"), ("r", "c")])
    >>> lowest_common_ancestor(G, "a", "b"), lowest_common_ancestor(G, "a", "c")
    ('x', 'r')
    """
    common = (ancestors_of(G, a) | {a}) & (ancestors_of(G, b) | {b})
    return max(common, key=lambda n: (depth(G, n), n))


def height(G: nx.DiGraph, node: str) -> int:
    """Longest number of edges from ``node`` down to a leaf."""
    best = 0
    stack = [(node, 0)]
    while stack:
        n, d = stack.pop()
        best = max(best, d)
        stack.extend((c, d + 1) for c in G.successors(n))
    return best


# -- the Taxonomy object -----------------------------------------------------------

class Taxonomy:
    """A validated rooted tree or DAG of :class:`Node` s.

    >>> tax = Taxonomy.from_dict({"root": {"id": "shape", "children": [{"id": "circle"}, {"id": "star"}]}})
    >>> tax.root, tax.children("shape"), tax.leaves()
    ('shape', ['circle', 'star'], ['circle', 'star'])
    """

    def __init__(self, graph: nx.DiGraph, *, name: str = "taxonomy", templates: Sequence[str] = DEFAULT_TEMPLATES,
                 description: str = "", version: int | str | None = None, source: Path | None = None) -> None:
        self.graph = graph
        self.name = name
        self.templates = tuple(templates)
        self.description = description
        self.version = version
        self.source = source
        self.root = root_of(graph)

    # construction ------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str | os.PathLike[str] | None = None) -> Taxonomy:
        """Build and validate a taxonomy from parsed YAML/JSON data."""
        where = f"{source}" if source else "taxonomy"
        problems: list[str] = []
        if not isinstance(data, Mapping):
            raise TaxonomyError(f"{where}: the top level must be a mapping with 'root' or 'nodes', got {type(data).__name__}")
        for key in data:
            if key not in FILE_KEYS:
                raise TaxonomyError(f"{where}: unknown top-level key {key!r}{_did_you_mean(key, FILE_KEYS)}; allowed: {', '.join(FILE_KEYS)}")
        if ("root" in data) == ("nodes" in data):
            raise TaxonomyError(f"{where}: give exactly one of 'root' (a nested tree) or 'nodes' (a list with 'parent'/'parents')")
        templates = _templates(data.get("templates", DEFAULT_TEMPLATES), where, "file")
        name = data.get("name") or (Path(source).stem if source else "taxonomy")
        if not isinstance(name, str):
            raise TaxonomyError(f"{where}: 'name' must be a string")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise TaxonomyError(f"{where}: 'description' must be a string")

        G = nx.DiGraph()
        pending_edges: list[tuple[str, str, str]] = []  # (parent, child, where)
        items: deque[tuple[Any, str | None, str]] = deque()
        if "root" in data:
            items.append((data["root"], None, "root"))
        else:
            nodes = data["nodes"]
            if not isinstance(nodes, list) or not nodes:
                raise TaxonomyError(f"{where}: 'nodes' must be a non-empty list of node mappings")
            items.extend((n, None, f"nodes[{i}]") for i, n in enumerate(nodes))
        # Iterative walk: deep trees (10k levels) must not hit the recursion limit.
        while items:
            raw, parent, loc = items.popleft()
            node, kids, declared = _parse_node(raw, f"{where}: {loc}")
            if node.id in G:
                problems.append(f"{where}: duplicate node id {node.id!r} (at {loc}); every id must be unique")
                continue
            G.add_node(node.id, node=node)
            if parent is not None:
                pending_edges.append((parent, node.id, loc))
            for p in declared:
                pending_edges.append((p, node.id, loc))
            for i, kid in enumerate(kids):
                items.append((kid, node.id, f"{loc} > {node.id}.children[{i}]"))
        for parent, child, loc in pending_edges:
            if parent not in G:
                problems.append(f"{where}: node {child!r} names unknown parent {parent!r}{_did_you_mean(parent, list(G))}")
            else:
                G.add_edge(parent, child)
        if problems:
            raise TaxonomyError(_join(problems))
        _check_graph(G, where)
        src = Path(source) if source else None
        return cls(G, name=name, templates=templates, description=description, version=data.get("version"), source=src)

    def to_dict(self, flat: bool = False) -> dict[str, Any]:
        """Plain data for YAML/JSON: nested for trees, a flat list for DAGs (or when ``flat``)."""
        d: dict[str, Any] = {"name": self.name}
        if self.version is not None:
            d["version"] = self.version
        if self.description:
            d["description"] = self.description
        d["templates"] = list(self.templates)
        if self.is_tree() and not flat:
            nested: dict[str, dict[str, Any]] = {n: self.node(n).to_dict() for n in self.graph}
            for u, v in self.graph.edges():
                nested[u].setdefault("children", []).append(nested[v])
            d["root"] = nested[self.root]
        else:
            rows = []
            # Insertion order, not topological: parents are resolved after all
            # rows are read, and the order of siblings is part of the taxonomy.
            for n in self.graph:
                row = self.node(n).to_dict()
                ps = list(self.graph.predecessors(n))
                if len(ps) == 1:
                    row["parent"] = ps[0]
                elif ps:
                    row["parents"] = ps
                rows.append(row)
            d["nodes"] = rows
        return d

    # queries -------------------------------------------------------------------------
    def __contains__(self, node_id: object) -> bool:
        return node_id in self.graph

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def __iter__(self) -> Iterator[str]:
        return iter(self.graph)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Taxonomy):
            return NotImplemented
        return (self.name, self.templates, list(self.graph.nodes(data="node")), list(self.graph.edges())) == (
            other.name, other.templates, list(other.graph.nodes(data="node")), list(other.graph.edges()))

    def node(self, node_id: str) -> Node:
        try:
            # The raw node dict, not the NodeView: _build calls this for every node.
            return self.graph._node[node_id]["node"]
        except KeyError:
            raise TaxonomyError(f"{self._where()}: no node {node_id!r}{_did_you_mean(node_id, list(self.graph))}") from None

    def children(self, node_id: str) -> list[str]:
        return list(self.graph.successors(node_id))

    def parents(self, node_id: str) -> list[str]:
        return list(self.graph.predecessors(node_id))

    def leaves(self) -> list[str]:
        return leaves(self.graph)

    def path(self, node_id: str) -> list[str]:
        return path_to_root(self.graph, node_id)

    def is_tree(self) -> bool:
        return all(d <= 1 for _, d in self.graph.in_degree())

    def texts(self, node_id: str) -> list[str]:
        """Prompt texts of a node: its ``prompts``, or templates x (label + synonyms)."""
        node = self.node(node_id)
        if node.prompts:
            return list(node.prompts)
        return expand(node.names, node.templates if node.templates is not None else self.templates)

    def text_hashes(self) -> dict[str, str]:
        return {n: text_hash(self.texts(n)) for n in self.graph}

    def resolve(self, name: str) -> str:
        """A node id from an id, label or synonym (case-insensitive)."""
        if name in self.graph:
            return name
        low = name.strip().lower()
        for n in self.graph:
            node = self.node(n)
            if low == n.lower() or low in (s.lower() for s in node.names):
                return n
        choices = list(self.graph) + [self.node(n).label for n in self.graph]
        raise TaxonomyError(f"{self._where()}: {name!r} is not a node id, label or synonym{_did_you_mean(name, choices)}")

    def copy(self) -> Taxonomy:
        return Taxonomy(self.graph.copy(), name=self.name, templates=self.templates, description=self.description,
                        version=self.version, source=self.source)

    # edits (in place; callers that share a taxonomy across threads copy first) ----------
    def add_node(self, node_id: str, parent: str | Sequence[str], **fields: Any) -> Node:
        """Add a node under ``parent`` (or several parents, for a DAG)."""
        parents = [parent] if isinstance(parent, str) else list(parent)
        raw = {"id": node_id, **{k: v for k, v in fields.items() if v is not None}}
        node, kids, declared = _parse_node(raw, f"{self._where()}: new node")
        if kids or declared:
            raise TaxonomyError(f"{self._where()}: add one node at a time, with parent=...")
        if node.id in self.graph:
            raise TaxonomyError(f"{self._where()}: node {node.id!r} already exists; use rename to change its label")
        if not parents:
            raise TaxonomyError(f"{self._where()}: new node {node.id!r} needs a parent")
        for p in parents:
            self.node(p)
        self.graph.add_node(node.id, node=node)
        for p in parents:
            self.graph.add_edge(p, node.id)
        return node

    def remove_node(self, node_id: str) -> list[str]:
        """Remove ``node_id`` and every descendant no longer reachable; returns removed ids."""
        self.node(node_id)
        if node_id == self.root:
            raise TaxonomyError(f"{self._where()}: cannot remove the root {node_id!r}")
        doomed = {node_id}
        for d in nx.descendants(self.graph, node_id):
            # In a DAG, a descendant that still has a route to the root stays.
            if all(p in doomed or p in nx.descendants(self.graph, node_id) for p in self.graph.predecessors(d)):
                doomed.add(d)
        order = [n for n in self.graph if n in doomed]
        self.graph.remove_nodes_from(order)
        return order

    def update_node(self, node_id: str, **fields: Any) -> Node:
        """Change a node's label, synonyms, prompts, ... (its id stays)."""
        old = self.node(node_id)
        merged = {**old.to_dict(), "label": old.label, **{k: v for k, v in fields.items() if v is not None}}
        node, _, _ = _parse_node(merged, f"{self._where()}: node {node_id!r}")
        self.graph.nodes[node_id]["node"] = node
        return node

    def _where(self) -> str:
        return str(self.source) if self.source else self.name


# -- loading and saving ----------------------------------------------------------------

def load_taxonomy(path: str | os.PathLike[str]) -> Taxonomy:
    """Load and validate a YAML or JSON taxonomy file.

    >>> tax = load_taxonomy("taxonomies/shapes.yaml")  # doctest: +SKIP
    """
    p = Path(path)
    return taxonomy_from_bytes(read_taxonomy_bytes(p), p)


def read_taxonomy_bytes(path: Path) -> bytes:
    """The raw bytes of a taxonomy file, or a :class:`TaxonomyError` naming it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TaxonomyError(f"{path}: no such taxonomy file") from None
    except OSError as e:
        raise TaxonomyError(f"{path}: cannot read taxonomy file ({e})") from None


def taxonomy_from_bytes(data: bytes, path: Path) -> Taxonomy:
    """Parse and validate the bytes of the taxonomy file ``path``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TaxonomyError(f"{path}: cannot read taxonomy file ({e})") from None
    with gc_paused():
        return Taxonomy.from_dict(parse_text(text, path), source=path)


def parse_text(text: str, path: Path) -> Any:
    """Parse YAML (safely: no object tags) or JSON, chosen by suffix."""
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise TaxonomyError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
        except RecursionError:
            raise TaxonomyError(f"{path}: JSON nesting is too deep for the parser; use the flat 'nodes' list "
                                "with 'parent'") from None
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise TaxonomyError(f"{path}: invalid YAML{at}: {problem}") from None
    except RecursionError:
        raise TaxonomyError(f"{path}: YAML nesting is too deep for the parser; use the flat 'nodes' list with 'parent'") from None
    # Anchors and aliases share objects, so a few lines can stand for billions of values.
    if _expanded_size(doc, MAX_VALUES) > MAX_VALUES:
        raise TaxonomyError(f"{path}: the YAML expands to more than {MAX_VALUES:,} values through its aliases (*name); "
                            "write the values out instead of nesting aliases")
    return doc


MAX_VALUES = 5_000_000  # a 100k-node taxonomy with labels, synonyms and prompts stays far below


def _expanded_size(doc: Any, limit: int) -> int:
    """How many values ``doc`` holds with every shared object counted each time; stops past ``limit``."""
    n, stack = 0, [doc]
    while stack and n <= limit:
        x = stack.pop()
        n += 1
        if isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return n


def save_taxonomy(tax: Taxonomy, path: str | os.PathLike[str] | None = None) -> Path:
    """Write ``tax`` atomically as YAML or JSON (by suffix); returns the path."""
    p = Path(path) if path is not None else tax.source
    if p is None:
        raise TaxonomyError("this taxonomy was not loaded from a file; pass a path to save it")
    data = tax.to_dict()
    if p.suffix.lower() == ".json":
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        import yaml

        # Deep trees exceed the YAML emitter's recursion; they are written flat.
        if tax.is_tree() and height(tax.graph, tax.root) > 200:
            data = tax.to_dict(flat=True)
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)
    atomic_write_text(p, text)
    return p


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file, fsync and ``os.replace``: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# -- validation helpers ------------------------------------------------------------------

def _did_you_mean(word: object, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=3)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _join(problems: list[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
    return f"{len(problems)} problems:\n  " + "\n  ".join(problems[:10]) + more


def _strings(value: Any, where: str, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise TaxonomyError(f"{where}: {key!r} must be a list of strings, got {value!r:.80}")
    if any(not v.strip() for v in value):
        raise TaxonomyError(f"{where}: {key!r} holds an empty string; remove it")
    return tuple(v.strip() for v in value)


def _templates(value: Any, where: str, what: str) -> tuple[str, ...]:
    ts = _strings(value, where, "templates")
    if not ts:
        raise TaxonomyError(f"{where}: {what} 'templates' is empty; give at least one, such as 'a photo of a {{}}.'")
    for t in ts:
        if "{}" not in t:
            raise TaxonomyError(f"{where}: template {t!r} has no '{{}}' where the class name goes")
    return ts


def _parse_node(raw: Any, where: str) -> tuple[Node, list[Any], list[str]]:
    if isinstance(raw, str):
        raw = {"id": raw}
    if not isinstance(raw, Mapping):
        raise TaxonomyError(f"{where}: a node must be a mapping with at least 'id', got {type(raw).__name__} {raw!r:.60}")
    for key in raw:
        if key not in NODE_KEYS:
            raise TaxonomyError(f"{where}: unknown key {key!r}{_did_you_mean(key, NODE_KEYS)}; allowed: {', '.join(NODE_KEYS)}")
    node_id = raw.get("id")
    if isinstance(node_id, bool) or not isinstance(node_id, (str, int)) or not str(node_id).strip():
        raise TaxonomyError(f"{where}: every node needs a non-empty string 'id' (got {node_id!r})")
    node_id = str(node_id).strip()
    where = f"{where} (node {node_id!r})"
    label = raw.get("label", default_label(node_id))
    if not isinstance(label, str) or not label.strip():
        raise TaxonomyError(f"{where}: 'label' must be a non-empty string (got {label!r}); remove it to use the id")
    threshold = raw.get("threshold")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (0.0 <= float(threshold) <= 1.0) or math.isnan(float(threshold)):
            raise TaxonomyError(f"{where}: 'threshold' must be a number between 0 and 1 (got {threshold!r})")
        threshold = float(threshold)
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise TaxonomyError(f"{where}: 'metadata' must be a mapping (got {type(metadata).__name__})")
    try:
        if metadata:  # json.dumps even of {} costs ~6 us, a fifth of parsing a 20k-node file
            json.dumps(metadata)
    except (TypeError, ValueError):
        raise TaxonomyError(f"{where}: 'metadata' must hold only JSON values (strings, numbers, lists, mappings)") from None
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise TaxonomyError(f"{where}: 'description' must be a string")
    templates = _templates(raw["templates"], where, "node") if raw.get("templates") is not None else None
    kids = raw.get("children") or []
    if not isinstance(kids, list):
        raise TaxonomyError(f"{where}: 'children' must be a list of nodes")
    if "parent" in raw and "parents" in raw:
        raise TaxonomyError(f"{where}: give 'parent' or 'parents', not both")
    declared = list(_strings(raw.get("parents", raw.get("parent")), where, "parents"))
    node = Node(
        id=node_id, label=label.strip(), synonyms=_strings(raw.get("synonyms"), where, "synonyms"),
        prompts=_strings(raw.get("prompts"), where, "prompts"), templates=templates,
        description=description, threshold=threshold, metadata=dict(metadata),
    )
    return node, kids, declared


def _check_graph(G: nx.DiGraph, where: str) -> None:
    roots = [n for n, d in G.in_degree() if d == 0]
    if not nx.is_directed_acyclic_graph(G):
        cycle = nx.find_cycle(G)
        raise TaxonomyError(f"{where}: cycle {' -> '.join(u for u, _ in cycle)} -> {cycle[0][0]}; a node cannot be its own ancestor")
    if len(roots) != 1:
        raise TaxonomyError(
            f"{where}: a taxonomy needs exactly one root, found {len(roots)} ({', '.join(map(repr, roots[:5]))}); "
            "put them under a common parent node"
        )
