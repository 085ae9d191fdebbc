"""Zero-shot accuracy of a CLIP model on the synthetic world.

Shared by the training script (which writes the model card) and by
``benchmarks/zeroshot.py`` (which reproduces the card), so both report the
same figures from the same code and the same freshly generated images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from clipcls.zoo import synth

EncodeImages = Callable[[Sequence[Image.Image]], np.ndarray]
EncodeTexts = Callable[[Sequence[str]], np.ndarray]

EVAL_SEED = 424242  # never used for training data (training uses seed 0)


@dataclass(frozen=True)
class ZeroShotReport:
    """Accuracies in percent; ``n`` is the number of images per figure."""

    shape: float
    shape_held_out: float
    color: float
    pattern: float
    size: float
    joint_seen: float
    joint_held_out: float
    shape_unseen_templates: float
    joint_held_out_unseen_templates: float
    n: int

    def rows(self) -> list[tuple[str, float]]:
        return [
            ("shape (10-way)", self.shape),
            ("shape, held-out colour x shape", self.shape_held_out),
            ("colour (11-way)", self.color),
            ("pattern (4-way)", self.pattern),
            ("size (2-way)", self.size),
            ("joint colour x shape (110-way), seen", self.joint_seen),
            ("joint colour x shape (110-way), held-out", self.joint_held_out),
            ("shape, unseen templates", self.shape_unseen_templates),
            ("joint held-out, unseen templates", self.joint_held_out_unseen_templates),
        ]


def class_weights(
    encode_texts: EncodeTexts, classes: Sequence[Sequence[str]], templates: Sequence[str]
) -> np.ndarray:
    """One L2-normalised row per class: mean over templates x phrasings."""
    texts = [synth.fix_articles(t.format(p)) for phrases in classes for p in phrases for t in templates]
    emb = encode_texts(texts)
    out = []
    k = 0
    for phrases in classes:
        n = len(phrases) * len(templates)
        m = emb[k:k + n].mean(0)
        out.append(m / np.linalg.norm(m))
        k += n
    return np.stack(out).astype(np.float32)


def _acc(img: np.ndarray, weights: np.ndarray, labels: np.ndarray) -> float:
    return float(100.0 * np.mean((img @ weights.T).argmax(1) == labels))


def _scenes(n: int, offset: int, held_out: bool) -> list[synth.Scene]:
    rng = np.random.default_rng([EVAL_SEED, offset])
    pairs = sorted(synth.HELD_OUT)
    scenes = []
    for i in range(n):
        kw = {}
        if held_out:
            sh, co = pairs[int(rng.integers(len(pairs)))]
            kw = {"shape": sh, "color": co}
        scenes.append(synth.make_scene(EVAL_SEED + offset, i, n_objects=1, allow_held_out=held_out, **kw))
    return scenes


def evaluate(
    encode_images: EncodeImages, encode_texts: EncodeTexts, n: int = 1000, size: int = 64
) -> ZeroShotReport:
    """Zero-shot accuracies on ``n`` fresh seen-combination images and ``n`` held-out ones."""
    seen = _scenes(n, 1, held_out=False)
    held = _scenes(n, 2, held_out=True)
    f_seen = encode_images([synth.render(s, size=size) for s in seen])
    f_held = encode_images([synth.render(s, size=size) for s in held])

    def labels(scenes: list[synth.Scene], attr: str, names: Sequence[str]) -> np.ndarray:
        return np.array([names.index(getattr(s.objects[0], attr)) for s in scenes])

    train_t, unseen_t = synth.TRAIN_TEMPLATES, synth.UNSEEN_TEMPLATES
    shape_cls = [synth.SHAPE_WORDS[s] for s in synth.SHAPES]
    color_cls = [[f"{w} shape" for w in synth.COLOR_WORDS[c]] for c in synth.COLORS]
    pattern_cls = [[f"{w} shape" for w in synth.PATTERN_WORDS[p]] for p in synth.PATTERNS]
    size_cls = [[f"{w} shape" for w in synth.SIZE_WORDS[s]] for s in synth.SIZES]
    joint = [(c, s) for c in synth.COLORS for s in synth.SHAPES]
    joint_cls = [[f"{synth.COLOR_WORDS[c][0]} {synth.SHAPE_WORDS[s][0]}"] for c, s in joint]

    def joint_labels(scenes: list[synth.Scene]) -> np.ndarray:
        return np.array([joint.index((s.objects[0].color, s.objects[0].shape)) for s in scenes])

    w_shape = class_weights(encode_texts, shape_cls, train_t)
    w_joint = class_weights(encode_texts, joint_cls, train_t)
    w_shape_u = class_weights(encode_texts, shape_cls, unseen_t)
    w_joint_u = class_weights(encode_texts, joint_cls, unseen_t)
    return ZeroShotReport(
        shape=_acc(f_seen, w_shape, labels(seen, "shape", synth.SHAPES)),
        shape_held_out=_acc(f_held, w_shape, labels(held, "shape", synth.SHAPES)),
        color=_acc(f_seen, class_weights(encode_texts, color_cls, train_t), labels(seen, "color", synth.COLORS)),
        pattern=_acc(f_seen, class_weights(encode_texts, pattern_cls, train_t), labels(seen, "pattern", synth.PATTERNS)),
        size=_acc(f_seen, class_weights(encode_texts, size_cls, train_t), labels(seen, "size", synth.SIZES)),
        joint_seen=_acc(f_seen, w_joint, joint_labels(seen)),
        joint_held_out=_acc(f_held, w_joint, joint_labels(held)),
        shape_unseen_templates=_acc(f_seen, w_shape_u, labels(seen, "shape", synth.SHAPES)),
        joint_held_out_unseen_templates=_acc(f_held, w_joint_u, joint_labels(held)),
        n=n,
    )
