"""K simulated gwproactor children in one process, speaking the gridworks wire format over one raw MQTT socket.

Used by ``fanin.py`` and ``tests/test_live_fanin.py``.  There is no framework here (no Twisted, no paho, no
gwproactor import): one non-blocking socket, MQTT 3.1.1 at QoS 0, and pre-built JSON, so that K = 1,000 children
at 10 events/s each cost this process far less than they cost the parent it is measuring.

Child ``i`` has the long name ``<prefix>.c<i>`` and the short name ``c<i>`` (``i`` zero-padded to 4 digits).
Each child behaves, on the wire, like a gridworks peer whose link is up:

* **join**: it sends a ``gridworks.ping`` (ack required) to the parent, again every second until it is acked;
* **run**: it sends ``gridworks.event.demo.reading`` events, one every ``1 / rate`` s, the K children's sends spread
  evenly over each period (event ``j`` of the whole run is due at ``start + j / (K * rate)``, from child ``j % K``);
  it never resends an event;
* throughout, it acks every ack-required message the parent sends it (the parent's pings), and times each ack of
  its own events (publish → ack read from the socket).

Afterwards it waits up to ``--drain-s`` for the last acks and prints one JSON object (see :func:`summary`).  It also
subscribes to Mosquitto's ``$SYS/broker/subscriptions/count`` and reports the last value seen.

    python benchmarks/_fanin_children.py --port 1883 --k 100 --rate 10 --seconds 10 \
        --parent-long d1.fan --parent-short f --prefix d1.fan
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import struct
import sys
import time
import uuid
from typing import Any

from _floor import _packet, _str16  # the same raw MQTT 3.1.1 framing as the floor (no gwproactor import)

READING = "gridworks.event.demo.reading"


def publish_frame(topic: bytes, payload: bytes) -> bytes:
    """An MQTT 3.1.1 PUBLISH at QoS 0."""
    return _packet(0x30, _str16(topic) + payload)


def dashed(name: str) -> str:
    return name.replace(".", "-")


def _header(src: str, dst: str, message_type: str, message_id: str, ack_required: bool) -> str:
    return ('{"Header":{"Src":"%s","Dst":"%s","MessageType":"%s","MessageId":"%s","AckRequired":%s,'
            '"TypeName":"gridworks.header","Version":"001"},' % (src, dst, message_type, message_id,
                                                                 "true" if ack_required else "false"))


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, max(0, int(len(sorted_values) * q) - 1))]


class Children:
    """The K simulated children and their one MQTT connection."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.k = args.k
        self.parent_short = args.parent_short
        self.longs = [f"{args.prefix}.c{i:04d}" for i in range(self.k)]
        self.shorts = [f"c{i:04d}" for i in range(self.k)]
        self.index = {s: i for i, s in enumerate(self.shorts)}
        self.event_topics = [f"gw/{dashed(lg)}/to/{dashed(self.parent_short)}/{dashed(READING)}".encode()
                             for lg in self.longs]
        self.ping_topics = [f"gw/{dashed(lg)}/to/{dashed(self.parent_short)}/gridworks-ping".encode()
                            for lg in self.longs]
        self.ack_topics = [f"gw/{dashed(lg)}/to/{dashed(self.parent_short)}/gridworks-ack".encode()
                           for lg in self.longs]
        self.sock: socket.socket | None = None
        self.sel = selectors.DefaultSelector()
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        # id -> (child, sent at perf_counter); kind is implied by the dict
        self.pending_events: dict[str, tuple[int, float]] = {}
        self.pending_pings: dict[str, int] = {}
        self.joined_at: list[float | None] = [None] * self.k
        self.joined = 0
        self.join_pings_sent = 0
        self.events_sent = 0
        self.events_acked = 0
        self.acks_per_child = [0] * self.k
        self.sent_per_child = [0] * self.k
        self.unknown_acks = 0
        self.rtts_ms: list[float] = []
        self.run_start: float | None = None
        self.rtt_worst_by_second: dict[int, float] = {}
        self.parent_messages: dict[str, int] = {}
        self.parent_ping_ids: set[str] = set()
        self.parent_repeats = 0
        self.acks_sent = 0
        self.sys_subscriptions: int | None = None
        self.bytes_in = 0
        self.bytes_out = 0

    # --- MQTT ---------------------------------------------------------------------------------

    def connect(self) -> None:
        sock = socket.create_connection((self.args.host, self.args.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client_id = f"fanin-children-{os.getpid()}".encode()
        sock.sendall(_packet(0x10, _str16(b"MQTT") + bytes([4, 2]) + struct.pack(">H", 60) + _str16(client_id)))
        self.sock = sock
        self._read_blocking(0x20)  # CONNACK
        filters = [f"gw/{dashed(self.args.parent_long)}/to/+/#".encode(), b"$SYS/broker/subscriptions/count"]
        body = struct.pack(">H", 1) + b"".join(_str16(f) + b"\x00" for f in filters)
        sock.sendall(_packet(0x82, body))
        self._read_blocking(0x90)  # SUBACK
        sock.setblocking(False)
        self.sel.register(sock, selectors.EVENT_READ)

    def _read_blocking(self, packet_type: int) -> None:
        assert self.sock is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            packet = self._next_packet()
            if packet is not None:
                if packet[0] & 0xF0 == packet_type:
                    return
                continue
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("broker closed the connection")
            self.inbuf += data
        raise TimeoutError(f"no packet of type {packet_type:#x} from the broker")

    def _next_packet(self) -> tuple[int, memoryview] | None:
        buf = self.inbuf
        if len(buf) < 2:
            return None
        length, shift, pos = 0, 0, 1
        while True:
            if pos >= len(buf):
                return None
            byte = buf[pos]
            length |= (byte & 127) << shift
            shift += 7
            pos += 1
            if not byte & 128:
                break
        if len(buf) < pos + length:
            return None
        first = buf[0]
        body = bytes(buf[pos:pos + length])
        del buf[:pos + length]
        return first, memoryview(body)

    def send(self, frame: bytes) -> None:
        self.outbuf += frame
        self.bytes_out += len(frame)

    def flush(self) -> None:
        assert self.sock is not None
        if not self.outbuf:
            return
        try:
            n = self.sock.send(self.outbuf)
        except BlockingIOError:
            n = 0
        del self.outbuf[:n]
        self.sel.modify(self.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if self.outbuf else 0))

    def pump(self, timeout: float) -> None:
        """Write what is queued, wait up to ``timeout`` for the socket, read and handle what came, write again.

        Queued frames go out before the wait: an event queued just before would otherwise sit in the buffer
        for the whole wait, and its round trip (timed from the queueing) would count the harness's own delay.
        """
        assert self.sock is not None
        self.flush()
        for _key, mask in self.sel.select(max(0.0, timeout)):
            if mask & selectors.EVENT_READ:
                while True:
                    try:
                        data = self.sock.recv(262144)
                    except BlockingIOError:
                        break
                    if not data:
                        raise ConnectionError("broker closed the connection")
                    self.bytes_in += len(data)
                    self.inbuf += data
                    if len(data) < 262144:
                        break
                while (packet := self._next_packet()) is not None:
                    self.handle_packet(*packet)
        self.flush()

    # --- the wire format ------------------------------------------------------------------------

    def handle_packet(self, first: int, body: memoryview) -> None:
        if first & 0xF0 != 0x30:
            return  # PINGRESP and the like
        topic_len = struct.unpack(">H", body[:2])[0]
        topic = bytes(body[2:2 + topic_len]).decode()
        payload = bytes(body[2 + topic_len + (2 if first & 0x06 else 0):])
        if topic.startswith("$SYS/"):
            try:
                self.sys_subscriptions = int(payload)
            except ValueError:
                pass
            return
        parts = topic.split("/")
        if len(parts) != 5:
            return
        child = self.index.get(parts[3])
        if child is None:
            return
        kind = parts[4]
        if kind == "gridworks-ack":
            start = payload.find(b'"AckMessageID":"')
            if start < 0:
                return
            start += 16
            acked = payload[start:payload.index(b'"', start)].decode()
            self.acked(child, acked)
            return
        self.parent_messages[kind] = self.parent_messages.get(kind, 0) + 1
        if b'"AckRequired":true' in payload:
            start = payload.find(b'"MessageId":"') + 13
            message_id = payload[start:payload.index(b'"', start)].decode()
            if kind == "gridworks-ping":
                if message_id in self.parent_ping_ids:
                    self.parent_repeats += 1
                self.parent_ping_ids.add(message_id)
            self.send_ack(child, message_id)

    def acked(self, child: int, message_id: str) -> None:
        now = time.perf_counter()
        sent = self.pending_events.pop(message_id, None)
        if sent is not None:
            self.rtts_ms.append((now - sent[1]) * 1000)
            second = int(sent[1] - self.run_start) if self.run_start is not None else -1
            if 0 <= second:
                self.rtt_worst_by_second[second] = max(self.rtt_worst_by_second.get(second, 0.0), (now - sent[1]) * 1000)
            self.events_acked += 1
            self.acks_per_child[child] += 1
            return
        ping_child = self.pending_pings.pop(message_id, None)
        if ping_child is not None:
            if self.joined_at[ping_child] is None:
                self.joined_at[ping_child] = time.time()
                self.joined += 1
            return
        self.unknown_acks += 1  # a second ack of something already acked, or of nothing we sent

    def send_ack(self, child: int, message_id: str) -> None:
        text = (_header(self.longs[child], self.parent_short, "gridworks.ack", "", False)
                + '"Payload":{"AckMessageID":"%s","TypeName":"gridworks.ack"},"TypeName":"gw"}' % message_id)
        self.send(publish_frame(self.ack_topics[child], text.encode()))
        self.acks_sent += 1

    def send_ping(self, child: int) -> None:
        message_id = str(uuid.uuid4())
        text = (_header(self.longs[child], self.parent_short, "gridworks.ping", message_id, True)
                + '"Payload":{"MessageId":"%s","TypeName":"gridworks.ping"},"TypeName":"gw"}' % message_id)
        self.pending_pings[message_id] = child
        self.send(publish_frame(self.ping_topics[child], text.encode()))
        self.join_pings_sent += 1

    def send_event(self, child: int) -> None:
        message_id = str(uuid.uuid4())
        seq = self.sent_per_child[child]
        src = self.longs[child]
        text = (_header(src, self.parent_short, READING, message_id, True)
                + '"Payload":{"MessageId":"%s","TimeCreatedMs":%d,"Src":"%s","TypeName":"%s","Seq":%d,"Value":1.0},'
                  '"TypeName":"gw"}' % (message_id, int(time.time() * 1000), src, READING, seq))
        self.sent_per_child[child] = seq + 1
        self.events_sent += 1
        self.pending_events[message_id] = (child, time.perf_counter())
        self.send(publish_frame(self.event_topics[child], text.encode()))

    # --- phases -------------------------------------------------------------------------------

    def keepalive(self, now: float) -> None:
        if now - self._last_pingreq > 20:
            self.send(b"\xc0\x00")
            self._last_pingreq = now

    def run(self) -> dict[str, Any]:
        args = self.args
        t_start = time.time()
        self.connect()
        self._last_pingreq = time.monotonic()
        # Join: a ping from every child, again every second until acked.
        join_deadline = time.monotonic() + args.join_timeout_s
        last_round = {i: 0.0 for i in range(self.k)}
        while self.joined < self.k and time.monotonic() < join_deadline:
            now = time.monotonic()
            for i in [i for i, at in last_round.items() if self.joined_at[i] is None and now - at >= 1.0]:
                self.send_ping(i)
                last_round[i] = now
            self.keepalive(now)
            self.pump(0.01)
        t_joined = time.time()
        all_joined = self.joined == self.k
        # Run: event j at start + j / (K * rate), from child j % K.
        t_run = time.time()
        run_start = self.run_start = time.perf_counter()
        cpu_run0 = time.process_time()
        total_rate = self.k * args.rate
        if all_joined or args.run_anyway:
            end = run_start + args.seconds
            while True:
                now = time.perf_counter()
                if now >= end:
                    break
                due = int((now - run_start) * total_rate) + 1
                while self.events_sent < due:
                    self.send_event(self.events_sent % self.k)
                self.keepalive(time.monotonic())
                next_due = run_start + self.events_sent / total_rate
                self.pump(min(next_due - time.perf_counter(), 0.005))
        t_run_end = time.time()
        cpu_run = time.process_time() - cpu_run0
        # Drain: the last acks.
        drain_deadline = time.monotonic() + args.drain_s
        while self.pending_events and time.monotonic() < drain_deadline:
            self.pump(0.01)
        # One more moment for a $SYS update and the parent's last pings (bounded, not a wait for a condition).
        linger_end = time.monotonic() + args.linger_s
        while time.monotonic() < linger_end:
            self.pump(0.05)
        return self.summary(t_start, t_joined, t_run, t_run_end, all_joined, cpu_run)

    def summary(self, t_start: float, t_joined: float, t_run: float, t_run_end: float, all_joined: bool,
                cpu_run: float) -> dict[str, Any]:
        """What the children saw; times are ``time.time()`` (wall clock), round trips in ms."""
        rtts = sorted(self.rtts_ms)
        joined = [t for t in self.joined_at if t is not None]
        return {
            "k": self.k,
            "rate_per_child": self.args.rate,
            "seconds": self.args.seconds,
            "t_start": t_start,
            "t_joined": t_joined,
            "t_run": t_run,
            "t_run_end": t_run_end,
            "all_joined": all_joined,
            "joined": self.joined,
            "last_join_t": max(joined) if joined else None,
            "join_pings_sent": self.join_pings_sent,
            "events_sent": self.events_sent,
            "events_acked": self.events_acked,
            "events_unacked": len(self.pending_events),
            "unknown_or_repeated_acks": self.unknown_acks,
            "children_acked_all": sum(1 for s, a in zip(self.sent_per_child, self.acks_per_child, strict=True) if s == a),
            "achieved_events_per_s": round(self.events_sent / max(1e-9, t_run_end - t_run), 1),
            "ack_rtt_p50_ms": _round(_percentile(rtts, 0.50)),
            "ack_rtt_p99_ms": _round(_percentile(rtts, 0.99)),
            "ack_rtt_max_ms": _round(rtts[-1] if rtts else None),
            "ack_rtt_worst_by_second_ms": [_round(self.rtt_worst_by_second.get(i, 0.0))
                                           for i in range(int(self.args.seconds) + 1)],
            "parent_messages": self.parent_messages,
            "parent_pings_repeated": self.parent_repeats,
            "acks_sent_to_parent": self.acks_sent,
            "broker_subscriptions_sys": self.sys_subscriptions,
            "generator_cpu_s_during_run": round(cpu_run, 3),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--k", type=int, required=True)
    parser.add_argument("--rate", type=float, default=10.0, help="events per second per child")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--parent-long", required=True)
    parser.add_argument("--parent-short", required=True)
    parser.add_argument("--prefix", required=True, help="children's long names are <prefix>.c<i>")
    parser.add_argument("--join-timeout-s", type=float, default=60.0)
    parser.add_argument("--drain-s", type=float, default=10.0)
    parser.add_argument("--linger-s", type=float, default=0.5)
    parser.add_argument("--run-anyway", action="store_true", help="send events even if not every child joined")
    args = parser.parse_args(argv)
    result = Children(args).run()
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
