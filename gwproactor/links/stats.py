"""The counters of one link (:class:`LinkStats`), reported in stats, health checks and metrics."""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs

from gwproactor.ops.counters import BoundedCounter

__all__ = ["LinkStats"]


@attrs.define
class LinkStats:
    """Counters of one link."""

    messages_in: Counter = attrs.field(factory=BoundedCounter)
    """Accepted frames from the peer, by TypeName (at most 100 names; the rest under ``"(other)"``)."""
    messages_out: Counter = attrs.field(factory=BoundedCounter)
    """Frames published to the peer, by TypeName."""
    comm_events: Counter = attrs.field(factory=BoundedCounter)
    """Comm events generated, by TypeName."""
    rejected: int = 0
    """Frames refused because their topic, Src or Dst did not match this link."""
    decode_errors: int = 0
    """Frames from the peer that could not be decoded."""
    oversized: int = 0
    """Frames larger than the link's ``max_frame_bytes``, dropped before decoding."""
    peer_gone: int = 0
    """Announcements that the peer's process is gone (its MQTT Last Will, or its stop)."""
    bad_frames_suppressed: int = 0
    """Bad frames (rejected, undecodable, oversized) not logged because of the rate limit (5 a minute per kind)."""
    publish_failures: int = 0
    """Publishes that failed (not connected, or the connection dropped)."""
    acks_sent: int = 0
    duplicates_dropped: int = 0
    """Events from the peer that were accepted before (acked again, not handed to the application)."""
    transitions: int = 0
    bytes_in: int = 0
    """Payload bytes of the frames received on the link's topics (as on the wire, compressed or not)."""
    bytes_out: int = 0
    """Payload bytes of the frames published (as on the wire)."""
    compressed_batches_sent: int = 0
    ack_timeouts_counted: int = 0
    """Ack timeouts fed to the state machine (evidence that the peer went silent)."""
    ack_timeouts_discounted: int = 0
    """Ack timeouts of frames sent before the peer was heard again or before a later ack arrived: not evidence."""
    probes: int = 0
    """Pings sent to confirm an ack timeout before counting it (the peer answered, or the probe's timeout counted)."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (the counters become plain dicts)."""
        return attrs.asdict(self)
