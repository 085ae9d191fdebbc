"""Smoke runs of every benchmark script at a tiny size, so none of them rots (no timing asserts)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO

SMOKE = {
    "zeroshot.py": ["--n", "20"],
    "foreign_renderer.py": ["--n", "2"],
    "probes.py": ["--seeds", "1", "--test", "30", "--no-digits"],
    "engine.py": ["--images", "16", "--repeats", "1", "--sizes", "200"],
    "pipeline.py": ["--images", "16", "--repeats", "1"],
    "decode.py": ["--images", "4", "--repeats", "1"],
    "choices.py": ["--images", "8", "--repeats", "1"],
    "prompt_cache.py": ["--nodes", "200", "--repeats", "1"],
    "backends.py": ["--images", "16", "--repeats", "1"],
}


# Further runs of a script with other options.
MORE = [("pipeline.py", ["--images", "8", "--repeats", "1", "--files", "png", "--arch", "tinyclip-rn24"])]


@pytest.mark.parametrize(("script", "args"), sorted(SMOKE.items()) + MORE)
def test_benchmark_runs(script: str, args: list[str], tmp_path) -> None:  # noqa: ANN001
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path, env={"CLIPCLS_CACHE": str(tmp_path / "c"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "%" in out.stdout or "x" in out.stdout


def test_every_benchmark_has_a_smoke_run() -> None:
    # Modules starting with "_" are helpers shared by the scripts, not scripts.
    assert {p.name for p in (REPO / "benchmarks").glob("[!_]*.py")} == set(SMOKE)
