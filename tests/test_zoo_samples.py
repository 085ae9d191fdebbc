from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from clipcls.zoo import samples


def test_shipped_samples_match_the_script(tmp_path: Path) -> None:
    written = samples.write_samples(tmp_path)
    assert [p.name for p in written] == [f"{n}.png" for n, _ in samples.SAMPLES]
    for p in written:
        shipped = samples.DEFAULT_DIR / p.name
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(shipped))), p.name
