"""Name resolution without a thread for IP literals: :func:`resolve_ip_literals_inline`.

Twisted's reactors resolve every host through their ``nameResolver``, by default a ``GAIResolver`` that
runs :func:`socket.getaddrinfo` in the reactor's thread pool, even for ``127.0.0.1``
(:class:`~twisted.internet.endpoints.HostnameEndpoint`, which ``tls:`` endpoint strings and the broker's
``host``/``port`` settings use, always asks it).  The resolver installed here answers IP literals on the
reactor thread at once and hands host names to the resolver it replaces, so a broker given by address
starts no thread at all.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import attrs
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IHostnameResolver,
    IHostResolution,
    IReactorPluggableNameResolver,
    IResolutionReceiver,
)
from zope.interface import implementer

__all__ = ["LiteralFirstResolver", "resolve_ip_literals_inline"]


@implementer(IHostResolution)
@attrs.define
class _Resolved:
    name: str

    def cancel(self) -> None:
        """Nothing to cancel: the answer was given at once."""


@implementer(IHostnameResolver)
@attrs.define(eq=False)
class LiteralFirstResolver:
    """An :class:`~twisted.internet.interfaces.IHostnameResolver` that answers IP literals itself.

    :param names: the resolver for everything else (host names, IPv6 with a zone such as ``fe80::1%eth0``).
    """

    names: IHostnameResolver

    def resolveHostName(  # noqa: N802 - Twisted interface
        self,
        resolutionReceiver: IResolutionReceiver,  # noqa: N803
        hostName: str,  # noqa: N803
        portNumber: int = 0,  # noqa: N803
        addressTypes: Sequence[type] | None = None,  # noqa: N803
        transportSemantics: str = "TCP",  # noqa: N803
    ) -> IHostResolution:
        """Answer ``hostName`` at once when it is an IPv4 or IPv6 literal; else ask :attr:`names`."""
        if isIPAddress(hostName):
            address: IPv4Address | IPv6Address = IPv4Address(_kind(transportSemantics), hostName, portNumber)
        elif isIPv6Address(hostName) and "%" not in hostName:
            address = IPv6Address(_kind(transportSemantics), hostName, portNumber, 0, 0)
        else:
            return self.names.resolveHostName(resolutionReceiver, hostName, portNumber, addressTypes,
                                              transportSemantics)
        resolution = _Resolved(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        if addressTypes is None or type(address) in addressTypes:
            resolutionReceiver.addressResolved(address)
        resolutionReceiver.resolutionComplete()
        return resolution


def _kind(transport_semantics: str) -> Literal["TCP", "UDP"]:
    return "UDP" if transport_semantics == "UDP" else "TCP"


def resolve_ip_literals_inline(reactor: Any) -> bool:
    """Make ``reactor`` answer IP literals without its thread pool (idempotent); True if it was installed.

    Host names still go to the reactor's previous resolver (``getaddrinfo`` in the reactor's thread pool,
    the only way to honour ``/etc/hosts`` and the system's resolver configuration).  A reactor that has no
    pluggable name resolver (a test ``Clock``) is left alone.
    """
    if not IReactorPluggableNameResolver.providedBy(reactor):
        return False
    current = reactor.nameResolver
    if isinstance(current, LiteralFirstResolver):
        return True
    reactor.installNameResolver(LiteralFirstResolver(current))
    return True
