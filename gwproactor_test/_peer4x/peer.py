"""A gridworks-proactor 4.x child or parent that records what it does, for gwproactor's interop tests.

This file runs in a virtualenv that has gridworks-proactor 4.x installed (whose package is also named
``gwproactor``); it is never imported by gwproactor or gwproactor_test.  ``gwproactor_test.interop4x`` starts it::

    python peer.py child|parent --ready-file PATH --record-file PATH

Settings come from ``GW4X_*`` environment variables (4.x's pydantic settings, ``__`` between levels):

* ``GW4X_INTEROP__LONG_NAME`` / ``__SHORT_NAME``: this process's names;
* ``GW4X_INTEROP__PEER_LONG_NAME`` / ``__PEER_SHORT_NAME``: the peer's names;
* the broker of the one link, whose name is the settings field: ``GW4X_PARENT__HOST``, ``GW4X_PARENT__PORT``,
  ``GW4X_PARENT__TLS__USE_TLS``, ``GW4X_PARENT__TLS__PORT`` for the child (link ``parent``), ``GW4X_CHILD__...``
  for the parent (link ``child``).  With TLS, 4.x reads ``<certs dir>/<link>/ca.crt``, ``<link>.crt`` and
  ``private/<link>.pem`` (the certs dir is under ``$XDG_CONFIG_HOME/gridworks/<paths name>/``).

The record file gets one JSON object per line (written with one ``os.write`` each):

* ``{"k": "recv", "id", "type", "src"}``: an event the application (the prime actor) was given;
* ``{"k": "gen", "id", "type", "peer"}``: an event 4.x generated (comm events included);
* ``{"k": "state", "link", "old", "new", "input"}``: a link state change;
* ``{"k": "timeout", "link", "id"}``: an ack timeout;
* ``{"k": "sent", "type", "id"}``: a ping this process published;
* ``{"k": "made", "id", "seq"}``: a reading the child generated (on a ``gen`` command).

* ``{"k": "done", "count"}``: a ``gen`` command finished.

Every line also has ``"t"`` (``time.time()``).  The child reads commands from stdin, one per line:
``gen N INTERVAL`` generates N ``gridworks.event.interop.reading`` events, INTERVAL seconds apart (in the
background; a new ``gen`` or ``stop`` ends the one running).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import typing
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from gwproto import Message
from gwproto.messages import EventBase
from pydantic import BaseModel
from pydantic_settings import SettingsConfigDict

from gwproactor import App, AppSettings, Proactor, setup_logging
from gwproactor.actors.actor import PrimeActor
from gwproactor.config import MQTTClient
from gwproactor.config.links import LinkSettings
from gwproactor.config.proactor_config import ProactorConfig, ProactorName
from gwproactor.persister import PersisterInterface, TimedRollingFilePersister

ENV_PREFIX = "GW4X_"
READING_TYPE = "gridworks.event.interop.reading"


class Recorder:
    """Appends JSON lines to the record file."""

    fd: Optional[int] = None

    def open(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, kind: str, **fields: Any) -> None:
        if self.fd is not None:
            os.write(self.fd, (json.dumps({"k": kind, "t": time.time(), **fields}) + "\n").encode())


RECORDER = Recorder()
READY_FILE = ""
"""Written (with the pid) once the proactor has started its links and tasks."""


class InteropReading(EventBase):
    Seq: int = 0
    TypeName: Literal["gridworks.event.interop.reading"] = READING_TYPE


class InteropOptions(BaseModel):
    long_name: str = ""
    short_name: str = ""
    peer_long_name: str = ""
    peer_short_name: str = ""


_MODEL_CONFIG = SettingsConfigDict(
    env_prefix=ENV_PREFIX,
    env_nested_delimiter="__",
    nested_model_default_partial_update=True,
    extra="ignore",
)


class ChildSettings(AppSettings):
    model_config = _MODEL_CONFIG
    parent: MQTTClient = MQTTClient()
    interop: InteropOptions = InteropOptions()


class ParentSettings(AppSettings):
    model_config = _MODEL_CONFIG
    child: MQTTClient = MQTTClient()
    interop: InteropOptions = InteropOptions()


class RecordingProactor(Proactor):
    """Records generated events, link state changes, ack timeouts and pings sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        links = self._links
        generate = links.generate_event
        process_ack_timeout = links.process_ack_timeout
        publish_message = links.publish_message

        def generate_event(event: Any) -> Any:
            RECORDER.write("gen", id=event.MessageId, type=event.TypeName, peer=getattr(event, "PeerName", None))
            return generate(event)

        def on_ack_timeout(wait_info: Any) -> Any:
            RECORDER.write("timeout", link=wait_info.link_name, id=wait_info.message_id)
            return process_ack_timeout(wait_info)

        def publish(link_name: str, message: Message[Any], *args: Any, **kwargs: Any) -> Any:
            if message.Header.MessageType == "gridworks.ping":
                RECORDER.write("sent", type="gridworks.ping", id=message.Header.MessageId)
            return publish_message(link_name, message, *args, **kwargs)

        # LinkManager calls these through self, so instance attributes intercept its own calls too.
        links.generate_event = generate_event  # type: ignore[method-assign]
        links.process_ack_timeout = on_ack_timeout  # type: ignore[method-assign]
        links.publish_message = publish  # type: ignore[method-assign]

    def record_transitions(self) -> None:
        """Wrap every link's state object so each state change is recorded."""
        for name in self._links.link_names():
            state = self._links[name]
            handle = state._handle  # noqa: SLF001

            def recorded(result: Any, _handle: Any = handle, _name: str = name) -> Any:
                result = _handle(result)
                if result.is_ok() and result.value.old_state != result.value.new_state:
                    t = result.value
                    RECORDER.write("state", link=_name, old=t.old_state.value, new=t.new_state.value,
                                   input=t.transition_name.value)
                return result

            state._handle = recorded  # type: ignore[method-assign]  # noqa: SLF001


class RecordingActor(PrimeActor):
    """Records every event the application is given; the child also generates readings on command."""

    _seq: int = 0

    def process_mqtt_message(self, mqtt_client_message: Any, decoded: Message[Any]) -> None:
        payload = decoded.Payload
        if isinstance(payload, EventBase):
            RECORDER.write("recv", id=payload.MessageId, type=payload.TypeName, src=payload.Src)

    def start_tasks(self) -> Sequence[asyncio.Task[Any]]:
        tasks = [asyncio.create_task(self._commands(), name="interop_commands")]
        if READY_FILE:
            Path(READY_FILE).write_text(str(os.getpid()))
        return tasks

    async def _commands(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        generator: Optional[asyncio.Task[Any]] = None
        while True:
            line = await reader.readline()
            if not line:
                return
            words = line.decode().split()
            if words and words[0] in ("gen", "stop") and generator is not None:
                generator.cancel()
                generator = None
            if len(words) == 3 and words[0] == "gen":  # noqa: PLR2004
                generator = asyncio.create_task(self._generate(int(words[1]), float(words[2])))

    async def _generate(self, count: int, interval: float) -> None:
        # Paced on the loop's clock: event n is due at start + n * interval (no drift from handling time).
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n in range(count):
            self._seq += 1
            event = InteropReading(Seq=self._seq)
            RECORDER.write("made", id=event.MessageId, seq=self._seq)
            self.services.generate_event(event)
            if interval > 0:
                due: asyncio.Future = loop.create_future()
                handle = loop.call_at(start + (n + 1) * interval, due.set_result, None)
                try:
                    await due
                finally:
                    handle.cancel()
        RECORDER.write("done", count=count)


class _InteropApp(App):
    LINK: str = ""
    UPSTREAM: bool = False

    @classmethod
    def proactor_type(cls) -> type[Proactor]:
        return RecordingProactor

    @classmethod
    def prime_actor_type(cls) -> type[PrimeActor]:
        return RecordingActor

    def _get_name(self, layout: Any) -> ProactorName:  # noqa: ARG002
        options = typing.cast(Any, self.settings).interop
        return ProactorName(long_name=options.long_name, short_name=options.short_name)

    def _make_proactor_config(self, layout: Any = None) -> ProactorConfig:  # noqa: ARG002
        # No hardware layout file: ProactorConfig makes a one-node layout named after the process.
        return ProactorConfig(
            name=self._get_name(None),
            settings=self.settings,
            event_persister=self._make_persister(self.settings),
        )

    def _get_link_settings(self, name: ProactorName, layout: Any, brokers: dict[str, MQTTClient]) -> dict[str, LinkSettings]:  # noqa: ARG002
        options = typing.cast(Any, self.settings).interop
        return {
            self.LINK: LinkSettings(
                broker_name=self.LINK,
                peer_long_name=options.peer_long_name,
                peer_short_name=options.peer_short_name,
                upstream=self.UPSTREAM,
                downstream=not self.UPSTREAM,
            )
        }

    def _make_persister(self, settings: AppSettings) -> PersisterInterface:
        return TimedRollingFilePersister(settings.paths.event_dir)


class InteropChildApp(_InteropApp):
    LINK = "parent"
    UPSTREAM = True

    @classmethod
    def app_settings_type(cls) -> type[AppSettings]:
        return ChildSettings

    @classmethod
    def paths_name(cls) -> str:
        return "interop-child"


class InteropParentApp(_InteropApp):
    LINK = "child"
    UPSTREAM = False

    @classmethod
    def app_settings_type(cls) -> type[AppSettings]:
        return ParentSettings

    @classmethod
    def paths_name(cls) -> str:
        return "interop-parent"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("child", "parent"))
    parser.add_argument("--ready-file", default="")
    parser.add_argument("--record-file", required=True)
    args = parser.parse_args(argv)
    RECORDER.open(args.record_file)
    global READY_FILE  # noqa: PLW0603
    READY_FILE = args.ready_file
    app_type = InteropChildApp if args.role == "child" else InteropParentApp
    settings = app_type.app_settings_type()(_env_file=None)  # type: ignore[call-arg]
    app = app_type(app_settings=settings)
    app.settings.paths.mkdirs()
    setup_logging(app.settings)
    app.settings.check_tls_paths_present()
    app.instantiate()
    typing.cast(RecordingProactor, app.proactor).record_transitions()
    app.install_signal_handlers()
    try:
        asyncio.run(app.proactor.run_forever())
    finally:
        app.proactor.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
