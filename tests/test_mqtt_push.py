"""The paho adapter hands each write to the kernel at once instead of on the reactor's next turn."""

from __future__ import annotations

import socket
from typing import Any

import pytest_twisted
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.testing import StringTransport

from gwproactor.mqtt._paho import PUSH_EVERY, PahoProtocol, _socket_descriptor
from gwproactor.mqtt._socket import _input_waiting
from gwproactor_test.wait import await_for

CONNACK_OK = b"\x20\x02\x00\x00"


class Listener:
    def __init__(self) -> None:
        self.protocol: PahoProtocol | None = None
        self.messages: list[tuple[str, bytes]] = []

    def mqtt_connack(self, session: Any, code: int, reason: str) -> None:
        pass

    def mqtt_suback(self, session: Any, mid: int, codes: list[int]) -> None:
        pass

    def mqtt_published(self, session: Any, mid: int) -> None:
        pass

    def mqtt_message(self, session: Any, topic: str, payload: bytes) -> None:
        # Reply from inside dataReceived, as a link acks an event.
        self.messages.append((topic, payload))
        session.publish("reply/" + topic, b"re:" + payload, 0)

    def mqtt_lost(self, session: Any, reason: str) -> None:
        pass


def recv_now(conn: socket.socket) -> bytes:
    """What the kernel holds for ``conn`` right now, without waiting (b"" if nothing)."""
    try:
        return conn.recv(65536, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return b""


def publish_frame(topic: str, payload: bytes) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic.encode() + payload
    return bytes([0x30, len(body)]) + body


@pytest_twisted.ensureDeferred
async def test_writes_reach_the_socket_before_control_returns_to_the_reactor() -> None:
    """CONNECT, a publish, and a reply written while handling received data are in the kernel at once."""
    from twisted.internet import reactor

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    listener = Listener()
    protocol = PahoProtocol(listener=listener, clock=reactor, client_id="push-test", keepalive=60)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", server.getsockname()[1]), protocol)
    conn, _ = server.accept()  # the handshake is complete: accept does not block
    try:
        assert recv_now(conn)[:1] == b"\x10", "CONNECT was sent from connectionMade"
        conn.sendall(CONNACK_OK)
        await await_for(lambda: protocol.connacked, 5)

        protocol.publish("t/a", b"hello", 0)
        assert recv_now(conn) == publish_frame("t/a", b"hello"), "the PUBLISH is in the kernel when publish returns"

        # Data handed in by the reactor: the reply is sent before dataReceived returns.
        protocol.dataReceived(publish_frame("t/b", b"ping"))
        assert listener.messages == [("t/b", b"ping")]
        assert recv_now(conn) == publish_frame("reply/t/b", b"re:ping")
    finally:
        close(protocol, conn, server)


async def connacked(listener: Any, client_id: str) -> tuple[PahoProtocol, socket.socket, socket.socket]:
    """A PahoProtocol connected to a plain server socket, past CONNECT and CONNACK: ``(protocol, conn, server)``."""
    from twisted.internet import reactor

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    protocol = PahoProtocol(listener=listener, clock=reactor, client_id=client_id, keepalive=60)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", server.getsockname()[1]), protocol)
    conn, _ = server.accept()
    recv_now(conn)  # CONNECT
    conn.sendall(CONNACK_OK)
    await await_for(lambda: protocol.connacked, 5)
    return protocol, conn, server


def close(protocol: PahoProtocol, conn: socket.socket, server: socket.socket) -> None:
    protocol.transport.abortConnection()
    conn.close()
    server.close()


@pytest_twisted.ensureDeferred
async def test_replies_wait_for_input_already_waiting_then_go_in_one_send() -> None:
    """With more input in the kernel, the replies wait for the reactor to read it, then all go out together."""
    listener = Listener()
    protocol, conn, server = await connacked(listener, "coalesce-test")
    try:
        # The next frame is already in the kernel when the first one is handled.
        conn.sendall(publish_frame("t/c", b"two"))
        await await_for(lambda: _input_waiting(protocol._descriptor), 5)
        protocol.dataReceived(publish_frame("t/b", b"one"))
        assert recv_now(conn) == b"", "the reply waits while more input is waiting"
        assert protocol.pushes_left_to_reactor == 1
        await await_for(lambda: len(listener.messages) == 2, 5)
        expected = publish_frame("reply/t/b", b"re:one") + publish_frame("reply/t/c", b"re:two")
        # Loopback: what was sent is in the peer's kernel buffer when send returns.
        assert recv_now(conn) == expected, "both replies went out, in order, once the waiting input was read"

        # Nothing waiting: the reply goes at once, as before.
        protocol.dataReceived(publish_frame("t/d", b"three"))
        assert recv_now(conn) == publish_frame("reply/t/d", b"re:three")
    finally:
        close(protocol, conn, server)


@pytest_twisted.ensureDeferred
async def test_a_long_chunk_sends_its_replies_every_push_every_messages() -> None:
    """40 messages in one chunk: replies reach the kernel after every PUSH_EVERY of them, and the rest at the end."""
    seen_by_peer: list[int] = []
    holder: dict[str, socket.socket] = {}

    class Watching(Listener):
        def mqtt_message(self, session: Any, topic: str, payload: bytes) -> None:
            # Before this message's reply: how many replies has the peer received so far?
            seen_by_peer.append(len(recv_now(holder["conn"])))
            super().mqtt_message(session, topic, payload)

    protocol, conn, server = await connacked(Watching(), "chunk-test")
    holder["conn"] = conn
    try:
        chunk = b"".join(publish_frame(f"t/{n:02d}", b"x") for n in range(40))
        protocol.dataReceived(chunk)
        reply = len(publish_frame("reply/t/00", b"re:x"))
        arrived = [n for n, size in enumerate(seen_by_peer) if size]
        assert arrived == [PUSH_EVERY, 2 * PUSH_EVERY], seen_by_peer
        assert [seen_by_peer[n] for n in arrived] == [PUSH_EVERY * reply] * 2
        assert len(recv_now(conn)) == (40 - 2 * PUSH_EVERY) * reply  # the rest, after the chunk
    finally:
        close(protocol, conn, server)


@pytest_twisted.ensureDeferred
async def test_the_send_barrier_runs_before_any_reply_reaches_the_kernel() -> None:
    """mqtt_before_send runs before each push and before writes are left to the reactor: at each call, the
    peer has nothing that was written after the previous call."""
    state: dict[str, Any] = {"received": 0, "written": 0, "at_last_barrier": 0, "barriers": 0, "conn": None}
    violations: list[tuple[int, int]] = []

    def drain() -> None:
        state["received"] += len(recv_now(state["conn"]))

    class WithBarrier(Listener):
        def mqtt_message(self, session: Any, topic: str, payload: bytes) -> None:
            super().mqtt_message(session, topic, payload)
            state["written"] += len(publish_frame("reply/" + topic, b"re:" + payload))

        def mqtt_before_send(self, session: Any) -> None:
            if state["conn"] is None:
                return
            drain()
            state["barriers"] += 1
            if state["received"] > state["at_last_barrier"]:  # something written after the last barrier arrived
                violations.append((state["received"], state["at_last_barrier"]))
            state["at_last_barrier"] = state["written"]

    protocol, conn, server = await connacked(WithBarrier(), "barrier-test")
    try:
        state["conn"] = conn
        protocol.dataReceived(b"".join(publish_frame(f"t/{n:02d}", b"x") for n in range(2 * PUSH_EVERY + 3)))
        assert state["barriers"] == 3  # after each PUSH_EVERY messages, and after the chunk
        # Input already waiting: the writes are left to the reactor, after the barrier has run.
        conn.sendall(publish_frame("t/w", b"2"))
        await await_for(lambda: _input_waiting(protocol._descriptor), 5)
        protocol.dataReceived(publish_frame("t/v", b"1"))
        assert state["barriers"] == 4 and protocol.pushes_left_to_reactor == 1
        await await_for(lambda: state["barriers"] == 5, 5)  # the reactor reads t/w, then pushes everything
        drain()
        assert state["received"] == state["written"] == state["at_last_barrier"]
        assert violations == []
    finally:
        close(protocol, conn, server)


def test_socket_descriptor_unwraps_and_tolerates_memory_transports() -> None:
    """The descriptor is found through wrappers (TLS); a memory transport has none, and writes still work."""
    from twisted.internet import abstract

    descriptor = abstract.FileDescriptor.__new__(abstract.FileDescriptor)

    class Wrapper:
        def __init__(self, transport: Any) -> None:
            self.transport = transport

    assert _socket_descriptor(Wrapper(Wrapper(descriptor))) is descriptor
    assert _socket_descriptor(StringTransport()) is None
    assert _socket_descriptor(None) is None

    transport = StringTransport()
    protocol = PahoProtocol(listener=Listener(), clock=reactor_clock(), client_id="x", keepalive=60)
    protocol.makeConnection(transport)
    protocol.dataReceived(CONNACK_OK)
    protocol.publish("t/a", b"x", 0)
    assert transport.value().endswith(publish_frame("t/a", b"x"))


def reactor_clock() -> Any:
    from twisted.internet.task import Clock

    return Clock()
