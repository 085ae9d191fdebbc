from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from clipcls import Classifier
from clipcls._evaluate import evaluate
from clipcls._report import write_report
from clipcls.zoo import synth
from conftest import SHAPES_YAML


@pytest.fixture(scope="module")
def page(encoder, tmp_path_factory) -> Path:  # noqa: ANN001
    tmp = tmp_path_factory.mktemp("r")
    clf = Classifier(SHAPES_YAML, encoder=encoder, cache_dir=tmp / "c", persist=False)
    paths = []
    for i in range(60):
        p = tmp / f"{i}.png"
        synth.render(synth.make_scene(51, i, n_objects=1, shape=synth.SHAPES[i % 10])).save(p)
        paths.append(str(p))
    labels = [(synth.SHAPES[i % 10],) for i in range(60)]
    rep = evaluate(clf, clf.embed(paths), labels, paths=paths)
    return write_report(rep, clf.taxonomy, tmp / "report")


def test_report_is_self_contained_with_decodable_images(page: Path) -> None:
    text = page.read_text()
    for needed in ("Strategies side by side", "reliability diagram", "coverage-accuracy curve", "confusion matrix",
                   "taxonomy tree", "topdown greedy"):
        assert needed in text
    srcs = re.findall(r"src='([^']+)'", text)
    assert len(srcs) >= 4
    for src in srcs:
        assert src.startswith("data:image/"), src[:40]
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        img.load()
        assert img.size[0] > 10
    assert not re.search(r"(href|src)=['\"](?!data:)", text)  # nothing fetched from outside


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="no headless Chromium here")
def test_report_renders_in_headless_chromium(page: Path, tmp_path: Path) -> None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    shot = tmp_path / "shot.png"
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}", "--window-size=1200,3000",
                    page.as_uri()], check=True, capture_output=True, timeout=120)
    img = Image.open(shot).convert("L")
    # A page with plots has far more than a few grey levels.
    assert sum(1 for c in img.histogram() if c) > 50
