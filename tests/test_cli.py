from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clipcls.cli import main
from conftest import REPO, SHAPES_YAML

SAMPLES = REPO / "taxonomies" / "samples"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLIPCLS_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_classify_jsonl_one_valid_row_per_image(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "--taxonomy", str(SHAPES_YAML), str(SAMPLES), "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == len(list(SAMPLES.glob("*.png")))
    for r in rows:
        assert {"image", "label", "path", "confidence", "top_k", "metadata"} <= r.keys()
        assert r["path"][0] == "shape" and all({"label", "score"} <= t.keys() for t in r["top_k"])
    by_name = {Path(r["image"]).stem: r["label"] for r in rows}
    assert by_name["red_star"] == "star" and by_name["green_circle"] == "circle"


def test_unreadable_image_gets_an_error_row_and_exit_3(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = env / "imgs"
    folder.mkdir()
    shutil.copy(SAMPLES / "red_star.png", folder / "a.png")
    (folder / "b.png").write_bytes(b"not an image")
    assert main(["classify", "--taxonomy", str(SHAPES_YAML), str(folder), "--out", str(env / "o.jsonl")]) == 3
    rows = [json.loads(x) for x in (env / "o.jsonl").read_text().splitlines()]
    assert [("error" in r) for r in rows] == [False, True]
    assert "b.png" in rows[1]["error"]
    assert main(["classify", "--taxonomy", str(SHAPES_YAML), str(folder), "--fail-fast"]) == 2


@pytest.mark.parametrize("fmt", ["csv", "table"])
def test_other_formats(env: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "--taxonomy", str(SHAPES_YAML), str(SAMPLES / "red_star.png"), "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert "star" in out
    if fmt == "csv":
        assert out.splitlines()[0].startswith("image,label,node,path")


def test_malformed_taxonomy_exits_2_with_one_clear_message(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = env / "bad.yaml"
    bad.write_text("root:\n  id: a\n  children:\n    - {id: b, lable: x}\n")
    assert main(["classify", "--taxonomy", str(bad), str(SAMPLES)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "'lable'" in err and "did you mean" in err and "Traceback" not in err
    assert main(["taxonomy", "validate", str(bad)]) == 2


def test_add_class_from_cli_encodes_only_that_node(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tax = env / "shapes.yaml"
    shutil.copy(SHAPES_YAML, tax)
    assert main(["classify", "--taxonomy", str(tax), str(SAMPLES / "red_star.png"), "-v"]) == 0
    assert "encoded 14 node(s)" in capsys.readouterr().err
    assert main(["taxonomy", "add", str(tax), "octagon", "--parent", "polygon"]) == 0
    assert "encoded 1 node(s)" in capsys.readouterr().err
    assert main(["classify", "--taxonomy", str(tax), str(SAMPLES / "red_star.png"), "-v"]) == 0
    captured = capsys.readouterr()
    assert "encoded 0 node(s)" in captured.err
    assert main(["taxonomy", "show", str(tax)]) == 0
    assert "octagon" in capsys.readouterr().out
    assert main(["taxonomy", "remove", str(tax), "octagon"]) == 0
    assert "octagon" not in tax.read_text()


def test_models_lists_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    assert "tinyclip-rn24.shapes_v1 (default)" in capsys.readouterr().out


def test_missing_input_and_bad_model_exit_2(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "--taxonomy", str(SHAPES_YAML), str(env / "nope")]) == 2
    assert main(["classify", "--taxonomy", str(SHAPES_YAML), str(SAMPLES), "--model", "NoSuchNet"]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "unknown model" in err and "Traceback" not in err


def _labelled_folder(root: Path, per_shape: int, seed: int) -> Path:
    from clipcls.zoo import synth

    for k, shape in enumerate(synth.SHAPES):
        (root / shape).mkdir(parents=True, exist_ok=True)
        for i in range(per_shape):
            synth.render(synth.make_scene(seed + k, i, n_objects=1, shape=shape)).save(root / shape / f"{i}.png")
    return root


def test_probe_train_then_classify_with_probes(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _labelled_folder(env / "data", 4, 900)
    out = env / "p.safetensors"
    args = ["probe", "train", "--taxonomy", str(SHAPES_YAML), "--data", str(data), "--out", str(out)]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "40 labelled images (40 encoded" in first and "polygon" in first and out.exists()
    assert main(args + ["--mixup", "0.2"]) == 0  # other settings: every embedding comes from the cache
    assert "40 labelled images (0 encoded" in capsys.readouterr().out
    assert main(["classify", "--taxonomy", str(SHAPES_YAML), str(SAMPLES / "red_star.png"), "--probes", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == "star"
    (data / "unicorn").mkdir()
    (data / "unicorn" / "u.png").write_bytes((data / "star" / "0.png").read_bytes())
    assert main(args) == 2
    assert "'unicorn' is not a node" in capsys.readouterr().err
    other = env / "colors.probes.safetensors"
    assert main(["classify", "--taxonomy", str(REPO / "taxonomies" / "colors.yaml"), str(SAMPLES), "--probes", str(out)]) == 2
    assert "trained for taxonomy 'shapes'" in capsys.readouterr().err
    assert not other.exists()


def test_eval_prints_the_table_and_writes_a_report(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _labelled_folder(env / "data", 3, 910)
    assert main(["eval", "--taxonomy", str(SHAPES_YAML), "--data", str(data), "--report", str(env / "rep")]) == 0
    out = capsys.readouterr().out
    assert "| topdown greedy |" in out and "| CHiLS |" in out and "ECE" in out
    assert (env / "rep" / "index.html").stat().st_size > 10_000
    assert main(["eval", "--taxonomy", str(SHAPES_YAML), "--data", str(data), "--strategy", "hybrid"]) == 0
    out = capsys.readouterr().out
    assert "| hybrid |" in out and "| CHiLS |" not in out


def test_calibrate_then_classify_with_it(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _labelled_folder(env / "data", 8, 920)
    out = env / "cal.json"
    assert main(["calibrate", "--taxonomy", str(SHAPES_YAML), "--data", str(data), "--holdout", "0.5",
                 "--target-precision", "0.95", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "temperature" in text and "held-out images: ECE" in text and out.exists()
    assert main(["classify", "--taxonomy", str(SHAPES_YAML), str(SAMPLES), "--calibration", str(out)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 8
    assert main(["calibrate", "--taxonomy", str(SHAPES_YAML), "--data", str(data), "--holdout", "2"]) == 2


def _folder_with_broken(folder: Path, n: int, broken_every: int) -> tuple[int, int]:
    """``n`` small PNGs, every ``broken_every``-th replaced by a bad file of a rotating kind."""
    from clipcls.zoo import synth

    folder.mkdir()
    good = synth.render(synth.make_scene(5, 0), size=32)
    buf = __import__("io").BytesIO()
    good.save(buf, format="PNG")
    png = buf.getvalue()
    bad_kinds = [b"", b"not an image at all", png[:60], b"\x89PNG\r\n\x1a\n" + b"\0" * 40, png[: len(png) // 2]]
    n_bad = 0
    for i in range(n):
        if i % broken_every == broken_every - 1:
            (folder / f"{i:05d}.png").write_bytes(bad_kinds[n_bad % len(bad_kinds)])
            n_bad += 1
        else:
            (folder / f"{i:05d}.png").write_bytes(png)
    return n - n_bad, n_bad


def test_a_thousand_images_with_five_percent_broken_lose_nothing(env: Path) -> None:
    n_good, n_bad = _folder_with_broken(env / "imgs", 1000, 20)
    assert (n_good, n_bad) == (950, 50)
    out = env / "o.jsonl"
    assert main(["classify", "--taxonomy", str(SHAPES_YAML), str(env / "imgs"), "--out", str(out), "-q"]) == 3
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 1000 and len({r["image"] for r in rows}) == 1000
    assert sum("error" in r for r in rows) == 50 and sum("label" in r for r in rows) == 950


def test_sigkill_then_resume_ends_with_exactly_one_row_per_image(env: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    n_good, n_bad = _folder_with_broken(env / "imgs", 600, 25)
    out = env / "o.jsonl"
    cmd = [sys.executable, "-c", "import sys; from clipcls.cli import main; sys.exit(main(sys.argv[1:]))",
           "classify", "--taxonomy", str(SHAPES_YAML), str(env / "imgs"), "--out", str(out), "--batch-size", "8", "-q"]
    proc = subprocess.Popen(cmd, env={**os.environ, "CLIPCLS_CACHE": str(env / "cache")})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 40:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before = out.read_bytes().count(b"\n")
    assert 40 <= before < 600, "the run should have been killed part-way"
    assert main(["classify", "--taxonomy", str(SHAPES_YAML), str(env / "imgs"), "--out", str(out), "--resume", "-q"]) == 3
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    images = [r["image"] for r in rows]
    assert len(images) == 600 and len(set(images)) == 600
    assert sum("error" in r for r in rows) == n_bad
