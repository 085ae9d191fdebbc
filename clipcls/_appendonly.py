"""Append-only containers shared between immutable snapshots.

Adding a class makes a new snapshot with one more node.  Copying its
per-node tuples and the id -> row dict touched every node's objects (an
incref each, scattered in memory): at 20k nodes that cost more than encoding
the class's prompts.  A snapshot holds instead a view of the first ``n``
items of a list (or dict) that later snapshots append to; it never sees
their items.  Appending to a view that is not the newest copies first, so
two snapshots never share an item past their common prefix.

>>> a = Rows(["x", "y"])
>>> b = a.appended("z")
>>> list(a), list(b)
(['x', 'y'], ['x', 'y', 'z'])
>>> RowIndex.of(b)["z"], "z" in RowIndex.of(a)
(2, False)
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


class Rows(Sequence[T], Generic[T]):
    """The first ``len(self)`` items of a list that newer snapshots may extend."""

    __slots__ = ("_items", "_n")

    def __init__(self, items: Iterable[T] = ()) -> None:
        self._items: list[T] = list(items)
        self._n = len(self._items)

    @classmethod
    def _view(cls, items: list[T], n: int) -> Rows[T]:
        out = cls.__new__(cls)
        out._items, out._n = items, n
        return out

    def appended(self, item: T) -> Rows[T]:
        """A view one item longer; ``self`` is unchanged."""
        items = self._items if len(self._items) == self._n else self._items[:self._n]
        items.append(item)
        return Rows._view(items, self._n + 1)

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> T: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[T, ...]: ...
    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return tuple(self._items[:self._n][i])
        i = operator.index(i)  # numpy integers too
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("row index out of range")
        return self._items[i]

    def __iter__(self) -> Iterator[T]:
        return islice(self._items, self._n)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (Rows, tuple, list)):
            return NotImplemented
        return len(other) == self._n and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Rows({list(self)!r})"


class RowIndex(Mapping[str, int]):
    """id -> row for the rows of one :class:`Rows` view, over a dict that newer snapshots may extend."""

    __slots__ = ("_rows", "_d")

    def __init__(self, rows: Rows[str], d: dict[str, int]) -> None:
        self._rows, self._d = rows, d

    @classmethod
    def of(cls, rows: Rows[str]) -> RowIndex:
        return cls(rows, {v: i for i, v in enumerate(rows)})

    def appended(self, rows: Rows[str]) -> RowIndex:
        """The index of ``rows``, which is this index's rows plus one appended id."""
        n = len(self._rows)
        d = self._d if len(self._d) == n else {v: i for i, v in enumerate(self._rows)}
        d[rows[n]] = n
        return RowIndex(rows, d)

    def __getitem__(self, key: str) -> int:
        i = self._d[key]
        if i >= len(self._rows):
            raise KeyError(key)
        return i

    def __contains__(self, key: object) -> bool:
        i = self._d.get(key)  # type: ignore[call-overload]
        return i is not None and i < len(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[str]:
        # The rows, not the dict: a writer may be appending to the dict meanwhile.
        return iter(self._rows)

    def __repr__(self) -> str:
        return f"RowIndex({dict(self)!r})"
