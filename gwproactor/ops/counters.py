"""A :class:`~collections.Counter` with a bound on its keys, for counters keyed by names that peers choose."""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["OTHER", "BoundedCounter"]

OTHER = "(other)"
"""The key that collects the counts of new keys once a :class:`BoundedCounter` is full."""


class BoundedCounter(Counter):
    """Counts at most ``max_keys`` distinct keys; counts for any further new key go to :data:`OTHER`.

    A peer (or anything that can publish on a link's topics) picks the message type names; without
    a bound, each forged name would add a key for the life of the process.

    >>> c = BoundedCounter(max_keys=2)
    >>> for name in ("a", "b", "c", "d", "a"):
    ...     c[name] += 1
    >>> dict(c)
    {'a': 2, 'b': 1, '(other)': 2}
    """

    def __init__(self, *args: Any, max_keys: int = 100, **kwargs: Any) -> None:
        self.max_keys = max_keys
        super().__init__(*args, **kwargs)

    def __missing__(self, key: Any) -> int:
        return 0

    def __setitem__(self, key: Any, value: int) -> None:
        if key not in self and key != OTHER and len(self) >= self.max_keys:
            # The new key counted from 0, so ``value`` is the increment: add it to OTHER instead.
            key, value = OTHER, self.get(OTHER, 0) + value
        super().__setitem__(key, value)

    def __reduce__(self) -> Any:
        return (type(self), (dict(self),), {"max_keys": self.max_keys})
