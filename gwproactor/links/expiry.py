"""Time to live of events: which stored events are too old to be worth sending (issue "beyond the anchors", D13).

An event class declares ``TTL_S`` (seconds after its ``TimeCreatedMs``; ``None``, the default, never
expires).  The outbox asks an :class:`Expiry` about each stored event just before sending it; an expired
one is dropped from the store, counted (``OutboxStats.expired``) and reported in a problem event with
counts by type — never sent, never dropped silently.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

__all__ = ["Expiry"]


@attrs.define(eq=False)
class Expiry:
    """TTLs by ``TypeName`` and the wall clock they are measured on.

    :param ttls: seconds to live by TypeName (types not listed never expire).
    :param wall: the wall clock (``TimeCreatedMs`` is wall time in milliseconds).
    """

    ttls: Mapping[str, float] = attrs.field(factory=dict)
    wall: Callable[[], float] = time.time
    _markers: tuple[tuple[bytes, str], ...] = attrs.field(init=False, default=())

    def __attrs_post_init__(self) -> None:
        # How a TTL'd TypeName appears in stored JSON (compact separators or not), to skip parsing the rest.
        self._markers = tuple(
            (marker, name)
            for name in self.ttls
            for marker in (f'"TypeName":"{name}"'.encode(), f'"TypeName": "{name}"'.encode())
        )

    @classmethod
    def from_registry(cls, classes: Mapping[str, type], wall: Callable[[], float] = time.time) -> Expiry:
        """The TTLs the registered event classes declare (``TTL_S``)."""
        ttls = {name: float(ttl) for name, c in classes.items() if (ttl := getattr(c, "TTL_S", None)) is not None}
        return cls(ttls=ttls, wall=wall)

    def __bool__(self) -> bool:
        return bool(self.ttls)

    def expired(self, type_name: str, time_created_ms: Any) -> bool:
        """True if an event of ``type_name`` created at ``time_created_ms`` has outlived its TTL."""
        ttl = self.ttls.get(type_name)
        if ttl is None or not isinstance(time_created_ms, (int, float)):
            return False
        return self.wall() * 1000.0 - time_created_ms > ttl * 1000.0

    def expired_raw(self, data: bytes) -> str | None:
        """For a stored payload: its TypeName if it has expired, else None (parses only TTL'd types)."""
        for marker, name in self._markers:
            if marker in data:
                try:
                    obj = json.loads(data)
                except ValueError:
                    return None
                if isinstance(obj, dict) and obj.get("TypeName") == name:
                    return name if self.expired(name, obj.get("TimeCreatedMs")) else None
        return None
