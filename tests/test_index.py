from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from clipcls import TextIndex


class FakeEncoder:
    """Deterministic text 'embeddings' so index tests need no model."""

    def __init__(self, dim: int = 8) -> None:
        self.dim = dim
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        rows = [np.random.default_rng(abs(hash(t)) % 2**32).normal(size=self.dim) for t in texts]
        out = np.array(rows, np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    @property
    def n_texts(self) -> int:
        return sum(map(len, self.calls))


TEXTS = {"a": ["a photo of a cat.", "a cat"], "b": ["a dog"], "c": ["a cow", "a bull", "cattle"]}


def make(cache: Path, name: str = "t") -> TextIndex:
    return TextIndex(cache, model_fingerprint="m1", dim=8, name=name)


def test_first_sync_encodes_all_then_nothing_after_reload(tmp_path: Path) -> None:
    enc = FakeEncoder()
    s1 = make(tmp_path).sync(TEXTS, enc)
    assert (s1.encoded, s1.texts_encoded) == (3, 6)
    enc2 = FakeEncoder()
    idx = make(tmp_path)
    s2 = idx.sync(TEXTS, enc2)
    assert (s2.encoded, s2.reused, enc2.n_texts) == (0, 3, 0)
    m = idx.matrix(["c", "a"])
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, rtol=1e-5)
    want = enc(TEXTS["a"]).mean(0)
    np.testing.assert_allclose(m[1], want / np.linalg.norm(want), rtol=1e-5)


def test_changing_one_node_reencodes_only_that_node(tmp_path: Path) -> None:
    make(tmp_path).sync(TEXTS, FakeEncoder())
    enc = FakeEncoder()
    changed = {**TEXTS, "b": ["a dog", "a puppy"], "d": ["a hen"]}
    del changed["c"]
    s = make(tmp_path).sync(changed, enc)
    assert (s.encoded, s.removed, s.reused) == (2, 1, 1)
    assert sorted(t for call in enc.calls for t in call) == ["a dog", "a hen", "a puppy"]
    assert make(tmp_path).sync(changed, FakeEncoder()).encoded == 0


def test_other_model_fingerprint_never_shares_rows(tmp_path: Path) -> None:
    make(tmp_path).sync(TEXTS, FakeEncoder())
    other = TextIndex(tmp_path, model_fingerprint="m2", dim=8, name="t")
    assert other.sync(TEXTS, FakeEncoder()).encoded == 3


@pytest.mark.parametrize("damage", ["truncate_index", "garbage_manifest", "flip_byte", "wrong_format"])
def test_corrupt_cache_is_rebuilt_with_warning(tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    idx = make(tmp_path)
    idx.sync(TEXTS, FakeEncoder())
    man = json.loads(idx.manifest_path.read_text())
    index_file = idx.dir / man["index_file"]
    if damage == "truncate_index":
        index_file.write_bytes(index_file.read_bytes()[:40])
    elif damage == "garbage_manifest":
        idx.manifest_path.write_text("{not json")
    elif damage == "flip_byte":
        data = bytearray(index_file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        index_file.write_bytes(bytes(data))
    else:
        idx.manifest_path.write_text(json.dumps({**man, "format": 999}))
    enc = FakeEncoder()
    s = make(tmp_path).sync(TEXTS, enc)
    assert s.encoded == 3 and s.rebuilt
    assert "rebuilding" in caplog.text
    assert make(tmp_path).sync(TEXTS, FakeEncoder()).encoded == 0  # and the rebuilt cache is valid


def _build(cache: str, q: mp.Queue) -> None:
    try:
        texts = {f"n{i}": [f"text {i}", f"other {i}"] for i in range(300)}
        TextIndex(cache, model_fingerprint="m1", dim=8, name="race").sync(texts, FakeEncoder())
        q.put("ok")
    except Exception as e:  # noqa: BLE001
        q.put(repr(e))


def test_two_processes_building_the_same_cache_leave_a_valid_one(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_build, args=(str(tmp_path), q)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sorted(q.get() for _ in procs) == ["ok", "ok"]
    texts = {f"n{i}": [f"text {i}", f"other {i}"] for i in range(300)}
    assert TextIndex(tmp_path, model_fingerprint="m1", dim=8, name="race").sync(texts, FakeEncoder()).encoded == 0


def test_search_returns_nearest_nodes(tmp_path: Path) -> None:
    enc = FakeEncoder()
    idx = make(tmp_path)
    idx.sync(TEXTS, enc)
    q = idx.matrix(["b"])
    _, names = idx.search(q, 2)
    assert names[0][0] == "b"


def _killed_mid_write(cache: str, kill_at: int, full: bool) -> None:
    """Change one node, then die (os._exit: no cleanup, like SIGKILL) at the ``kill_at``-th os.replace."""
    import os

    import clipcls._index as ix

    if full:
        ix.MAX_DELTA_NODES = 0  # write the whole index, not a delta

    real, calls = os.replace, [0]

    def replace(src, dst):  # noqa: ANN001, ANN202
        calls[0] += 1
        if calls[0] == kill_at:
            os._exit(9)
        return real(src, dst)

    ix.os.replace = replace  # type: ignore[assignment]
    make(Path(cache)).sync({**TEXTS, "b": ["a wolf"]}, FakeEncoder())


# A delta write has one os.replace; a full write has two: the new index file, then the new manifest.
@pytest.mark.parametrize(("full", "kill_at"), [(False, 1), (True, 1), (True, 2)])
def test_a_process_killed_mid_write_leaves_the_previous_cache_valid(tmp_path: Path, full: bool, kill_at: int) -> None:
    enc = FakeEncoder()
    idx = make(tmp_path)
    idx.sync(TEXTS, enc)
    before = idx.matrix(list(TEXTS))
    p = mp.get_context("spawn").Process(target=_killed_mid_write, args=(str(tmp_path), kill_at, full))
    p.start()
    p.join(60)
    assert p.exitcode == 9
    again = make(tmp_path)
    stats = again.sync(TEXTS, FakeEncoder())
    assert stats.encoded == 0 and not stats.rebuilt
    np.testing.assert_array_equal(again.matrix(list(TEXTS)), before)
    assert list(again.dir.glob(".*.tmp"))  # the dead writer's temporary file
    again.sync({f"n{i}": [f"t{i}"] for i in range(100)}, FakeEncoder())  # a full write cleans it up
    assert not list(again.dir.glob(".*.tmp"))


def test_small_changes_are_deltas_then_compacted(tmp_path: Path) -> None:
    import clipcls._index as ix

    idx = make(tmp_path)
    idx.sync(TEXTS, FakeEncoder())
    base = json.loads(idx.manifest_path.read_text())["index_file"]
    texts = dict(TEXTS)
    for i in range(ix.MAX_DELTAS):
        texts[f"new{i}"] = [f"a thing number {i}"]
        if i == 3:
            del texts["c"]
        idx.sync(texts, FakeEncoder())
    assert len(list(idx.dir.glob("delta-*.json"))) == ix.MAX_DELTAS
    assert json.loads(idx.manifest_path.read_text())["index_file"] == base  # the big file was not rewritten
    again = make(tmp_path)
    assert again.sync(texts, FakeEncoder()).encoded == 0 and len(again) == len(texts)
    np.testing.assert_array_equal(again.matrix(sorted(texts)), idx.matrix(sorted(texts)))
    texts["one_more"] = ["x"]
    idx.sync(texts, FakeEncoder())  # past MAX_DELTAS: the whole index is written, the deltas go
    assert not list(idx.dir.glob("delta-*.json"))
    assert make(tmp_path).sync(texts, FakeEncoder()).encoded == 0


def test_a_corrupt_delta_is_ignored_with_a_warning_and_its_nodes_reencoded(tmp_path: Path,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    idx = make(tmp_path)
    idx.sync(TEXTS, FakeEncoder())
    idx.sync({**TEXTS, "d": ["a hen"]}, FakeEncoder())
    idx.sync({**TEXTS, "d": ["a hen"], "e": ["an owl"]}, FakeEncoder())
    first = sorted(idx.dir.glob("delta-*.json"))[0]
    first.write_text(first.read_text().replace('"base"', '"bass"'))
    enc = FakeEncoder()
    s = make(tmp_path).sync({**TEXTS, "d": ["a hen"], "e": ["an owl"]}, enc)
    assert "unusable" in caplog.text
    assert s.encoded == 2 and sorted(t for c in enc.calls for t in c) == ["a hen", "an owl"]
    assert not list(idx.dir.glob("delta-*.json"))  # the re-encode compacted them away
    assert make(tmp_path).sync({**TEXTS, "d": ["a hen"], "e": ["an owl"]}, FakeEncoder()).encoded == 0


def test_add_touches_only_the_given_nodes(tmp_path: Path) -> None:
    idx = make(tmp_path)
    idx.sync(TEXTS, FakeEncoder())
    enc = FakeEncoder()
    s = idx.add({"d": ["a hen", "a chicken"]}, enc)
    assert (s.encoded, s.texts_encoded) == (1, 2) and enc.n_texts == 2 and len(idx) == 4
    assert idx.add({"d": ["a hen", "a chicken"]}, enc).reused == 4 and enc.n_texts == 2  # unchanged: reused
    again = make(tmp_path)
    assert again.sync({**TEXTS, "d": ["a hen", "a chicken"]}, FakeEncoder()).encoded == 0
    np.testing.assert_array_equal(again.matrix(["d"]), idx.matrix(["d"]))


def test_sync_hashes_asks_for_texts_only_of_nodes_it_encodes(tmp_path: Path) -> None:
    from clipcls._prompts import text_hash

    enc = FakeEncoder()
    make(tmp_path).sync(TEXTS, enc)
    asked: list[str] = []
    changed = {**TEXTS, "b": ["a puppy"], "d": ["a hen"]}

    def texts_of(n: str) -> list[str]:
        asked.append(n)
        return changed[n]

    idx = make(tmp_path)
    s = idx.sync_hashes({n: text_hash(t) for n, t in changed.items() if n != "c"}, texts_of, enc)
    assert sorted(asked) == ["b", "d"] and (s.encoded, s.reused, s.removed) == (2, 1, 1)
    assert idx.hashes(["a", "b", "d"]) == [text_hash(changed[n]) for n in "abd"] and "c" not in idx
