"""The pending-id index of the file store: where each pending event's record is, in append order.

Memory holds one entry per pending id and never a payload (decision D7: memory is O(pending ids)).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["PackedIndex"]


class PackedIndex:
    """The pending-id index: an insertion-ordered dict of id -> one packed int.

    An entry ``(segment number, offset, size, time)`` is packed into one Python int
    (time in whole milliseconds), which costs about a third of a 4-tuple of numbers:
    about 170 bytes per pending id with its uuid key, so 100,000 pending events
    take about 17 MB.
    """

    __slots__ = ("_d",)

    def __init__(self) -> None:
        self._d: dict[str, int] = {}

    @staticmethod
    def _pack(entry: tuple) -> int:
        number, offset, size, t = entry
        return (((int(t * 1000) << 32 | size) << 40 | offset) << 24) | number

    @staticmethod
    def _unpack(v: int) -> tuple:
        number = v & 0xFFFFFF
        v >>= 24
        offset = v & 0xFFFFFFFFFF
        v >>= 40
        return number, offset, v & 0xFFFFFFFF, (v >> 32) / 1000.0

    def __setitem__(self, key: str, entry: tuple) -> None:
        self._d[key] = self._pack(entry)

    def __delitem__(self, key: str) -> None:
        del self._d[key]

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def get(self, key: str, default: Any = None) -> Any:
        """The entry of ``key``, or ``default``."""
        v = self._d.get(key)
        return default if v is None else self._unpack(v)

    def pop(self, key: str, default: Any = None) -> Any:
        """Remove ``key`` and return its entry, or ``default``."""
        v = self._d.pop(key, None)
        return default if v is None else self._unpack(v)

    def values(self) -> Iterator[tuple]:
        """The entries, oldest first."""
        return (self._unpack(v) for v in self._d.values())

    def popitem_oldest(self) -> tuple:
        """Remove the oldest entry; return ``(key, entry)``."""
        key = next(iter(self._d))
        return key, self._unpack(self._d.pop(key))
