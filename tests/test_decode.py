from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipcls import OpenClipEncoder
from clipcls._decode import MIN_FOR_PROCESSES, Decoder, crop_uint8
from clipcls._images import DEFAULT_LIMITS
from clipcls.zoo import synth
from conftest import SHAPES_YAML


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[str]:  # noqa: ANN001
    folder = tmp_path_factory.mktemp("imgs")
    out = []
    for i in range(150):
        p = folder / (f"{i:03d}.jpg" if i % 2 else f"{i:03d}.png")
        img = synth.render(synth.make_scene(8, i), size=96).resize((120 + i % 7, 90))
        img.save(p)
        out.append(str(p))
    (folder / "bad.png").write_bytes(b"not an image")
    out.insert(70, str(folder / "bad.png"))
    return out


def decoder(encoder: OpenClipEncoder, window: int = 32) -> Decoder:
    return Decoder(workers=2, window=window, limits=DEFAULT_LIMITS, min_size=encoder.min_decode_size,
                   preprocess=encoder.preprocess, geometry=encoder.pixel_geometry)


def test_processes_and_threads_give_the_same_rows_in_order(files: list[str], encoder: OpenClipEncoder) -> None:
    dec = decoder(encoder)
    try:
        rows = list(dec(files))  # long input: processes
        assert dec._pool is not None
    finally:
        dec.close()
    assert [r[0] for r in rows] == files
    assert rows[70][1] is None and "bad.png" in rows[70][2]
    threaded = list(decoder(encoder)._threads(iter(files)))
    for (n1, a, e1), (n2, t, e2) in zip(rows, threaded):
        assert n1 == n2 and (e1 is None) == (e2 is None)
        if a is not None:
            assert a.dtype == np.uint8 and a.shape == (64, 64, 3)
            np.testing.assert_allclose(encoder._fast.normalize(a[None])[0].numpy(), t.numpy(), atol=1e-5)
    import torch

    crops = np.stack([r[1] for r in rows if r[1] is not None][:8])
    tensors = torch.stack([t for _, t, e in threaded if e is None][:8])
    np.testing.assert_allclose(encoder.encode_uint8(crops), encoder.encode_pixels(tensors), atol=1e-5)


def test_short_inputs_and_images_in_memory_use_threads(files: list[str], encoder: OpenClipEncoder) -> None:
    dec = decoder(encoder)
    assert len(list(dec(files[:MIN_FOR_PROCESSES - 1]))) == MIN_FOR_PROCESSES - 1
    imgs = [Image.new("RGB", (70, 80), (i, 0, 0)) for i in range(MIN_FOR_PROCESSES + 5)]
    assert all(r[2] is None for r in dec(imgs))
    assert dec._pool is None


def test_a_crashed_decoder_process_costs_only_its_file(files: list[str], encoder: OpenClipEncoder) -> None:
    dec = decoder(encoder, window=16)
    rows = []
    killed = threading.Event()
    try:
        for row in dec(files):
            rows.append(row)
            if len(rows) == 20 and not killed.is_set():
                for pid in list(dec._pool._processes):  # type: ignore[union-attr]
                    os.kill(pid, signal.SIGKILL)
                killed.set()
    finally:
        dec.close()
    assert [r[0] for r in rows] == files
    # Files in flight when the workers died were decoded again, one by one, in fresh processes.
    assert sum(r[2] is not None for r in rows) == 1


def test_crop_matches_torchvision_geometry(encoder: OpenClipEncoder) -> None:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 137, 3), dtype=np.uint8))
    a = encoder._fast.normalize(crop_uint8(img, *encoder.pixel_geometry)[None])[0]
    assert a.shape == encoder._preprocess(img).shape


def test_a_script_without_a_main_guard_still_decodes_in_processes(files: list[str], tmp_path: Path) -> None:
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(
        "import clipcls\n"
        f"clf = clipcls.Classifier({str(SHAPES_YAML)!r}, cache_dir={str(tmp_path / 'c')!r})\n"
        f"preds = clf.classify({files!r}, on_error='record')\n"
        "assert clf._decoder._pool is not None, 'expected decoder processes'\n"
        "print('rows', len(preds), sum(p.ok for p in preds))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == f"rows {len(files)} {len(files) - 1}"


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads process states from /proc")
def test_decoder_processes_exit_when_their_client_is_killed() -> None:
    import subprocess
    import sys
    import time

    # The client starts its pool, reports the pids of its workers and forkserver, then dies by SIGKILL.
    script = ("import os, signal, sys\n"
              "from clipcls._decode import _start_pool\n"
              "pool = _start_pool(2)\n"
              "from multiprocessing import forkserver\n"
              "print(*pool._processes, forkserver._forkserver._forkserver_pid, flush=True)\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    *workers, server = (int(x) for x in out.stdout.split())

    def running(pid: int) -> bool:
        try:
            state = open(f"/proc/{pid}/stat").read().split(")")[1].split()[0]
        except OSError:
            return False
        return state != "Z"

    deadline = time.monotonic() + 30
    while any(running(p) for p in (*workers, server)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(workers) == 2
    assert not [p for p in (*workers, server) if running(p)], "decoder processes outlived their client"


def test_without_processes_it_falls_back_to_threads(files: list[str], encoder: OpenClipEncoder,
                                                    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import clipcls._decode as D

    def refuse(n: int) -> None:
        raise OSError("no room for processes")

    monkeypatch.setattr(D, "_start_pool", refuse)
    rows = list(decoder(encoder)(files))
    assert [r[0] for r in rows] == files and sum(r[2] is not None for r in rows) == 1
    assert "decoding in threads" in caplog.text
