"""Models clipcls ships with: registered names resolve to local folders.

Names follow timm's ``arch.tag`` style.  Each entry is an open_clip
``local-dir:`` folder (``open_clip_config.json`` +
``open_clip_model.safetensors``) committed with the code.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).parent

EMBEDDED_MODELS: dict[str, Path] = {
    "tinyclip-rn24.shapes_v1": _HERE / "tinyclip-rn24.shapes_v1",
}
DEFAULT_MODEL = "tinyclip-rn24.shapes_v1"

# Bare open_clip architecture configs (``{embed_dim, vision_cfg, text_cfg}``),
# registered with open_clip so ``tinyclip-rn24`` + a checkpoint file loads
# like ``ViT-B-32`` + a checkpoint file.
ARCH_CONFIGS: tuple[Path, ...] = (_HERE / "tinyclip-rn24.json",)
