"""gwproactor: a Twisted framework for SCADA processes.

Live actors on one reactor, MQTT links with a communication state, and durable
event delivery to an upstream peer.  The names most applications need are
importable from here; everything else lives in its module.
"""

from gwproactor._version import __version__

from gwproactor.actors import Actor
from gwproactor.config import BrokerSettings, LinkSettings, ProactorSettings, StoreSettings, load_settings
from gwproactor.links.machine import LinkState
from gwproactor.message import Event, Message, default_registry, make_message
from gwproactor.proactor import Proactor

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
