from typing import ClassVar

import attrs
from twisted.internet.task import LoopingCall

from gwproactor.actors import Actor
from gwproactor.message import Event, default_registry
from gwproactor.proactor import Proactor


@default_registry.register
@attrs.define(frozen=True)
class TemperatureReading(Event):
    TYPE_NAME: ClassVar[str] = "gridworks.event.temperature"
    celsius: float = 0.0


class Thermometer(Actor):
    """Reads a sensor every 10 s; each reading is an event, stored until the parent acks it."""

    def startService(self):
        super().startService()
        self.loop = LoopingCall(self.read)
        self.loop.clock = self.proactor.reactor
        self.loop.start(10.0)

    def stopService(self):
        self.loop.stop()
        return super().stopService()

    def read(self):
        self.proactor.generate_event(TemperatureReading(src=self.proactor.name, celsius=21.5))


class HomeScada(Proactor):
    def __init__(self, settings, **kwargs):
        super().__init__(settings, **kwargs)
        self.add_actor(Thermometer("thermometer"))

    def link_activated(self, link):
        self.log.info("link {name} is active", name=link.link_name)
