from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from clipcls import Classifier, load_taxonomy
from clipcls import _classify
from clipcls._compiled_cache import KEEP, entry_path, load_entry, save_entry
from conftest import SHAPES_YAML, CountingEncoder, shape_images


@pytest.fixture(scope="module")
def images() -> list:
    return shape_images(2)[0]


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    p = tmp_path / "shapes.yaml"
    shutil.copy(SHAPES_YAML, p)
    return p


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every taxonomy file the classifier module parses."""
    seen: list[Path] = []
    real = _classify.taxonomy_from_bytes

    def counting(data: bytes, path: Path):  # noqa: ANN202
        seen.append(path)
        return real(data, path)

    monkeypatch.setattr(_classify, "taxonomy_from_bytes", counting)
    return seen


def _entry(spec: Path, cache_dir: Path, encoder) -> Path:  # noqa: ANN001
    return entry_path(cache_dir, encoder.fingerprint, spec.read_bytes(), spec)


def rows(preds) -> list:  # noqa: ANN001
    return [(p.node, p.path, round(p.confidence, 5), p.stopped_at, dict(p.metadata)) for p in preds]


@pytest.mark.parametrize("strategy", ["topdown", "flat", "multilabel"])
def test_warm_start_skips_parsing_and_predicts_the_same(spec: Path, cache_dir: Path, counting: CountingEncoder,
                                                        parses: list[Path], images, strategy: str) -> None:  # noqa: ANN001
    cold = Classifier(spec, encoder=counting, cache_dir=cache_dir)
    assert parses == [spec] and _entry(spec, cache_dir, counting).is_file()
    calls = len(counting.text_calls)
    warm = Classifier(spec, encoder=counting, cache_dir=cache_dir)
    assert parses == [spec], "the warm start parsed the file"
    assert len(counting.text_calls) == calls and warm.last_sync.encoded == 0
    assert rows(warm.classify(images, strategy=strategy)) == rows(cold.classify(images, strategy=strategy))
    assert parses == [spec], "classifying parsed the file"
    # The Taxonomy object is there when asked for, parsed from the same bytes.
    assert warm.taxonomy == cold.taxonomy and warm.taxonomy.source == spec and len(parses) == 2


def test_an_edited_file_is_compiled_again(spec: Path, cache_dir: Path, encoder, images) -> None:  # noqa: ANN001
    Classifier(spec, encoder=encoder, cache_dir=cache_dir)
    spec.write_text(spec.read_text().replace("- id: star\n", "- id: star\n          label: starfish\n"))
    clf = Classifier(spec, encoder=encoder, cache_dir=cache_dir)
    assert clf.last_sync.encoded == 1  # only the star's prompts changed
    assert clf.taxonomy.node("star").label == "starfish"
    assert "starfish" in {s.label for p in clf.classify(images, top_k=20) for s in p.top_k}
    again = Classifier(spec, encoder=encoder, cache_dir=cache_dir)
    assert again.last_sync.encoded == 0 and again._state.labels == clf._state.labels


def test_warm_start_reencodes_nodes_the_text_index_lost(spec: Path, cache_dir: Path, counting: CountingEncoder,
                                                       images) -> None:  # noqa: ANN001
    cold = Classifier(spec, encoder=counting, cache_dir=cache_dir)
    shutil.rmtree(cache_dir / "index")
    warm = Classifier(spec, encoder=counting, cache_dir=cache_dir)
    assert warm.last_sync.encoded == len(cold.taxonomy)
    assert rows(warm.classify(images)) == rows(cold.classify(images))


def test_unusable_entries_are_compiled_again(spec: Path, cache_dir: Path, encoder, images, parses: list[Path],
                                             caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    cold = Classifier(spec, encoder=encoder, cache_dir=cache_dir)
    path = _entry(spec, cache_dir, encoder)
    good = path.read_bytes()
    for bad in (good[: len(good) // 2], b"", good[:100] + bytes(200) + good[300:], b"PK\x03\x04 not a zip"):
        path.write_bytes(bad)
        with caplog.at_level(logging.WARNING, logger="clipcls"):
            clf = Classifier(spec, encoder=encoder, cache_dir=cache_dir)
        assert "compiled taxonomy" in caplog.text
        caplog.clear()
        assert rows(clf.classify(images)) == rows(cold.classify(images))
        assert load_entry(path) is not None, "the entry was not written again"
    # Entries whose parts disagree (a node short; a structure of another size) are refused, not served.
    e = load_entry(path)
    short = dict(name=e.name, nodes=e.nodes[:-1], hashes=e.hashes[:-1], labels=e.labels[:-1], metadata=e.metadata[:-1],
                 thresholds=e.thresholds[:-1])
    for kw, why in ((dict(short, hashes=e.hashes), "disagree on the number of nodes"),
                    (dict(short, structure=e.structure), "do not fit together"),
                    (dict(short, structure={**e.structure, "edge_child": e.structure["edge_child"] + 100}), "do not fit")):
        save_entry(path, **{"structure": e.structure, **kw})
        with caplog.at_level(logging.WARNING, logger="clipcls"):
            clf = Classifier(spec, encoder=encoder, cache_dir=cache_dir)
        assert why in caplog.text
        caplog.clear()
        assert rows(clf.classify(images)) == rows(cold.classify(images))


def test_thresholds_argument_applies_on_a_warm_start_and_does_not_stick(spec: Path, cache_dir: Path, encoder,
                                                                       images) -> None:  # noqa: ANN001
    Classifier(spec, encoder=encoder, cache_dir=cache_dir)
    strict = Classifier(spec, encoder=encoder, cache_dir=cache_dir, thresholds={"shape": 1.0})
    assert all(p.node == "shape" and p.stopped_at == "shape" for p in strict.classify(images, strategy="topdown"))
    plain = Classifier(spec, encoder=encoder, cache_dir=cache_dir)
    assert any(p.node != "shape" for p in plain.classify(images, strategy="topdown"))


def test_edits_after_a_warm_start(spec: Path, cache_dir: Path, counting: CountingEncoder, images) -> None:  # noqa: ANN001
    Classifier(spec, encoder=counting, cache_dir=cache_dir)
    warm = Classifier(spec, encoder=counting, cache_dir=cache_dir)
    parent = warm.taxonomy.parents("star")[0]
    warm.add_class("octagon", parent=parent)
    assert warm.last_sync.encoded == 1 and "octagon" in load_taxonomy(spec)
    nxt = Classifier(spec, encoder=counting, cache_dir=cache_dir)
    assert nxt.last_sync.encoded == 0 and "octagon" in nxt._state.compiled.index
    assert rows(nxt.classify(images)) == rows(warm.classify(images))


def test_no_entry_without_persistence_and_old_entries_are_pruned(spec: Path, cache_dir: Path, encoder) -> None:  # noqa: ANN001
    Classifier(spec, encoder=encoder, cache_dir=cache_dir, persist=False)
    assert not (cache_dir / "compiled").exists()
    text = spec.read_text()
    for i in range(KEEP + 3):
        spec.write_text(text + f"\n# edit {i}\n")
        Classifier(spec, encoder=encoder, cache_dir=cache_dir)
    entries = list((cache_dir / "compiled" / encoder.fingerprint).glob("*.npz"))
    assert len(entries) == KEEP and _entry(spec, cache_dir, encoder) in entries


def test_a_bad_file_still_fails_before_the_model_loads(tmp_path: Path, cache_dir: Path) -> None:
    from clipcls import TaxonomyError

    bad = tmp_path / "bad.yaml"
    bad.write_text("root: {id: a, children: [{id: b, colour: red}]}\n")
    # No encoder given and a model that does not exist: the taxonomy error must come first.
    with pytest.raises(TaxonomyError, match="colour"):
        Classifier(bad, model="no-such-model-anywhere", cache_dir=cache_dir)
    with pytest.raises(TaxonomyError, match="no such taxonomy file"):
        Classifier(tmp_path / "missing.yaml", model="no-such-model-anywhere", cache_dir=cache_dir)


def test_entry_holds_no_embeddings(spec: Path, cache_dir: Path, encoder) -> None:  # noqa: ANN001
    clf = Classifier(spec, encoder=encoder, cache_dir=cache_dir)
    e = load_entry(_entry(spec, cache_dir, encoder))
    assert e.nodes == list(clf._state.compiled.nodes)
    assert all(a.dtype == np.int64 for a in e.structure.values())
    assert e.hashes == clf.index.hashes(e.nodes)


def test_copies_of_a_file_without_a_name_keep_their_own_names(tmp_path: Path, cache_dir: Path, encoder) -> None:  # noqa: ANN001
    text = "root: {id: shape, children: [{id: circle}, {id: star}]}\n"
    a, b = tmp_path / "first.yaml", tmp_path / "second.yaml"
    a.write_text(text)
    b.write_text(text)
    for p in (a, b, a, b):
        clf = Classifier(p, encoder=encoder, cache_dir=cache_dir)
        assert clf.taxonomy.name == p.stem and clf.index.dir.name.startswith(p.stem)
