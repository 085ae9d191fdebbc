from __future__ import annotations

import numpy as np
import pytest

from clipcls.zoo import synth


def test_scenes_and_images_are_deterministic_from_the_seed() -> None:
    a, b = synth.make_scene(3, 7), synth.make_scene(3, 7)
    assert a == b
    assert np.array_equal(np.asarray(synth.render(a)), np.asarray(synth.render(b)))
    assert synth.make_scene(3, 8) != a


def test_held_out_combinations_never_appear_unless_asked() -> None:
    assert 0.12 <= len(synth.HELD_OUT) / (len(synth.SHAPES) * len(synth.COLORS)) <= 0.18
    seen = {(o.shape, o.color) for i in range(3000) for o in synth.make_scene(0, i).objects}
    assert not seen & synth.HELD_OUT
    sh, co = sorted(synth.HELD_OUT)[0]
    obj = synth.make_scene(0, 1, n_objects=1, shape=sh, color=co, allow_held_out=True).objects[0]
    assert (obj.shape, obj.color) == (sh, co)
    with pytest.raises(ValueError, match="held-out"):
        synth.make_scene(0, 1, shape=sh, color=co)


def test_vocabulary_covers_the_required_world() -> None:
    assert len(synth.SHAPES) >= 10 and len(synth.COLORS) >= 11
    assert set(synth.PATTERNS) == {"solid", "striped", "dotted", "outline"} and set(synth.SIZES) == {"small", "large"}
    counts = {len(synth.make_scene(1, i).objects) for i in range(200)}
    assert counts == {1, 2, 3}


def test_captions_vary_and_use_synonyms() -> None:
    rng = np.random.default_rng(0)
    caps = {synth.caption(synth.make_scene(0, i), rng) for i in range(400)}
    assert len(caps) > 300
    text = " ".join(caps)
    assert "violet" in text and "grey" in text and ("two " in text or "three " in text)
    assert not any(" a ellipse" in c or " a oval" in c for c in caps)
