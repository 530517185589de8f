"""gwproactor: a Twisted framework for SCADA processes.

Live actors on one reactor, MQTT links with a communication state, and durable
event delivery to an upstream peer.
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
