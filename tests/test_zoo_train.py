from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import clipcls
from clipcls.zoo import train


def test_training_script_runs_end_to_end_and_exports_a_loadable_model(tmp_path: Path) -> None:
    out = tmp_path / "model"
    train.main(["--steps", "3", "--batch", "16", "--n-images", "48", "--eval-n", "10", "--out", str(out),
                "--data-cache", str(tmp_path / "data"), "--workers", "1", "--quiet"])
    assert sorted(p.name for p in out.iterdir()) == [
        "MODEL_CARD.md", "metrics.json", "open_clip_config.json", "open_clip_model.safetensors"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 3 and "shape (10-way)" in metrics["zero_shot"]
    assert "python benchmarks/zeroshot.py" in (out / "MODEL_CARD.md").read_text()
    enc = clipcls.OpenClipEncoder(f"local-dir:{out}")
    emb = enc.encode_texts(["a red circle"])
    assert emb.shape == (1, 128) and abs(float(np.linalg.norm(emb)) - 1) < 1e-4


def test_shipped_checkpoint_is_small_fp16_and_its_card_matches_metrics() -> None:
    from clipcls.zoo import DEFAULT_MODEL, EMBEDDED_MODELS

    folder = EMBEDDED_MODELS[DEFAULT_MODEL]
    weights = folder / "open_clip_model.safetensors"
    assert weights.stat().st_size <= 20 * 1024 * 1024
    from safetensors import safe_open

    with safe_open(str(weights), "np") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"float16"}
    metrics = json.loads((folder / "metrics.json").read_text())
    card = (folder / "MODEL_CARD.md").read_text()
    for name, value in metrics["zero_shot"].items():
        assert f"| {name} | {value:.1f} |" in card


def test_easy_share_curriculum_falls_to_normal_sampling() -> None:
    assert train.easy_share(0, 100) == 1.0
    assert 0.2 < train.easy_share(25, 100) < 1.0
    assert train.easy_share(40, 100) == 0.2 == train.easy_share(99, 100)
