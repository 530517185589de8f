"""MQTT topic scheme of gridworks peers: ``gw/<src>/to/<dst>/<message type>`` with dots dashed."""

from __future__ import annotations

from gwproactor.errors import TopicError


def dashed(name: str) -> str:
    """``name`` with every ``.`` replaced by ``-`` (as in topics)."""
    return name.replace(".", "-")


def topic_for(src_long: str, dst_short: str, message_type: str) -> str:
    """The topic on which ``src_long`` publishes ``message_type`` to ``dst_short``."""
    return f"gw/{src_long}/to/{dst_short}/{message_type}".replace(".", "-")


def subscription_filter(peer_long: str, own_short: str) -> str:
    """The filter a process named ``own_short`` subscribes to for messages from ``peer_long``."""
    return f"gw/{dashed(peer_long)}/to/{dashed(own_short)}/#"


def will_topic(long_name: str) -> str:
    """Where a gwproactor process's broker connection has its MQTT Last Will (and announces a stop).

    Not under ``gw/<long>/to/``, so a gridworks-proactor 4.x peer (which subscribes only to what is
    addressed to it) never receives it.
    """
    return f"gw/{dashed(long_name)}/will"


def will_payload(long_name: str, reason: str) -> bytes:
    """The JSON a process leaves as its will (``reason`` "connection lost") or publishes as it stops ("stopped")."""
    import json

    return json.dumps({"TypeName": "gwproactor.gone", "Src": long_name, "Reason": reason},
                      separators=(",", ":")).encode()


def parse_topic(topic: str) -> tuple[str, str, str]:
    """Split a topic into ``(src_dashed, dst_dashed, type_dashed)``.

    :raises TopicError: if ``topic`` is not ``gw/<src>/to/<dst>/<type>`` with
        non-empty parts free of ``.``, ``+`` and ``#``.
    """
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "gw" or parts[2] != "to":
        raise TopicError(f"topic {topic!r} does not follow gw/<src>/to/<dst>/<type>")
    for part in (parts[1], parts[3], parts[4]):
        if not part or "." in part or "+" in part or "#" in part:
            raise TopicError(
                f"topic {topic!r} has an empty or invalid part {part!r} (parts are dashed names, no wildcards)"
            )
    return parts[1], parts[3], parts[4]
