from __future__ import annotations

from clipcls import OpenClipEncoder
from clipcls.zoo import zeroshot


def test_embedded_model_is_zero_shot_on_held_out_combinations_and_unseen_wordings(encoder: OpenClipEncoder) -> None:
    r = zeroshot.evaluate(encoder.encode_images, encoder.encode_texts, n=60)
    assert r.n == 60
    assert r.shape >= 90 and r.color >= 90 and r.pattern >= 85 and r.size >= 90
    assert r.joint_held_out >= 85
    assert abs(r.shape - r.shape_unseen_templates) <= 5
