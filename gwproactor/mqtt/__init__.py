"""MQTT for gwproactor: a reconnecting broker connection service on the reactor, with paho-mqtt as the codec."""

from gwproactor.ops.backoff import Backoff
from gwproactor.mqtt.connection import BrokerConnection, InvalidTopic, TLSOptions

__all__ = ["Backoff", "BrokerConnection", "InvalidTopic", "TLSOptions"]
