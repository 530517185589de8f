"""gwproactor: a Twisted framework for SCADA processes.

Live actors on one reactor, MQTT links with a communication state, and durable event delivery to an upstream
peer.  The names most applications need are importable from here; everything else lives in its module.  They
are imported on first use, so importing one submodule (``gwproactor.cli`` for ``gwproactor --help``) does not
import the whole library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gwproactor._version import __version__

if TYPE_CHECKING:
    from gwproactor.actors import Actor
    from gwproactor.config import BrokerSettings, LinkSettings, ProactorSettings, StoreSettings, load_settings
    from gwproactor.links.machine import LinkState
    from gwproactor.message import Event, Message, default_registry, make_message
    from gwproactor.proactor import Proactor

_WHERE = {
    "Actor": "gwproactor.actors",
    "BrokerSettings": "gwproactor.config",
    "Event": "gwproactor.message",
    "LinkSettings": "gwproactor.config",
    "LinkState": "gwproactor.links.machine",
    "Message": "gwproactor.message",
    "Proactor": "gwproactor.proactor",
    "ProactorSettings": "gwproactor.config",
    "StoreSettings": "gwproactor.config",
    "default_registry": "gwproactor.message",
    "load_settings": "gwproactor.config",
    "make_message": "gwproactor.message",
}

__all__ = [
    "Actor",
    "BrokerSettings",
    "Event",
    "LinkSettings",
    "LinkState",
    "Message",
    "Proactor",
    "ProactorSettings",
    "StoreSettings",
    "__version__",
    "default_registry",
    "load_settings",
    "make_message",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gwproactor' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
