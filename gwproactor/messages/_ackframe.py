"""Ack frames from one sender to one peer, encoded from a template instead of through the codec.

Every ack a link sends has the same header (``MessageId`` ``""``, ``AckRequired`` false) and
differs only in the acked id, so its bytes are the codec's encoding of one ack with a marker id,
split around the marker, with the id put in between.  The result is byte for byte what the codec
encodes for the same :func:`~gwproactor.messages.make_ack` message (``tests/test_codec_frames.py``
checks it); an id that JSON would escape (a quote, a backslash, a control or non-ASCII
character) goes through the codec instead.
"""

from __future__ import annotations

from typing import Any

from gwproactor.messages._payloads import Ack, Header, make_ack

__all__ = ["AckFrameEncoder"]

_MARKER = "gwproactor-ack-marker-7f3a"


def _plain(text: str) -> bool:
    """True if JSON writes ``text`` as it is between its quotes."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


class AckFrameEncoder:
    """Encodes the acks ``src`` sends to ``dst`` with ``codec``.

    :param codec: the link's :class:`~gwproactor.interfaces.ICodec`; the template is its own
        encoding of an ack, so a codec that writes acks differently still gets its own bytes.
    """

    __slots__ = ("_codec", "_dst", "_prefix", "_src", "_suffix", "header")

    def __init__(self, codec: Any, src: str, dst: str) -> None:
        self._codec = codec
        self._src = src
        self._dst = dst
        self.header = Header(src, dst, Ack.TYPE_NAME, "", False)
        """The header every ack from ``src`` to ``dst`` carries (the same object each time)."""
        self._prefix: bytes | None = None
        self._suffix: bytes | None = None  # None: the template is not built yet

    def _build(self) -> None:
        """Encode the marker ack once; without exactly one quoted marker in it, every ack goes through the codec."""
        self._suffix = b""
        try:
            data = self._codec.encode(make_ack(self._src, self._dst, _MARKER))
        except Exception:
            return
        quoted = f'"{_MARKER}"'.encode()
        if isinstance(data, bytes) and data.count(quoted) == 1 and data.count(_MARKER.encode()) == 1:
            self._prefix, self._suffix = data.split(quoted)

    def encode(self, acked_id: str) -> bytes:
        """The frame acking ``acked_id``; raise :class:`~gwproactor.errors.EncodeError` as the codec does."""
        if self._suffix is None:
            self._build()
        if self._prefix is not None and _plain(acked_id):
            return b'%s"%s"%s' % (self._prefix, acked_id.encode("ascii"), self._suffix)
        data: bytes = self._codec.encode(make_ack(self._src, self._dst, acked_id))
        return data
