"""Leaving the TLS stack (pyOpenSSL, cryptography, service_identity) out of a process whose brokers use no TLS.

Twisted imports pyOpenSSL as soon as its TCP transport or its reactor is imported, whether or not anything
uses TLS: on a plain-TCP device that is about 12 MiB of resident memory (mostly the ``cryptography`` Rust
extension and ``libssl``), a quarter of the process.  :func:`leave_out_tls_stack`, called before the reactor
is imported, makes ``OpenSSL`` unimportable for the rest of the process; Twisted then imports its reactor,
TCP transport and endpoints without TLS support.  It is the runner's choice
(:func:`gwproactor.runner.run`), made once it has the settings and only when :func:`settings_use_tls` says
no broker needs TLS: a library never does it on its own.

Leaving it out is for the whole process: a later attempt to import ``OpenSSL`` (a ``tls:`` endpoint built by
application code, ``reactor.connectSSL``, ``twisted.internet.ssl``) raises an :class:`ImportError` that says
so and how to keep the stack (``gwproactor run --tls-stack always``).
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["PLAIN_ENDPOINT_TYPES", "TLSStackLeftOut", "leave_out_tls_stack", "settings_use_tls", "tls_stack_left_out"]

#: Endpoint string types that never need TLS; any other type (``tls``, ``ssl``, a plugin's) counts as TLS.
PLAIN_ENDPOINT_TYPES = frozenset({"tcp", "tcp6", "unix"})

#: The packages left out: pyOpenSSL is the one Twisted tries; the others are imported only through it.
_LEFT_OUT = ("OpenSSL",)

#: Modules that, once imported, have already decided whether Twisted has TLS (too late to leave it out).
_DECIDED_BY = ("OpenSSL", "twisted.internet.tcp", "twisted.internet.posixbase", "twisted.internet.endpoints",
               "twisted.protocols.tls")


class TLSStackLeftOut(importlib.abc.MetaPathFinder):
    """A meta path finder that refuses ``OpenSSL`` (and its submodules) with an :class:`ImportError` that says why.

    :param reason: why the stack was left out (shown in the error), e.g. ``"no broker uses TLS"``.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: Any = None) -> None:
        """Raise :class:`ImportError` for the left-out packages; return None (not mine) for any other."""
        if fullname.partition(".")[0] in _LEFT_OUT:
            raise ImportError(f"the TLS stack ({fullname}) was left out of this process at start because "
                              f"{self.reason}; to use TLS from application code, run with "
                              "`gwproactor run --tls-stack always`", name=fullname)
        return None


def tls_stack_left_out() -> bool:
    """True when :func:`leave_out_tls_stack` has left the TLS stack out of this process."""
    return any(isinstance(finder, TLSStackLeftOut) for finder in sys.meta_path)


def leave_out_tls_stack(reason: str = "no broker uses TLS") -> bool:
    """Make ``OpenSSL`` unimportable for the rest of the process, before Twisted's reactor is imported.

    Returns True when it did (or had already done so); False, changing nothing, when it is too late: the
    TLS stack, Twisted's TCP transport, its reactor or its endpoints are already imported.
    """
    if tls_stack_left_out():
        return True
    if any(name in sys.modules for name in _DECIDED_BY):
        return False
    sys.meta_path.insert(0, TLSStackLeftOut(reason))
    return True


def settings_use_tls(settings: Any) -> bool:
    """True when a broker of ``settings`` (a :class:`~gwproactor.config.ProactorSettings`) connects with TLS.

    A broker with an ``endpoint`` string uses TLS unless its type is in :data:`PLAIN_ENDPOINT_TYPES`; a broker
    without one uses TLS when its ``tls`` settings are given.
    """
    for broker in settings.brokers.values():
        if broker.endpoint:
            if broker.endpoint.partition(":")[0].strip().lower() not in PLAIN_ENDPOINT_TYPES:
                return True
        elif broker.tls is not None:
            return True
    return False
