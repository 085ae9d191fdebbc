"""Labelled image data: folder trees and CSV / JSONL manifests, resolved against a taxonomy.

Formats (shared by ``clipcls probe train``, ``eval`` and ``calibrate``):

* a folder tree whose subfolders are named by node id or label; nested
  folders may follow the taxonomy path (``polygon/hexagon/x.png``), and the
  deepest folder that names a node is the label;
* a CSV manifest with rows ``image,label[,label...]`` (a header row
  ``image,label`` is optional), or a JSONL manifest of
  ``{"image": ..., "label": ...}`` / ``{"image": ..., "labels": [...]}`` rows.
  Relative image paths are relative to the manifest.

>>> ds = load_labelled("data/shapes", tax)          # doctest: +SKIP
>>> ds.paths[0], ds.labels[0]                        # doctest: +SKIP
('data/shapes/circle/0.png', ('circle',))
"""

from __future__ import annotations

import csv
import difflib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from clipcls._errors import DataError
from clipcls._images import IMAGE_SUFFIXES
from clipcls._taxonomy import Taxonomy


@dataclass(frozen=True)
class LabelledImages:
    """Image paths with one or more taxonomy node ids each."""

    paths: tuple[str, ...]
    labels: tuple[tuple[str, ...], ...]
    source: str

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def multilabel(self) -> bool:
        return any(len(ls) > 1 for ls in self.labels)

    def counts(self) -> Counter[str]:
        """Examples per node id (each label counted once per image)."""
        return Counter(n for ls in self.labels for n in ls)

    def subset(self, idx: list[int] | range) -> LabelledImages:
        return LabelledImages(tuple(self.paths[i] for i in idx), tuple(self.labels[i] for i in idx), self.source)


def _resolver(tax: Taxonomy, where: str):  # noqa: ANN202 - a small closure
    lookup: dict[str, str] = {}
    for n in tax:
        node = tax.node(n)
        for name in (n, *node.names):
            lookup.setdefault(name.strip().lower(), n)
    choices = sorted(set(lookup))

    def resolve(name: str, loc: str) -> str:
        hit = lookup.get(name.strip().lower())
        if hit is None:
            close = difflib.get_close_matches(name.strip().lower(), choices, n=3, cutoff=0.6)
            hint = f" (close matches: {', '.join(repr(c) for c in close)})" if close else ""
            raise DataError(f"{where}: {loc}: label {name!r} is not a node of taxonomy {tax.name!r}{hint}; "
                            "rename the folder or manifest label, or add the class to the taxonomy")
        return hit

    return resolve


def load_labelled(source: str | os.PathLike[str], tax: Taxonomy) -> LabelledImages:
    """Read a folder tree or a CSV / JSONL manifest; every label must resolve to a node."""
    p = Path(source)
    if p.is_dir():
        return _from_folder(p, tax)
    if not p.exists():
        raise DataError(f"{p}: no such folder or manifest")
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _from_jsonl(p, tax)
    if suffix in (".csv", ".tsv", ".txt"):
        return _from_csv(p, tax)
    raise DataError(f"{p}: a labelled dataset is a folder, a .csv or a .jsonl manifest")


def _from_folder(root: Path, tax: Taxonomy) -> LabelledImages:
    resolve = _resolver(tax, str(root))
    paths, labels = [], []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        rel = Path(dirpath).relative_to(root)
        if not rel.parts:
            if any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in files):
                raise DataError(f"{root}: images directly in the top folder have no label; "
                                "put them in subfolders named by node id or label")
            continue
        imgs = sorted(f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES)
        if not imgs:
            continue
        label = resolve(rel.parts[-1], f"folder {rel}")
        for part in rel.parts[:-1]:
            # Parent folders must be consistent with the taxonomy path when they name nodes.
            try:
                anc = resolve(part, f"folder {rel}")
            except DataError:
                continue
            if anc != label and anc not in tax.graph.pred[label] and anc not in _ancestors(tax, label):
                raise DataError(f"{root}: folder {rel}: {part!r} is not an ancestor of {label!r} in the taxonomy")
        for f in imgs:
            paths.append(str(Path(dirpath) / f))
            labels.append((label,))
    if not paths:
        raise DataError(f"{root}: no images found in subfolders (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return LabelledImages(tuple(paths), tuple(labels), str(root))


def _ancestors(tax: Taxonomy, node: str) -> set[str]:
    import networkx as nx

    return nx.ancestors(tax.graph, node)


def _row(path_text: str, names: list[str], base: Path, loc: str, resolve) -> tuple[str, tuple[str, ...]]:  # noqa: ANN001
    if not path_text.strip():
        raise DataError(f"{base}: {loc}: empty image path")
    names = [n for n in names if n.strip()]
    if not names:
        raise DataError(f"{base}: {loc}: image {path_text!r} has no label")
    ids = tuple(dict.fromkeys(resolve(n, loc) for n in names))
    img = Path(path_text.strip())
    return str(img if img.is_absolute() else base.parent / img), ids


def _from_csv(path: Path, tax: Taxonomy) -> LabelledImages:
    resolve = _resolver(tax, str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read manifest ({e})") from None
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    rows = list(csv.reader(text.splitlines(), delimiter=delim))
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["image", "label"]:
        rows = rows[1:]
        start = 2
    else:
        start = 1
    out = [_row(r[0], r[1:], path, f"line {i}", resolve) for i, r in enumerate(rows, start) if r and any(c.strip() for c in r)]
    if not out:
        raise DataError(f"{path}: the manifest has no rows")
    return LabelledImages(tuple(p for p, _ in out), tuple(ls for _, ls in out), str(path))


def _from_jsonl(path: Path, tax: Taxonomy) -> LabelledImages:
    resolve = _resolver(tax, str(path))
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read manifest ({e})") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {i}: invalid JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("image"), str):
            raise DataError(f"{path}: line {i}: each row needs an 'image' string and 'label' or 'labels'")
        names = row.get("labels", row.get("label"))
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError(f"{path}: line {i}: 'label' must be a string, 'labels' a list of strings")
        out.append(_row(row["image"], names, path, f"line {i}", resolve))
    if not out:
        raise DataError(f"{path}: the manifest has no rows")
    return LabelledImages(tuple(p for p, _ in out), tuple(ls for _, ls in out), str(path))


