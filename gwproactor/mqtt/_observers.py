"""The observers of one broker connection, and how each hears about the connection's state.

Connection changes go to every observer.  A SUBACK result goes to the observers that want it: a plain
:class:`~gwproactor.interfaces.IBrokerObserver` hears every one, an
:class:`~gwproactor.interfaces.ISubscriptionObserver` (a link) only its own filter's.  With K links on
one connection a SUBACK is then O(1) work, not O(K) (K SUBACKs after each CONNACK were O(K²), measured at
1.8 s of the 1.6 s-to-active of 1,000 links by ``benchmarks/fanin.py``'s profile).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from gwproactor.interfaces import IBrokerObserver, ISubscriptionObserver

log = Logger()


class Observers:
    """Who observes a connection; ``on_error`` is called (and the failure logged) when one raises."""

    def __init__(self, name: str, on_error: Callable[[], None]) -> None:
        self._name = name
        self._on_error = on_error
        self._all: list[Any] = []
        self._plain: list[Any] = []
        self._of: dict[str, list[Any]] = {}

    def add(self, observer: Any) -> None:
        """Start telling ``observer`` (an :class:`IBrokerObserver`); adding it again does nothing."""
        if not IBrokerObserver.providedBy(observer):
            raise TypeError(f"{observer!r} does not provide IBrokerObserver")
        if observer in self._all:
            return
        self._all.append(observer)
        if ISubscriptionObserver.providedBy(observer):
            self._of.setdefault(observer.subscription, []).append(observer)
        else:
            self._plain.append(observer)

    def remove(self, observer: Any) -> None:
        """Stop telling ``observer``; no error if it was not observing."""
        if observer not in self._all:
            return
        self._all.remove(observer)
        if ISubscriptionObserver.providedBy(observer):
            of = self._of.get(observer.subscription, [])
            if observer in of:
                of.remove(observer)
            if not of:
                self._of.pop(observer.subscription, None)
        elif observer in self._plain:
            self._plain.remove(observer)

    def tell(self, client: Any, method: str, *args: Any) -> None:
        """Call ``method(client, *args)`` on every observer."""
        self._call(list(self._all), client, method, args)

    def tell_filter(self, client: Any, method: str, topic_filter: str, *args: Any) -> None:
        """Call ``method(client, topic_filter, *args)`` on the observers of ``topic_filter``'s SUBACK result."""
        self._call(self._plain + self._of.get(topic_filter, []), client, method, (topic_filter, *args))

    def _call(self, observers: list[Any], client: Any, method: str, args: tuple) -> None:
        for observer in observers:
            try:
                getattr(observer, method)(client, *args)
            except Exception:
                self._on_error()
                log.failure("broker {broker}: observer {observer!r} failed in {method}", broker=self._name,
                            observer=observer, method=method)
