"""The transport side of the paho adapter: the in-memory socket paho reads and writes, and transport helpers.

No paho import here (only :mod:`gwproactor.mqtt._paho` imports paho); see that module's docstring for the
paho hooks this socket serves.
"""

from __future__ import annotations

import fcntl
import sys
import termios
from typing import Any, Callable

from twisted.internet.abstract import FileDescriptor

__all__ = ["_MemorySocket", "_input_waiting", "_set_no_delay", "_socket_descriptor"]


def _socket_descriptor(transport: Any) -> FileDescriptor | None:
    """The reactor's file descriptor under ``transport`` (through TLS and other wrappers), if any."""
    for _ in range(8):
        if transport is None:
            return None
        if isinstance(transport, FileDescriptor):
            return transport
        transport = getattr(transport, "transport", None)
    return None


def _input_waiting(descriptor: FileDescriptor | None) -> bool:
    """True if the kernel already holds more bytes to read on ``descriptor``'s socket (``FIONREAD``)."""
    if descriptor is None:
        return False
    try:
        fd = descriptor.fileno()
        if fd < 0:
            return False
        return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder) > 0
    except (OSError, ValueError, AttributeError):
        return False


def _set_no_delay(transport: Any) -> None:
    """Turn Nagle's algorithm off: MQTT frames are small and latency matters (an ack waits behind it otherwise)."""
    while transport is not None:
        set_no_delay = getattr(transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except Exception:
                pass
            return
        transport = getattr(transport, "transport", None)


class _MemorySocket:
    """The socket-like object paho reads from and writes to.

    Bytes from ``dataReceived`` are appended to a buffer that ``recv`` consumes
    (paho reads one byte at a time for headers, so reading is index based, not
    slicing off the front); ``send`` hands bytes straight to the transport.
    """

    __slots__ = ("_buffer", "_position", "_on_send", "_on_close", "closed")

    def __init__(self, on_send: Callable[[bytes], None], on_close: Callable[[], None]) -> None:
        self._buffer = bytearray()
        self._position = 0
        self._on_send = on_send
        self._on_close = on_close
        self.closed = False

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def pending(self) -> int:
        return len(self._buffer) - self._position

    def compact(self) -> None:
        if self._position:
            if self._position >= len(self._buffer):
                # All read: a new buffer gives a large frame's memory back (the old one keeps its capacity).
                self._buffer = bytearray()
            else:
                del self._buffer[: self._position]
            self._position = 0

    # -- the socket API paho uses -------------------------------------------
    def recv(self, bufsize: int) -> bytes:
        position = self._position
        available = len(self._buffer) - position
        if available <= 0:
            if self.closed:
                return b""
            raise BlockingIOError()
        end = position + min(bufsize, available)
        self._position = end
        return bytes(self._buffer[position:end])

    def send(self, data: bytes | bytearray) -> int:
        if self.closed:
            raise BrokenPipeError("the MQTT connection is closed")
        self._on_send(bytes(data))
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._on_close()

    def fileno(self) -> int:
        return -1

    def setblocking(self, flag: bool) -> None:
        pass
