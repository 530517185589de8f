"""Frame intake of a link: what arrives on its topics is size-checked, topic-checked, inflated, decoded and
header-checked before the link sees it; bad frames are counted and reported at a bounded rate.

Peers choose what they send, so nothing here trusts a frame: an oversized frame is dropped before decoding, a
compressed one never inflates past the bound, and what is logged or reported of a frame is cut short.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from gwproactor.errors import DecodeError, FrameTooLarge, TopicError
from gwproactor.links.stats import LinkStats
from gwproactor.message import COMPRESSED_BATCH_TYPE, Message, dashed, inflate_batch_frame, parse_topic
from gwproactor.ops.problems import RateLimiter

__all__ = ["FrameIntake", "cut"]

_COMPRESSED_TOPIC_TYPE = dashed(COMPRESSED_BATCH_TYPE)

#: A gone announcement (Last Will or stop announcement) larger than this is not parsed.
MAX_GONE_ANNOUNCEMENT_BYTES = 4096


def cut(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters for a log line or problem event (peers choose what is in it)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class FrameIntake:
    """Checks and decodes the frames of one link (from ``peer_long_name`` to ``own_short_name``).

    :param link_name: the link's name (in problem summaries).
    :param own_short_name: this process's short name (``Dst`` of what the peer sends).
    :param peer_long_name: the peer's long name (``Src`` of what it sends).
    :param codec: an :class:`~gwproactor.interfaces.ICodec`.
    :param stats: the link's :class:`~gwproactor.links.stats.LinkStats` (counters of bad frames and bytes in).
    :param clock: provides ``seconds`` (for the rate limit of reports).
    :param max_frame_bytes: frames larger than this (on the wire or inflated) are dropped.
    :param on_frame: called with each good :class:`~gwproactor.message.Message`.
    :param on_peer_gone: called with the reason of each valid gone announcement of the peer.
    :param report: ``report(problem_type, summary, details)`` for bad frames (at most 5 a minute per kind).
    """

    def __init__(
        self,
        link_name: str,
        *,
        own_short_name: str,
        peer_long_name: str,
        codec: Any,
        stats: LinkStats,
        clock: Any,
        max_frame_bytes: int,
        on_frame: Callable[[Message], None],
        on_peer_gone: Callable[[str], None],
        report: Callable[[str, str, str], None],
    ) -> None:
        self.link_name = link_name
        self.own_short_name = own_short_name
        self.peer_long_name = peer_long_name
        self.codec = codec
        self.stats = stats
        self.max_frame_bytes = max_frame_bytes
        self._on_frame = on_frame
        self._on_peer_gone = on_peer_gone
        self._report = report
        self._bad_frames = RateLimiter(clock=clock, max_per_period=5, period_s=60.0)
        self._peer_dashed = dashed(peer_long_name)
        self._own_short_dashed = dashed(own_short_name)

    def frame_received(self, topic: str, payload: bytes) -> None:
        """A frame arrived on the link's subscription: hand it to ``on_frame`` if it passes every check."""
        stats = self.stats
        stats.bytes_in += len(payload)
        if len(payload) > self.max_frame_bytes:
            stats.oversized += 1
            self._bad_frame("oversized", f"oversized frame on link {self.link_name}",
                            f"topic {cut(topic)}: {len(payload)} bytes, more than max_frame_bytes "
                            f"({self.max_frame_bytes}); dropped without decoding")
            return
        try:
            src, dst, _type = parse_topic(topic)
        except TopicError as e:
            self._reject(topic, str(e))
            return
        if src != self._peer_dashed or dst != self._own_short_dashed:
            self._reject(topic, f"topic is not from {self.peer_long_name} to {self.own_short_name}")
            return
        if _type == _COMPRESSED_TOPIC_TYPE:
            inflated = self._inflate(topic, payload)
            if inflated is None:
                return
            payload = inflated
        try:
            message = self.codec.decode(payload)
        except DecodeError as e:
            stats.decode_errors += 1
            self._bad_frame("undecodable", f"undecodable frame on link {self.link_name}",
                            f"topic {cut(topic)}: {cut(str(e), 1000)}")
            return
        header = message.header
        if header.src != self.peer_long_name or header.dst != self.own_short_name:
            self._reject(topic, f"header Src/Dst {cut(header.src)}/{cut(header.dst)} do not match the link")
            return
        self._on_frame(message)

    def gone_received(self, topic: str, payload: bytes) -> None:
        """The peer's process announced it is gone (its Last Will, or its stop announcement)."""
        try:
            obj = json.loads(payload) if len(payload) <= MAX_GONE_ANNOUNCEMENT_BYTES else None
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or obj.get("Src") != self.peer_long_name:
            self._reject(topic, f"not a gone announcement of {self.peer_long_name}")
            return
        self.stats.peer_gone += 1
        self._on_peer_gone(cut(str(obj.get("Reason", ""))))

    def _inflate(self, topic: str, payload: bytes) -> bytes | None:
        """Inflate a compressed batch frame, never past ``max_frame_bytes`` (a small frame may inflate hugely)."""
        try:
            return inflate_batch_frame(payload, self.max_frame_bytes)
        except FrameTooLarge as e:
            self.stats.oversized += 1
            self._bad_frame("oversized", f"oversized frame on link {self.link_name}", f"topic {cut(topic)}: {e}")
        except DecodeError as e:
            self.stats.decode_errors += 1
            self._bad_frame("undecodable", f"undecodable frame on link {self.link_name}", f"topic {cut(topic)}: {e}")
        return None

    def _reject(self, topic: str, why: str) -> None:
        self.stats.rejected += 1
        self._bad_frame("rejected", f"frame rejected on link {self.link_name}", f"topic {cut(topic)}: {why}")

    def _bad_frame(self, kind: str, summary: str, details: str) -> None:
        """Report a bad frame: at most 5 a minute per kind, each saying how many were left out before it."""
        if not self._bad_frames.allow(kind):
            self.stats.bad_frames_suppressed += 1
            return
        suppressed = self._bad_frames.take_suppressed(kind)
        if suppressed:
            details = f"{details} ({suppressed} more {kind} frames were not reported)"
        self._report("warning", summary, details)
