from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipcls import DataError, load_labelled, load_taxonomy
from conftest import SHAPES_YAML


@pytest.fixture(scope="module")
def tax():  # noqa: ANN201
    return load_taxonomy(SHAPES_YAML)


def _touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def test_folder_tree_by_id_label_or_synonym_and_nested_paths(tmp_path: Path, tax) -> None:  # noqa: ANN001
    _touch(tmp_path / "circle" / "a.png")
    _touch(tmp_path / "Oval" / "b.jpg")
    _touch(tmp_path / "polygon" / "hexagon" / "c.png")
    _touch(tmp_path / "notes.txt")
    ds = load_labelled(tmp_path, tax)
    assert dict(zip([Path(p).name for p in ds.paths], ds.labels)) == {
        "a.png": ("circle",), "b.jpg": ("ellipse",), "c.png": ("hexagon",)}
    assert not ds.multilabel and ds.counts()["circle"] == 1


def test_nested_folder_that_contradicts_the_taxonomy(tmp_path: Path, tax) -> None:  # noqa: ANN001
    _touch(tmp_path / "round" / "hexagon" / "c.png")
    with pytest.raises(DataError, match="not an ancestor"):
        load_labelled(tmp_path, tax)


def test_unknown_label_lists_close_matches(tmp_path: Path, tax) -> None:  # noqa: ANN001
    _touch(tmp_path / "hexagonn" / "a.png")
    with pytest.raises(DataError, match=r"'hexagonn'.*close matches: 'hexagon'"):
        load_labelled(tmp_path, tax)


def test_csv_and_jsonl_manifests_with_multiple_labels(tmp_path: Path, tax) -> None:  # noqa: ANN001
    (tmp_path / "m.csv").write_text("image,label\nimgs/a.png,circle\nimgs/b.png,star,heart\n")
    ds = load_labelled(tmp_path / "m.csv", tax)
    assert ds.paths == (str(tmp_path / "imgs/a.png"), str(tmp_path / "imgs/b.png"))
    assert ds.labels == (("circle",), ("star", "heart")) and ds.multilabel
    rows = [{"image": "/abs/a.png", "label": "disc"}, {"image": "b.png", "labels": ["star", "plus sign"]}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = load_labelled(tmp_path / "m.jsonl", tax)
    assert ds.paths[0] == "/abs/a.png" and ds.labels == (("circle",), ("star", "cross"))


@pytest.mark.parametrize("name, text, needle", [
    ("bad.jsonl", "{not json}\n", "line 1: invalid JSON"),
    ("bad.jsonl", '{"image": 3, "label": "circle"}\n', "needs an 'image'"),
    ("empty.csv", "image,label\n", "no rows"),
    ("nolabel.csv", "a.png\n", "has no label"),
    ("x.parquet", "", "a .csv or a .jsonl"),
])
def test_bad_manifests(tmp_path: Path, tax, name: str, text: str, needle: str) -> None:  # noqa: ANN001
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=needle):
        load_labelled(tmp_path / name, tax)


def test_missing_source_and_unlabelled_images(tmp_path: Path, tax) -> None:  # noqa: ANN001
    with pytest.raises(DataError, match="no such"):
        load_labelled(tmp_path / "nope", tax)
    _touch(tmp_path / "top.png")
    with pytest.raises(DataError, match="no label"):
        load_labelled(tmp_path, tax)
