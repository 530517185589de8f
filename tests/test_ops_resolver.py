"""Tests of gwproactor.ops.resolver: IP literals answered on the reactor thread, host names passed on."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHostnameResolver, IHostResolution
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gwproactor.ops.resolver import LiteralFirstResolver, resolve_ip_literals_inline


@implementer(IHostnameResolver)
class RecordingResolver:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def resolveHostName(self, receiver: Any, hostName: str, portNumber: int = 0, addressTypes: Any = None,  # noqa: N802, N803
                        transportSemantics: str = "TCP") -> Any:  # noqa: N803
        self.asked.append(hostName)
        return None


class Receiver:
    def __init__(self) -> None:
        self.began: list[Any] = []
        self.addresses: list[Any] = []
        self.complete = False

    def resolutionBegan(self, resolution: Any) -> None:  # noqa: N802
        self.began.append(resolution)

    def addressResolved(self, address: Any) -> None:  # noqa: N802
        self.addresses.append(address)

    def resolutionComplete(self) -> None:  # noqa: N802
        self.complete = True


def test_ip_literals_are_answered_in_line_and_names_passed_on() -> None:
    """IPv4/IPv6 literals resolve at once without the wrapped resolver; names (and zoned IPv6) go to it."""
    names = RecordingResolver()
    resolver = LiteralFirstResolver(names)
    assert verifyObject(IHostnameResolver, resolver)
    r4 = Receiver()
    resolution = resolver.resolveHostName(r4, "127.0.0.1", 1883)
    assert verifyObject(IHostResolution, resolution)
    assert r4.addresses == [IPv4Address("TCP", "127.0.0.1", 1883)] and r4.complete and r4.began == [resolution]
    r6 = Receiver()
    resolver.resolveHostName(r6, "::1", 8883)
    assert r6.addresses == [IPv6Address("TCP", "::1", 8883, 0, 0)] and r6.complete
    only6 = Receiver()
    resolver.resolveHostName(only6, "127.0.0.1", 1, addressTypes=[IPv6Address])
    assert only6.addresses == [] and only6.complete
    resolver.resolveHostName(Receiver(), "mqtt.example.com", 1883)
    resolver.resolveHostName(Receiver(), "fe80::1%eth0", 1883)
    assert names.asked == ["mqtt.example.com", "fe80::1%eth0"]


def test_resolve_ip_literals_inline_installs_once() -> None:
    """The resolver wraps a reactor's name resolver once; a reactor without one (a Clock) is left alone."""
    from twisted.internet.base import PluggableResolverMixin
    from twisted.internet.task import Clock

    reactor: Any = type("R", (PluggableResolverMixin,), {})()
    before = reactor.nameResolver
    assert resolve_ip_literals_inline(reactor) is True
    assert isinstance(reactor.nameResolver, LiteralFirstResolver) and reactor.nameResolver.names is before
    assert resolve_ip_literals_inline(reactor) is True and reactor.nameResolver.names is before
    assert resolve_ip_literals_inline(Clock()) is False
