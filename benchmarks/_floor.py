"""The machine's floor for the idle round trip: raw MQTT 3.1.1 over blocking sockets, no framework.

Process A publishes a 500-byte frame (the size of one event frame) to topic ``floor/ping``; process B,
subscribed, publishes a 120-byte frame (an ack) to ``floor/pong`` as soon as it reads it; A times
the exchange.  Same broker, same topology (three processes), same idle gap as the delivery
benchmark's round trip, so the difference between the two is what gwproactor itself costs.

    python benchmarks/_floor.py --port 1883 --gap-ms 10 --count 500     # prints one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import time


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str16(b: bytes) -> bytes:
    return struct.pack(">H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _remaining_length(len(body)) + body


def _recv_packet(sock: socket.socket) -> bytes:
    """Read one whole MQTT packet (first byte, length, body)."""
    def read(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            data += chunk
        return data

    first = read(1)
    length, shift = 0, 0
    while True:
        byte = read(1)[0]
        length |= (byte & 127) << shift
        shift += 7
        if not byte & 128:
            break
    return first + read(length)


def _connect(port: int, client_id: bytes, subscribe: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(_packet(0x10, _str16(b"MQTT") + bytes([4, 2]) + struct.pack(">H", 60) + _str16(client_id)))
    _recv_packet(sock)  # CONNACK
    sock.sendall(_packet(0x82, struct.pack(">H", 1) + _str16(subscribe) + b"\x00"))
    _recv_packet(sock)  # SUBACK
    return sock


def measure(port: int, gap_s: float, count: int) -> dict:
    pid = os.fork()
    if pid == 0:  # B: answers every ping with a pong
        try:
            b = _connect(port, b"floor-b-%d" % os.getpid(), b"floor/ping")
            pong = _packet(0x30, _str16(b"floor/pong") + b"a" * 120)
            while True:
                _recv_packet(b)
                b.sendall(pong)
        except Exception:
            os._exit(0)
    a = _connect(port, b"floor-a-%d" % os.getpid(), b"floor/pong")
    ping = _packet(0x30, _str16(b"floor/ping") + b"e" * 500)
    try:
        for _ in range(20):  # until B is subscribed and answering
            a.sendall(ping)
            a.settimeout(0.5)
            try:
                _recv_packet(a)
                break
            except TimeoutError:
                continue
        a.settimeout(None)
        samples = []
        for _ in range(count):
            time.sleep(gap_s)
            t0 = time.perf_counter()
            a.sendall(ping)
            _recv_packet(a)
            samples.append((time.perf_counter() - t0) * 1000)
    finally:
        a.close()
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    samples.sort()
    return {
        "count": count,
        "gap_ms": gap_s * 1000,
        "p50_ms": round(samples[len(samples) // 2], 3),
        "p99_ms": round(samples[max(0, int(len(samples) * 0.99) - 1)], 3),
        "max_ms": round(samples[-1], 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gap-ms", type=float, default=10.0)
    parser.add_argument("--count", type=int, default=500)
    args = parser.parse_args()
    print(json.dumps(measure(args.port, args.gap_ms / 1000.0, args.count)))
    sys.stdout.flush()
