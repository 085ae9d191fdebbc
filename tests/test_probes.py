from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipcls import Classifier, DataError, NotFittedError, ProbeError, Probes, Taxonomy, load_probes
from clipcls.zoo import synth
from conftest import SHAPES_YAML


def _shapes(clf: Classifier, seed: int, per_shape: int, shapes=synth.SHAPES):  # noqa: ANN001, ANN202
    scenes = [synth.make_scene(seed, i, n_objects=1, shape=shapes[i % len(shapes)]) for i in range(per_shape * len(shapes))]
    return clf.embed([synth.render(s) for s in scenes]), [(s.objects[0].shape,) for s in scenes]


@pytest.fixture(scope="module")
def clf(encoder, tmp_path_factory) -> Classifier:  # noqa: ANN001
    return Classifier(SHAPES_YAML, encoder=encoder, cache_dir=tmp_path_factory.mktemp("c"), persist=False)


@pytest.fixture(scope="module")
def test_set(clf: Classifier):  # noqa: ANN201
    return _shapes(clf, 5, 40)


def _acc(clf: Classifier, X: np.ndarray, y) -> float:  # noqa: ANN001
    return float(np.mean([p.node == t[0] for p, t in zip(clf.classify_embeddings(X), y)]))


def test_probes_refine_topdown_and_blend_is_chosen_on_held_out(clf: Classifier, test_set) -> None:  # noqa: ANN001
    Xte, yte = test_set
    zero_shot = _acc(clf, Xte, yte)
    X, y = _shapes(clf, 116, 16)
    probes = Probes(seed=0).fit(X, y, clf)
    assert {h.parent for h in probes.heads_} == {"shape", "round", "polygon", "other"}
    assert all(h.selection.endswith("-fold cross-validation") and 0 <= h.alpha <= 1 for h in probes.heads_)
    try:
        blend = _acc(clf.set_probes(probes), Xte, yte)
        alone = _acc(clf.set_probes(probes.with_alpha(1.0)), Xte, yte)
    finally:
        clf.set_probes(None)
    assert blend > zero_shot
    assert blend >= max(zero_shot, alone) - 0.01


def test_one_shot_works_and_is_deterministic(clf: Classifier) -> None:
    X, y = _shapes(clf, 201, 1)
    a, b = Probes(seed=3).fit(X, y, clf), Probes(seed=3).fit(X, y, clf)
    for ha, hb in zip(a.heads_, b.heads_):
        np.testing.assert_array_equal(ha.delta, hb.delta)
        assert ha.alpha == hb.alpha
    assert any(h.selection.startswith("default") for h in a.heads_)  # leaves' parents: one image per class


def test_mixup_changes_training_but_still_learns(clf: Classifier, test_set) -> None:  # noqa: ANN001
    X, y = _shapes(clf, 116, 8)
    plain, mixed = Probes(seed=0).fit(X, y, clf), Probes(seed=0, mixup=0.4).fit(X, y, clf)
    assert not np.array_equal(plain.heads_[0].delta, mixed.heads_[0].delta)
    try:
        assert _acc(clf.set_probes(mixed.with_alpha(1.0)), *test_set) >= 0.85
    finally:
        clf.set_probes(None)


def _balanced(preds, y) -> float:  # noqa: ANN001
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score([t[0] for t in y], [p.node for p in preds]))


def test_class_weighting_helps_a_20_to_1_imbalance(encoder, tmp_path: Path) -> None:  # noqa: ANN001
    # A flat 3-way task where zero-shot is weak: the probe must learn it, against a 20:1 imbalance.
    tax = Taxonomy.from_dict({"name": "p", "root": {"id": "thing", "children": [
        {"id": "a", "prompts": ["a photo of a shape."]}, {"id": "b", "prompts": ["a photo of an object."]},
        {"id": "c", "prompts": ["a picture of a thing."]}]}})
    clf = Classifier(tax, encoder=encoder, cache_dir=tmp_path, persist=False)
    names = {"a": "circle", "b": "square", "c": "star"}

    def data(seed: int, counts: dict[str, int]):  # noqa: ANN202
        imgs, y = [], []
        for k, (lab, n) in enumerate(counts.items()):
            for i in range(n):
                imgs.append(synth.render(synth.make_scene(seed + k, i, n_objects=1, shape=names[lab])))
                y.append((lab,))
        return clf.embed(imgs), y

    X, y = data(300, {"a": 200, "b": 10, "c": 10})
    Xte, yte = data(400, {"a": 30, "b": 30, "c": 30})
    scores = {}
    for balance in (True, False):
        clf.set_probes(Probes(seed=0, balance=balance).fit(X, y, clf).with_alpha(1.0))
        scores[balance] = _balanced(clf.classify_embeddings(Xte), yte)
    assert scores[True] >= scores[False]
    assert scores[True] >= 0.8


def test_probe_alone_matches_tuned_logistic_regression_on_digits(encoder, tmp_path: Path) -> None:  # noqa: ANN001
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, train_test_split

    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    tax = Taxonomy.from_dict({"name": "digits", "root": {"id": "digit", "children": [{"id": n} for n in names]}})
    clf = Classifier(tax, encoder=encoder, cache_dir=tmp_path, persist=False)
    d = load_digits()
    X = clf.embed([Image.fromarray((255 - x * 255 / 16).astype(np.uint8)).resize((64, 64)).convert("RGB") for x in d.images[:900]])
    y = d.target[:900]
    ours, theirs = [], []
    for seed in range(3):
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.5, random_state=seed, stratify=y)
        grid = GridSearchCV(LogisticRegression(max_iter=3000), {"C": [0.1, 1, 10, 100, 1000]}, cv=3).fit(Xtr, ytr)
        theirs.append(grid.score(Xte, yte))
        clf.set_probes(Probes(seed=seed).fit(Xtr, [(names[t],) for t in ytr], clf).with_alpha(1.0))
        ours.append(np.mean([p.node == names[t] for p, t in zip(clf.classify_embeddings(Xte), yte)]))
    # Mean over three splits; single splits differ by a few test images either way.
    assert np.mean(ours) >= np.mean(theirs) - 0.005, (ours, theirs)


def test_new_class_after_training_is_predicted_for_its_own_images(encoder, tmp_path: Path) -> None:  # noqa: ANN001
    src = tmp_path / "shapes.yaml"
    src.write_text(SHAPES_YAML.read_text())
    clf = Classifier(src, encoder=encoder, cache_dir=tmp_path / "c")
    clf.remove_class("star", save=False)
    X, y = _shapes(clf, 116, 8, shapes=("heart", "cross", "circle", "square", "triangle"))
    probes = Probes(seed=0).fit(X, y, clf)
    clf.set_probes(probes)
    clf.add_class("star", "other")
    stars = clf.embed([synth.render(synth.make_scene(77, i, n_objects=1, shape="star")) for i in range(20)])
    assert np.mean([p.node == "star" for p in clf.classify_embeddings(stars)]) >= 0.8
    hearts = clf.embed([synth.render(synth.make_scene(78, i, n_objects=1, shape="heart")) for i in range(20)])
    assert np.mean([p.node == "heart" for p in clf.classify_embeddings(hearts)]) >= 0.8


def test_multilabel_data_gives_sigmoid_probes(clf: Classifier) -> None:
    imgs, y = [], []
    for i in range(60):
        scene = synth.make_scene(500, i, n_objects=2)
        imgs.append(synth.render(scene))
        y.append(tuple(sorted({o.shape for o in scene.objects})))
    probes = Probes(seed=0).fit(clf.embed(imgs), y, clf)
    assert probes.multilabel_ and all(h.kind == "sigmoid" for h in probes.heads_)
    try:
        preds = clf.set_probes(probes).classify_embeddings(clf.embed(imgs[:10]), strategy="multilabel")
        assert all(p.labels for p in preds)
    finally:
        clf.set_probes(None)


def test_save_load_round_trip_and_refusals(clf: Classifier, encoder, tmp_path: Path) -> None:  # noqa: ANN001
    X, y = _shapes(clf, 116, 4)
    probes = Probes(seed=0).fit(X, y, clf)
    path = probes.save(tmp_path / "p.safetensors")
    loaded = load_probes(path, clf)
    for a, b in zip(probes.heads_, loaded.heads_):
        np.testing.assert_array_equal(a.delta, b.delta)
        assert (a.parent, a.children, a.alpha) == (b.parent, b.children, b.alpha)
    # Another taxonomy version: a trained child's prompts changed.
    other = Classifier(clf.taxonomy.copy(), encoder=encoder, cache_dir=tmp_path / "c2", persist=False)
    other.rename_class("star", label="five-pointed star", save=False)
    with pytest.raises(ProbeError, match="prompts of 'star' changed"):
        load_probes(path, other)
    # Another model.
    probes.model_fingerprint_ = "0" * 24
    bad = probes.save(tmp_path / "q.safetensors")
    with pytest.raises(ProbeError, match="model fingerprint"):
        load_probes(bad, clf)
    # Corrupt bytes.
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    (tmp_path / "corrupt.safetensors").write_bytes(bytes(data))
    with pytest.raises(ProbeError, match="checksum|corrupt"):
        load_probes(tmp_path / "corrupt.safetensors", clf)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ProbeError):
        load_probes(tmp_path / "junk.safetensors")


def test_unfitted_and_bad_labels(clf: Classifier) -> None:
    with pytest.raises(NotFittedError):
        Probes().save("x.safetensors")
    with pytest.raises(DataError, match="not a node"):
        Probes().fit(np.zeros((1, clf.encoder.embed_dim)), [("unicorn",)], clf)
