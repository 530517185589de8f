"""paho-mqtt speaking MQTT over a Twisted transport: the only module of gwproactor that imports paho.

paho keeps the MQTT codec, keepalive and QoS bookkeeping; Twisted owns the
connection.  paho is given an in-memory socket-like object that
``dataReceived`` fills and whose ``send`` writes to the transport.

paho internals relied on (read in paho-mqtt 2.2.0; setup.cfg pins
``paho-mqtt >= 2.1, < 2.3`` because of them -- re-check this list before
widening the pin):

* ``Client._create_socket()`` is the one place paho makes a socket; it is
  called by the public ``reconnect()`` (which also resets paho's in/out packet
  state and sends CONNECT).  :class:`_TwistedPahoClient` overrides it to return
  our :class:`_MemorySocket`, so paho never opens a socket.
* ``Client._sock_recv`` / ``_sock_send`` call ``recv`` / ``send`` on that
  object; ``recv`` raising :class:`BlockingIOError` means "no data now",
  ``recv`` returning ``b""`` means EOF.
* ``Client._sock_close()`` calls ``close()`` on it whenever paho drops the
  connection itself (keepalive expiry in ``loop_misc``, protocol errors,
  refused CONNACK, after writing DISCONNECT); ``close()`` aborts (or, after
  DISCONNECT, closes) the Twisted transport.
* ``_packet_queue`` calls ``loop_write()`` at once unless it runs inside a paho
  callback; our callbacks only record events, and every call into paho is
  followed by a flush (``want_write()`` / ``loop_write()``) and the dispatch of
  the recorded events, so user code never runs while paho holds its locks.
* ``_sockpairR`` / ``_sockpairW`` (paho's self-wake socketpair) are created only
  by paho's own loop methods (``loop``, ``loop_start``), which we never call: no socketpair and no
  file descriptor per connection (a test checks this).
* ``loop_read()`` ignores its ``max_packets`` argument and reads at most
  ``len(_out_messages) + len(_in_messages)`` (>= 1) packets per call, so
  :meth:`PahoProtocol.dataReceived` calls it until the buffer is empty.
* ``reconnect_on_failure=False`` stops ``_handle_connack`` from calling
  ``reconnect()`` itself (3.1 downgrade / client-id retry on refused CONNACK).
* :class:`paho.mqtt.matcher.MQTTMatcher` for topic-filter matching.
* The fast path (:mod:`gwproactor.mqtt._frames`) writes QoS 0 PUBLISH and reads plain PUBLISH itself
  only when paho is between packets (``_in_packet["command"] == 0``, ``_out_packet`` empty); it takes
  its mid from ``_mid_generate()`` and keeps paho's keepalive times ``_last_msg_out`` /
  ``_last_bytes_received`` (read with ``time_func``) as paho's own reads and writes would.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Protocol as TypingProtocol

from paho.mqtt import client as paho_client
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.matcher import MQTTMatcher
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IReactorTime, ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from gwproactor.errors import SessionUnavailable
from gwproactor.mqtt import _frames
from gwproactor.mqtt._socket import _input_waiting, _MemorySocket, _set_no_delay, _socket_descriptor
from gwproactor.mqtt._topics import topic_filter_error, topic_name_error

__all__ = [
    "PahoProtocol",
    "SessionListener",
    "TopicFilters",
    "topic_filter_error",
    "topic_name_error",
]

_PINGREQ = b"\xc0\x00"

#: While a chunk of received data is handled, what the handling wrote (acks) is handed to the kernel after every
#: this many messages, and after the chunk: fewer sends than one per message, and a bounded wait for the first.
PUSH_EVERY = 16

# MQTT 3.1.1 CONNACK return codes (spec 3.2.2.3).
_CONNACK_311 = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}

log = Logger()


class SessionListener(TypingProtocol):
    """What :class:`PahoProtocol` tells its owner (the broker connection).

    Every method is called from the reactor thread, never from inside paho.
    """

    def mqtt_connack(self, session: PahoProtocol, code: int, reason: str) -> None: ...

    def mqtt_suback(self, session: PahoProtocol, mid: int, codes: list[int]) -> None: ...

    def mqtt_published(self, session: PahoProtocol, mid: int) -> None: ...

    def mqtt_message(self, session: PahoProtocol, topic: str, payload: bytes) -> None: ...

    def mqtt_lost(self, session: PahoProtocol, reason: str) -> None: ...


class TopicFilters:
    """Topic filters mapped to values, matched with paho's trie (a topic may match several filters).

    Answers are remembered per topic until the filters change (a link receives on a handful of
    topics; walking the trie was a fifth of handling a message), at most ``_MATCHES_KEPT`` of them.
    """

    _MATCHES_KEPT = 4096

    def __init__(self) -> None:
        self._matcher = MQTTMatcher()
        self._matches: dict[str, tuple[Any, ...]] = {}

    def set(self, topic_filter: str, value: Any) -> None:
        """Associate ``value`` with ``topic_filter`` (replacing any previous value)."""
        self._matcher[topic_filter] = value
        self._matches.clear()

    def remove(self, topic_filter: str) -> None:
        """Forget ``topic_filter``; no error if it is unknown."""
        try:
            del self._matcher[topic_filter]
        except KeyError:
            pass
        self._matches.clear()

    def match(self, topic: str) -> tuple[Any, ...]:
        """Return the values of every filter that matches ``topic``."""
        found = self._matches.get(topic)
        if found is None:
            if len(self._matches) >= self._MATCHES_KEPT:
                self._matches.clear()
            found = self._matches[topic] = tuple(self._matcher.iter_match(topic))
        return found


class _TwistedPahoClient(paho_client.Client):
    """A paho client whose only "socket" is the in-memory one given to it."""

    _gwp_socket: _MemorySocket | None = None

    def _create_socket(self) -> Any:  # paho internal hook, see the module docstring
        if self._gwp_socket is None:
            raise SessionUnavailable("no in-memory socket attached")
        return self._gwp_socket


class PahoProtocol(Protocol):
    """One MQTT 3.1.1 session (clean session) over one Twisted connection.

    Sends CONNECT on ``connectionMade``; reports CONNACK, SUBACK, publish
    completion, incoming messages and the loss of the connection to
    ``listener`` (a :class:`SessionListener`).  A fresh paho client is made per
    connection, so nothing (in-flight QoS 1 messages included) survives a
    reconnect: the owner fails what was in flight.

    Keepalive: paho's ``loop_misc`` runs on a timer (it sends PINGREQ after
    ``keepalive`` seconds without traffic and drops the connection when the
    PINGRESP does not come within ``keepalive``).  On top of that, so that a
    half-open connection is noticed within ``keepalive`` seconds of the last
    byte received (paho alone can take up to twice that), the protocol sends a
    PINGREQ whenever nothing was received for ``keepalive / 2`` and aborts the
    connection when nothing was received for ``keepalive`` seconds.

    :param stats: a dict whose ``bytes_in`` / ``bytes_out`` counters are updated.
    """

    transport: ITCPTransport | None  # TCP, or TLS over TCP: abortConnection() is there
    fast_path = True
    """Encode QoS 0 PUBLISH and decode plain PUBLISH here (:mod:`._frames`); False leaves every packet to paho."""

    def __init__(
        self,
        *,
        listener: SessionListener,
        clock: IReactorTime,
        client_id: str,
        keepalive: float,
        username: str | None = None,
        password: str | None = None,
        stats: dict[str, int] | None = None,
        broker_label: str = "twisted-endpoint",
        will: tuple[str, bytes] | None = None,
    ) -> None:
        if keepalive <= 0:
            raise ValueError(f"keepalive must be > 0 seconds, got {keepalive!r}")
        self._listener = listener
        # Called before what was written goes to the kernel (a listener without it has no barrier).
        self._before_send: Callable[[Any], None] | None = getattr(listener, "mqtt_before_send", None)
        self._clock = clock
        self._client_id = client_id
        self._keepalive = float(keepalive)
        self._username = username
        self._password = password
        self._stats = stats if stats is not None else {"bytes_in": 0, "bytes_out": 0}
        self._broker_label = broker_label
        self._will = will
        self._events: list[tuple[Any, ...]] = []
        self._dispatching = False
        self._socket: _MemorySocket | None = None
        self._client: _TwistedPahoClient | None = None
        self._timer: LoopingCall | None = None
        self._last_received = 0.0
        self._last_ping = 0.0
        self._connacked = False
        self._closing_cleanly = False
        self._close_reason: str | None = None
        self._lost = False
        self._descriptor: FileDescriptor | None = None
        self._in_data = False
        self._unpushed = False
        self.pushes_left_to_reactor = 0
        """Times handled data's writes were left for the reactor's next poll because more input was waiting."""
        self._awaiting_published: set[int] = set()

    # -- state -----------------------------------------------------------------
    @property
    def connacked(self) -> bool:
        """True after an accepting CONNACK, until the connection is lost."""
        return self._connacked and not self._lost

    @property
    def paho_client(self) -> Any:
        """The paho client of this connection (tests and diagnostics only)."""
        return self._client

    # -- Twisted side ------------------------------------------------------------
    def connectionMade(self) -> None:
        _set_no_delay(self.transport)
        self._descriptor = _socket_descriptor(self.transport)
        self._socket = _MemorySocket(self._write, self._paho_closed_socket)
        client = _TwistedPahoClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            clean_session=True,
            protocol=paho_client.MQTTv311,
            reconnect_on_failure=False,
        )
        client._gwp_socket = self._socket
        client.max_inflight_messages_set(0)  # no paho-side queueing; the caller windows its publishes
        if self._username is not None:
            client.username_pw_set(self._username, self._password)
        if self._will is not None:
            # The broker publishes it if this connection ends without a DISCONNECT.
            client.will_set(self._will[0], self._will[1], qos=1, retain=False)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_publish = None  # set only while a completion is awaited (see _publish_done)
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        self._client = client
        now = self._clock.seconds()
        self._last_received = now
        self._last_ping = now
        # connect_async only records host/port/keepalive; reconnect() calls our _create_socket.
        client.connect_async(self._broker_label, 1, max(1, math.ceil(self._keepalive)))
        self._call(client.reconnect)
        self._timer = LoopingCall(self._tick)
        self._timer.clock = self._clock
        self._timer.start(min(1.0, self._keepalive / 8), now=False)

    def dataReceived(self, data: bytes) -> None:
        self._stats["bytes_in"] += len(data)
        self._last_received = self._clock.seconds()
        sock = self._socket
        client = self._client
        if sock is None or client is None or sock.closed:
            return
        sock.feed(data)
        self._in_data = True
        try:
            try:
                # loop_read reads a bounded number of packets per call: drain everything.
                while sock.pending() and not sock.closed:
                    if self._read_publishes(sock, client):
                        break  # all read, or the rest of a PUBLISH is still to come
                    if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        break
                sock.compact()
                self._flush()
            except Exception:
                log.failure("paho failed on data from {broker}; dropping the connection", broker=self._broker_label)
                self.abort("internal error while decoding MQTT data")
            self._dispatch()
        finally:
            self._in_data = False
        # What handling this data wrote (acks, replies) goes out now, in one send; unless more
        # data has arrived meanwhile: then the reactor's next poll reads it first and writes
        # everything after it in one send (a busy connection sends fewer, fuller segments).
        if self._unpushed and _input_waiting(self._descriptor):
            self.pushes_left_to_reactor += 1
            # The reactor's own doWrite sends it: the barrier runs now, before control returns to it.
            if self._before_send is not None:
                self._before_send(self)
            return
        self._push()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._lost:
            return
        self._lost = True
        if self._timer is not None and self._timer.running:
            self._timer.stop()
        self._timer = None
        if self._socket is not None:
            self._socket.closed = True
        self._client = None
        self._events.clear()
        self._awaiting_published.clear()
        text = self._close_reason
        if text is None:
            text = _describe_failure(reason)
        self._listener.mqtt_lost(self, text)

    # -- commands from the owner -------------------------------------------------
    def publish(self, topic: str, payload: bytes, qos: int) -> tuple[int, bool]:
        """Send a PUBLISH to ``topic`` (already checked); return ``(mid, written)``.

        QoS 0 is encoded here (:mod:`._frames`) once the session is up, QoS 1 by paho, which tracks its PUBACK.

        ``written`` is True when the packet went to the transport already (QoS
        0 completes there); QoS 1 completes with ``mqtt_published(mid)``.
        """
        client = self._require_client()
        if not qos and self.fast_path and self._connacked and not client._out_packet:
            mid = client._mid_generate()
            self._write(_frames.encode_publish(topic.encode("utf-8"), payload))
            client._last_msg_out = paho_client.time_func()
            if not self._in_data:
                self._push()
            return mid, True
        info = self._call(client.publish, topic, payload, qos)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise SessionUnavailable(f"paho refused the publish: {paho_client.error_string(info.rc)}")
        written = info.is_published()
        if qos or not written:
            # Its completion comes through on_publish (a PUBACK arrives only in a later dataReceived).
            self._awaiting_published.add(info.mid)
            client.on_publish = self._on_publish
        return info.mid, written

    def _publish_done(self, mid: int) -> None:
        """``mid`` needs no completion report any more; without any left, paho's on_publish is unset.

        paho calls on_publish for every QoS 0 packet it writes, building a ReasonCode and a
        Properties object for it (MQTT 5 objects, even on 3.1.1): about a tenth of the idle
        round trip.  QoS 0 completes when ``publish`` returns (``written``), so the callback
        is only set while a QoS 1 publish (or, never seen, an unwritten QoS 0 one) waits.
        """
        self._awaiting_published.discard(mid)
        client = self._client
        if not self._awaiting_published and client is not None:
            client.on_publish = None

    def subscribe(self, filters: list[tuple[str, int]]) -> int:
        """Send one SUBSCRIBE for ``filters``; return its mid (its SUBACK comes as ``mqtt_suback``)."""
        client = self._require_client()
        rc, mid = self._call(client.subscribe, filters)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise SessionUnavailable(f"paho refused the subscribe: {paho_client.error_string(rc)}")
        return mid

    def unsubscribe(self, filters: list[str]) -> None:
        """Send one UNSUBSCRIBE for ``filters`` (its UNSUBACK is ignored)."""
        client = self._require_client()
        self._call(client.unsubscribe, filters)

    def disconnect(self) -> None:
        """Send MQTT DISCONNECT, then close the transport once it is written."""
        if self._client is None or self._lost:
            return
        self._closing_cleanly = True
        self._close_reason = "closed by us (DISCONNECT sent)"
        try:
            self._call(self._client.disconnect)
        except Exception:
            log.failure("paho failed to send DISCONNECT to {broker}", broker=self._broker_label)
        if self.transport is not None and not self._lost:
            self.transport.loseConnection()

    def abort(self, reason: str) -> None:
        """Drop the connection at once; ``reason`` is what ``mqtt_lost`` will say."""
        if self._lost:
            return
        if self._close_reason is None:
            self._close_reason = reason
        if self._socket is not None:
            self._socket.closed = True
        if self.transport is not None:
            self.transport.abortConnection()

    # -- internals -------------------------------------------------------------------
    def _require_client(self) -> _TwistedPahoClient:
        if self._client is None or self._lost or self._socket is None or self._socket.closed:
            raise SessionUnavailable("the MQTT connection is closed")
        return self._client

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args)
        finally:
            self._flush()
            self._dispatch()
            if not self._in_data:
                self._push()

    def _flush(self) -> None:
        client = self._client
        if client is not None and client.want_write() and not (self._socket is None or self._socket.closed):
            client.loop_write()

    def _write(self, data: bytes) -> None:
        self._stats["bytes_out"] += len(data)
        assert self.transport is not None  # paho writes only after connectionMade; Twisted keeps it set
        self.transport.write(data)
        self._unpushed = True

    def _push(self) -> None:
        """Hand what was written to the kernel now instead of on the reactor's next turn.

        ``transport.write`` only buffers: the socket is written when the reactor next
        polls, after the rest of the current turn (timers, other descriptors, a
        group fsync).  A lone ack or event would wait for all of that, so after a
        command from the owner, and after handling a chunk of received data, the
        socket's ``doWrite`` (:class:`~twisted.internet.interfaces.IWriteDescriptor`)
        is called once.  What does not fit stays buffered for the reactor; an
        error is left for the reactor's own ``doWrite``, which reports it as the
        loss of the connection.
        """
        if not self._unpushed:
            return
        self._unpushed = False
        if self._before_send is not None:
            self._before_send(self)
        descriptor = self._descriptor
        if descriptor is None or self._lost or not descriptor.connected or descriptor.disconnecting:
            return
        descriptor.doWrite()

    def _read_publishes(self, sock: _MemorySocket, client: _TwistedPahoClient) -> bool:
        """Decode the plain PUBLISH frames at the front of the buffer; False when paho must read the next frame."""
        if not self.fast_path or not self._connacked or client._in_packet["command"] or client._out_packet:
            return False
        end, waiting, messages, acks, bad = _frames.scan_publishes(sock._buffer, sock._position)
        if end != sock._position:
            sock._position = end
            client._last_bytes_received = now = paho_client.time_func()
            self._events += messages
            if acks:
                self._write(acks)
                client._last_msg_out = now
            if bad:
                log.warn("dropped {count} MQTT messages from {broker} whose topic is not UTF-8", count=bad,
                         broker=self._broker_label)
        return waiting or end >= len(sock._buffer)

    def _paho_closed_socket(self) -> None:
        # paho dropped the connection (keepalive, protocol error, refused CONNACK, DISCONNECT sent).
        if self._lost or self.transport is None:
            return
        if self._closing_cleanly:
            self.transport.loseConnection()
        else:
            self.transport.abortConnection()

    def _tick(self) -> None:
        client = self._client
        if client is None or self._lost:
            return
        try:
            client.loop_misc()
            self._flush()
        except Exception:
            log.failure("paho loop_misc failed for {broker}", broker=self._broker_label)
            self.abort("internal error in keepalive handling")
            return
        self._dispatch()
        if not self._connacked or self._lost or self._socket is None or self._socket.closed:
            return
        now = self._clock.seconds()
        silent = now - self._last_received
        if silent >= self._keepalive:
            self.abort(f"keepalive: nothing received from the broker for {silent:.1f} s")
        elif silent >= self._keepalive / 2 and now - self._last_ping >= self._keepalive / 2:
            self._last_ping = now
            self._write(_PINGREQ)

    def _dispatch(self) -> None:
        if self._dispatching:
            return
        self._dispatching = True
        try:
            events = self._events
            delivered = 0
            while events and not self._lost:
                batch = events[:]
                del events[:]
                for event in batch:
                    if self._lost:
                        break
                    self._deliver(event)
                    delivered += 1
                    if delivered % PUSH_EVERY == 0 and self._in_data:
                        # A long chunk's replies go out as it is handled, not all after it: the first
                        # message's ack waits for at most PUSH_EVERY messages' handling.
                        self._push()
        finally:
            self._dispatching = False

    def _deliver(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        listener = self._listener
        if kind == "message":
            listener.mqtt_message(self, event[1], event[2])
        elif kind == "published":
            self._publish_done(event[1])
            listener.mqtt_published(self, event[1])
        elif kind == "suback":
            listener.mqtt_suback(self, event[1], event[2])
        elif kind == "connack":
            if event[1] == 0:
                self._connacked = True
            listener.mqtt_connack(self, event[1], event[2])
        elif kind == "disconnect":
            if self._close_reason is None:
                self._close_reason = event[1]

    # -- paho callbacks: record only (paho holds its callback lock here) ----------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        code = _connack_311_code(reason)
        text = "accepted" if code == 0 else _CONNACK_311.get(code, str(reason))
        self._events.append(("connack", code, text))

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        self._events.append(("suback", mid, [int(rc.value) for rc in reason_codes]))

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        self._events.append(("published", mid))

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            log.warn("dropped an MQTT message from {broker} whose topic is not UTF-8", broker=self._broker_label)
            return
        self._events.append(("message", topic, bytes(message.payload)))

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._events.append(("disconnect", f"paho closed the connection: {reason}"))


def _connack_311_code(reason: Any) -> int:
    """Map paho's CONNACK ReasonCode back to the MQTT 3.1.1 return code."""
    value = int(getattr(reason, "value", reason))
    if value < 6:
        return value
    # paho converts 3.1.1 codes 1..5 to these MQTT 5 reason codes.
    return {0x84: 1, 0x85: 2, 0x88: 3, 0x86: 4, 0x87: 5}.get(value, value)


def _describe_failure(reason: Failure | None) -> str:
    if reason is None:
        return "connection lost"
    value = reason.value
    text = str(value) or type(value).__name__
    return f"{type(value).__name__}: {text}"
