from __future__ import annotations

import doctest
import threading

import numpy as np
import pytest

from clipcls import _appendonly
from clipcls._appendonly import RowIndex, Rows


def test_doctests() -> None:
    assert doctest.testmod(_appendonly).failed == 0


def test_views_never_see_later_rows_and_branches_do_not_share() -> None:
    a = Rows(["r", "s"])
    ia = RowIndex.of(a)
    b = a.appended("t")
    ib = ia.appended(b)
    c = b.appended("u")
    ic = ib.appended(c)
    # An older view extended again branches: its own copy, the newer ones untouched.
    b2 = b.appended("v")
    ib2 = ib.appended(b2)
    assert list(a) == ["r", "s"] and list(b) == ["r", "s", "t"] and list(c) == ["r", "s", "t", "u"]
    assert list(b2) == ["r", "s", "t", "v"]
    assert dict(ia) == {"r": 0, "s": 1} and "t" not in ia and len(ia) == 2
    assert dict(ic) == {"r": 0, "s": 1, "t": 2, "u": 3} and "v" not in ic
    assert dict(ib2) == {"r": 0, "s": 1, "t": 2, "v": 3} and "u" not in ib2
    with pytest.raises(KeyError):
        ia["t"]
    with pytest.raises(IndexError):
        a[2]
    assert a[-1] == "s" and c[np.int64(3)] == "u" and c[1:3] == ("s", "t")
    assert a == ("r", "s") and a == ["r", "s"] and a != ("r",) and b == Rows(["r", "s", "t"])
    assert ic == {"r": 0, "s": 1, "t": 2, "u": 3}


def test_readers_of_an_old_view_are_safe_while_a_writer_appends() -> None:
    rows = Rows([f"n{i}" for i in range(1000)])
    index = RowIndex.of(rows)
    old_rows, old_index = rows, index
    stop = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                assert len(list(old_rows)) == 1000 and len(dict(old_index)) == 1000
                assert "x5" not in old_index
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(5000):
        rows = rows.appended(f"x{i}")
        index = index.appended(rows)
    stop.set()
    for t in threads:
        t.join()
    assert not errors and len(index) == 6000 and index["x4999"] == 5999
