from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from clipcls import Classifier, Taxonomy, load_taxonomy
from clipcls._prompts import fix_articles
from clipcls.zoo import synth
from conftest import SHAPES_YAML, CountingEncoder, shape_images


@pytest.fixture(scope="module")
def images() -> tuple[list, list[str]]:
    return shape_images(6)


@pytest.fixture
def clf(encoder, cache_dir: Path) -> Classifier:  # noqa: ANN001
    return Classifier(SHAPES_YAML, encoder=encoder, cache_dir=cache_dir)


def accuracy(preds, names) -> float:  # noqa: ANN001
    return float(np.mean([p.node == n for p, n in zip(preds, names)]))


@pytest.mark.parametrize("strategy", ["flat", "topdown"])
def test_embedded_model_classifies_shapes(clf: Classifier, images, strategy: str) -> None:  # noqa: ANN001
    preds = clf.classify(images[0], strategy=strategy)
    assert accuracy(preds, images[1]) >= 0.8
    p = preds[0]
    assert p.path[0] == "shape" and p.path[-1] == p.node and len(p.path) == 3
    assert p.metadata.get("family") in ("round", "polygon", "other")
    assert len(p.top_k) == 5 and p.top_k[0].score >= p.top_k[-1].score


def test_flat_equals_open_clip_zero_shot_recipe(encoder, cache_dir: Path, images) -> None:  # noqa: ANN001
    import open_clip
    import torch

    templates = ["a photo of a {}.", "a drawing of a {}.", "itap of a {}."]
    tax = Taxonomy.from_dict({"templates": templates, "root": {"id": "shape", "children": [{"id": s} for s in synth.SHAPES]}})
    clf = Classifier(tax, encoder=encoder, cache_dir=cache_dir)
    ours = clf.classify(images[0], strategy="flat", top_k=len(synth.SHAPES))
    W = open_clip.build_zero_shot_classifier(
        encoder._model, encoder._tokenizer, synth.SHAPES,
        [lambda c, t=t: fix_articles(t.format(c)) for t in templates], num_classes_per_batch=10, use_tqdm=False,
    ).numpy()
    feats = clf.embed(images[0])
    with torch.no_grad():
        probs = torch.softmax(torch.from_numpy(encoder.logit_scale * feats @ W), dim=1).numpy()
    assert [p.node for p in ours] == [synth.SHAPES[i] for i in probs.argmax(1)]
    for p, row in zip(ours, probs):
        got = {s.id: s.score for s in p.top_k}
        np.testing.assert_allclose([got[s] for s in synth.SHAPES], row, atol=1e-4)


def test_threshold_stops_at_a_coarser_node(clf: Classifier, images) -> None:  # noqa: ANN001
    sure = clf.classify(images[0], strategy="topdown", threshold=0.0)
    assert all(p.stopped_at is None for p in sure)
    unsure = clf.classify(images[0], strategy="topdown", threshold=0.999999)
    stopped = [p for p in unsure if p.stopped_at is not None]
    assert stopped, "a near-1 threshold must stop some answers early"
    for p in stopped:
        assert p.node == p.stopped_at and p.node in ("shape", "round", "polygon", "other")
        assert p.label == clf.taxonomy.node(p.node).label
    flat = clf.classify(images[0], strategy="flat", threshold=0.999999)
    for p in flat:
        assert all(s >= 0.999999 for s in p.path_scores[1:])


def test_beam_and_scores_are_consistent(clf: Classifier, images) -> None:  # noqa: ANN001
    greedy = clf.classify(images[0], strategy="topdown")
    beam = clf.classify(images[0], strategy="topdown", beam=3)
    assert accuracy(beam, images[1]) >= accuracy(greedy, images[1]) - 0.05
    for p in greedy:
        np.testing.assert_allclose(p.confidence, np.prod(p.path_scores), rtol=1e-4)


def test_multilabel_reports_several_objects_with_ancestors(clf: Classifier) -> None:
    imgs, truth = [], []
    for i in range(20):
        scene = synth.make_scene(4242, i, n_objects=2)
        imgs.append(synth.render(scene))
        truth.append({o.shape for o in scene.objects})
    preds = clf.classify(imgs, strategy="multilabel")
    recall = []
    for p, t in zip(preds, truth):
        got = {s.id for s in p.labels}
        for s in got:  # a child is reported only with its ancestors
            assert set(clf.taxonomy.path(s)[1:-1]) <= got
        recall.append(len(got & t) / len(t))
    assert np.mean(recall) >= 0.5


def test_add_class_encodes_only_that_node_and_predicts_it(encoder, cache_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    src = tmp_path / "shapes.yaml"
    tax = load_taxonomy(SHAPES_YAML)
    tax.remove_node("star")
    from clipcls import save_taxonomy

    save_taxonomy(tax, src)
    counting = CountingEncoder(encoder)
    clf = Classifier(src, encoder=counting, cache_dir=cache_dir)
    stars = [synth.render(synth.make_scene(99, i, n_objects=1, shape="star")) for i in range(8)]
    assert not any(p.node == "star" for p in clf.classify(stars))
    before = counting.texts_encoded
    clf.add_class("star", "other", metadata={"family": "other"})
    added = counting.text_calls[-1]
    assert counting.texts_encoded - before == len(added) == len(clf.taxonomy.texts("star"))
    assert all("star" in t for t in added)
    assert np.mean([p.node == "star" for p in clf.classify(stars)]) >= 0.75
    # Persisted: the file has the node, and a fresh classifier encodes nothing.
    assert "star" in load_taxonomy(src)
    fresh = CountingEncoder(encoder)
    Classifier(src, encoder=fresh, cache_dir=cache_dir)
    assert fresh.texts_encoded == 0


def test_rename_and_remove_class(clf: Classifier, encoder, cache_dir: Path) -> None:  # noqa: ANN001
    clf.rename_class("heart", label="love heart", save=False)
    assert clf.taxonomy.node("heart").label == "love heart"
    assert clf.last_sync.encoded == 1
    removed = clf.remove_class("other", save=False)
    assert removed == ["other", "star", "heart", "cross"]
    assert all(p.path[1] in ("round", "polygon") for p in clf.classify(shape_images(1)[0]))


def test_dag_taxonomy_classifies(encoder, cache_dir: Path) -> None:  # noqa: ANN001
    tax = Taxonomy.from_dict({"nodes": [
        {"id": "shape"}, {"id": "pointy", "parent": "shape"}, {"id": "smooth", "parent": "shape"},
        {"id": "star", "parent": "pointy"}, {"id": "triangle", "parent": "pointy"},
        {"id": "heart", "parents": ["pointy", "smooth"]}, {"id": "circle", "parent": "smooth"},
    ]})
    clf = Classifier(tax, encoder=encoder, cache_dir=cache_dir)
    for strategy in ("flat", "topdown", "multilabel"):
        preds = clf.classify(shape_images(1)[0][:3], strategy=strategy)
        assert all(p.path[0] == "shape" for p in preds)


def test_bad_images_are_recorded_or_raised(clf: Classifier, tmp_path: Path) -> None:
    from clipcls import ImageError

    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    good = synth.render(synth.make_scene(1, 1))
    preds = clf.classify([good, bad, good], on_error="record")
    assert [p.ok for p in preds] == [True, False, True]
    assert "bad.png" in preds[1].error
    with pytest.raises(ImageError, match="bad.png"):
        clf.classify([good, bad])


def test_invalid_arguments(clf: Classifier) -> None:
    x = np.zeros((1, clf.encoder.embed_dim), np.float32)
    with pytest.raises(ValueError, match="unknown strategy"):
        clf.classify_embeddings(x, strategy="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        clf.classify_embeddings(x, threshold=1.5)
    with pytest.raises(ValueError, match="shape"):
        clf.classify_embeddings(np.zeros((1, 3), np.float32))


def test_concurrent_classify_while_adding_classes(clf: Classifier, images) -> None:  # noqa: ANN001
    feats = clf.embed(images[0][:10])
    errors: list[BaseException] = []
    sizes: set[int] = set()
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                preds = clf.classify_embeddings(feats, strategy="flat", top_k=100)
                # One consistent snapshot: every row sees the same leaf set.
                n = {len(p.top_k) for p in preds}
                assert len(n) == 1
                sizes.update(n)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    for i in range(5):
        clf.add_class(f"blob{i}", "other", save=False)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert len(sizes) >= 1 and max(sizes) <= 15


class HashEncoder:
    """A cheap stand-in for a model: each text's vector is seeded by its hash. Exercises the engine, not CLIP."""

    name, fingerprint, embed_dim, logit_scale = "hash", "hash-encoder-v1", 16, 50.0

    def encode_texts(self, texts):  # noqa: ANN001, ANN201
        import hashlib

        out = np.stack([np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:12], 16)).normal(size=16)
                        for t in texts]).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def encode_images(self, images):  # noqa: ANN001, ANN201
        raise NotImplementedError


@pytest.mark.parametrize("shape", ["deep", "wide"])
def test_very_deep_and_very_wide_trees_classify_without_recursion_errors(shape: str, tmp_path: Path) -> None:
    if shape == "deep":  # 10,000 levels
        nodes = [{"id": "n0"}] + [{"id": f"n{i}", "parent": f"n{i - 1}"} for i in range(1, 10_000)]
        leaf = "n9999"
    else:  # 100,000 children of the root
        nodes = [{"id": "r"}] + [{"id": f"c{i}", "parent": "r"} for i in range(100_000)]
        leaf = "c4242"
    tax = Taxonomy.from_dict({"templates": ["{}"], "nodes": nodes})
    clf = Classifier(tax, encoder=HashEncoder(), cache_dir=tmp_path, persist=False)
    X = clf._state.compiled.emb[[clf._state.compiled.index[leaf]]]
    for strategy in ("topdown", "flat", "multilabel"):
        (p,) = clf.classify_embeddings(X, strategy=strategy, top_k=3)
        assert p.ok and len(p.top_k) >= 1
    (p,) = clf.classify_embeddings(X, strategy="topdown", beam=2)
    assert p.node is not None
    (p,) = clf.classify_embeddings(X, strategy="flat")
    assert p.node == leaf and len(p.path) == (10_000 if shape == "deep" else 2)


def test_inputs_are_streamed_not_held(clf: Classifier) -> None:
    import io
    import itertools

    buf = io.BytesIO()
    synth.render(synth.make_scene(3, 0)).save(buf, format="PNG")
    data, pulled = buf.getvalue(), [0]

    def sources():  # noqa: ANN202 - 100,000 inputs, made only when asked for
        for _ in range(100_000):
            pulled[0] += 1
            yield data

    clf.batch_size = 8
    first = list(itertools.islice(clf.iter_classify(sources()), 20))
    assert len(first) == 20 and all(p.ok for p in first)
    from clipcls._decode import CHUNK, MIN_FOR_PROCESSES

    # A bounded read-ahead (the peek that chooses processes, a window, a chunk), not the whole input.
    assert pulled[0] <= 20 + MIN_FOR_PROCESSES + 2 * clf.batch_size + CHUNK


def test_fast_add_matches_a_classifier_built_from_scratch_and_rolls_back_on_failure(encoder, cache_dir: Path,
                                                                                      images) -> None:  # noqa: ANN001
    clf = Classifier(SHAPES_YAML, encoder=encoder, cache_dir=cache_dir, persist=False)
    before = clf._state.compiled
    clf.add_class("octagon", parent="polygon", save=False)
    clf.add_class("oval", parent="round", synonyms=["egg shape"], save=False)
    assert clf._state.compiled is not before and before.n == clf._state.compiled.n - 2  # old snapshot untouched
    fresh = Classifier(clf.taxonomy.copy(), encoder=encoder, cache_dir=cache_dir, persist=False)
    X = clf.embed(images[0][:20])
    for strategy in ("topdown", "flat", "multilabel", "chils"):
        a = clf.classify_embeddings(X, strategy=strategy, top_k=12)
        b = fresh.classify_embeddings(X, strategy=strategy, top_k=12)
        assert [(p.node, p.path, [s.id for s in p.top_k]) for p in a] == [(p.node, p.path, [s.id for s in p.top_k]) for p in b]
        np.testing.assert_allclose([p.confidence for p in a], [p.confidence for p in b], rtol=1e-5)

    class Broken(CountingEncoder):
        def encode_texts(self, texts):  # noqa: ANN001, ANN202
            raise RuntimeError("encoder down")

    clf.encoder = Broken(encoder)
    n = len(clf.taxonomy)
    with pytest.raises(RuntimeError, match="encoder down"):
        clf.add_class("kite", parent="polygon", save=False)
    assert "kite" not in clf.taxonomy and len(clf.taxonomy) == n
    assert "kite" not in clf._state.compiled.index


def test_adding_a_class_with_probes_serves_what_a_rebuild_would(encoder, cache_dir: Path, caplog: pytest.LogCaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    import logging

    from clipcls import Probes

    clf = Classifier(SHAPES_YAML, encoder=encoder, cache_dir=cache_dir, persist=False)
    imgs, names = shape_images(8, seed=31)
    X = clf.embed(imgs)
    clf.set_probes(Probes(seed=0).fit(X, [(n,) for n in names], clf))
    assert {h.parent for h in clf._state.heads} >= {"shape", "polygon", "other"}
    # Under a family (the root's head goes stale), under the root, under a leaf (which becomes a
    # parent, and its family's head goes stale), then under a family again.
    for node, parent in (("octagon", "polygon"), ("blob", "shape"), ("starfish", "star"), ("moon", "other")):
        with caplog.at_level(logging.INFO, logger="clipcls"), monkeypatch.context() as m:
            m.setattr(clf, "_edit", lambda *a: pytest.fail("rebuilt instead of adding the leaf in place"))
            clf.add_class(node, parent, save=False)
        fast = clf._state
        assert "octagon" in fast.compiled.index and fast.taxonomy is clf.taxonomy
        got = {s: clf.classify_embeddings(X, strategy=s, top_k=20) for s in ("topdown", "multilabel", "flat")}
        clf.refresh()  # a full rebuild of the same taxonomy
        want = clf._state
        assert [(h.parent, h.lo, h.kind) for h in fast.heads] == [(h.parent, h.lo, h.kind) for h in want.heads]
        for a, b in zip(fast.heads, want.heads):
            np.testing.assert_allclose(a.W, b.W, rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(a.b, b.b, rtol=1e-6, atol=1e-7)
        for s, preds in got.items():
            again = clf.classify_embeddings(X, strategy=s, top_k=20)
            assert [(p.node, p.path, p.stopped_at) for p in preds] == [(p.node, p.path, p.stopped_at) for p in again]
            np.testing.assert_allclose([p.confidence for p in preds], [p.confidence for p in again], rtol=1e-5)
    assert "probe for 'shape' is stale" in caplog.text and "probe for 'other' is stale" in caplog.text
    assert not {"shape", "other"} & {h.parent for h in clf._state.heads}
    assert clf.taxonomy.parents("starfish") == ["star"] and "starfish" in clf.taxonomy.leaves()
