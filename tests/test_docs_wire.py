"""Every frame shown in ``docs/wire.rst`` is what the codec and the topic scheme really produce and accept.

The page is the project's own description of the wire format; these tests keep it honest: each JSON
example decodes with the framework's codec into the payload class the page names, re-encodes to the
same JSON object, and each topic shown is the one :func:`topic_for` / :func:`subscription_filter` build.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gwproactor.message import (
    Ack,
    Codec,
    EventBatch,
    Hello,
    Ping,
    ProblemEvent,
    subscription_filter,
    topic_for,
    will_payload,
    will_topic,
)

PAGE = Path(__file__).resolve().parent.parent / "docs" / "wire.rst"
CHILD, CHILD_SHORT = "d1.isone.ct.newhaven.orange1.scada", "s"
PARENT, PARENT_SHORT = "d1.isone.ct.newhaven.orange1", "a"


def _json_blocks() -> list[dict]:
    """The JSON objects of every ``.. code-block:: json`` on the page, in order."""
    text = PAGE.read_text()
    blocks = []
    for match in re.finditer(r"\.\. code-block:: json\n\n((?:   .*\n|\n)+)", text):
        blocks.append(json.loads(match.group(1)))
    return blocks


BLOCKS = _json_blocks()
ENVELOPES = [b for b in BLOCKS if "Header" in b]


def test_page_has_its_examples() -> None:
    """The page shows a ping, an ack, an event, a capability ping, a hello, a batch and a gone announcement."""
    kinds = [b["Payload"]["TypeName"] if "Header" in b else b["TypeName"] for b in BLOCKS]
    assert kinds == [
        "gridworks.ping",
        "gridworks.ack",
        "gridworks.event.problem",
        "gridworks.ping",
        "gwproactor.hello",
        "gwproactor.batch",
        "gwproactor.gone",
    ]


@pytest.mark.parametrize("backend", ["json", "orjson"])
@pytest.mark.parametrize("frame", ENVELOPES, ids=lambda f: f["Payload"]["TypeName"])
def test_example_decodes_and_round_trips(frame: dict, backend: str) -> None:
    """Each envelope decodes, has consistent header fields, and re-encodes to the same JSON object."""
    codec = Codec(backend=backend)
    message = codec.decode(json.dumps(frame).encode())
    expected = {
        "gridworks.ping": Ping,
        "gridworks.ack": Ack,
        "gridworks.event.problem": ProblemEvent,
        "gwproactor.hello": Hello,
        "gwproactor.batch": EventBatch,
    }[frame["Payload"]["TypeName"]]
    assert isinstance(message.payload, expected)
    assert message.header.message_type == frame["Payload"]["TypeName"]
    assert {message.header.src, message.header.dst} in ({CHILD, PARENT_SHORT}, {PARENT, CHILD_SHORT})
    assert json.loads(codec.encode(message)) == frame


def test_capability_ping_and_hello_carry_capabilities() -> None:
    """The capability ping keeps its extra field; the hello lists what its sender offers."""
    codec = Codec()
    ping = codec.decode(json.dumps(ENVELOPES[3]).encode()).payload
    assert ping.extra["Capabilities"] == ["batch1", "zlib1"]
    hello = codec.decode(json.dumps(ENVELOPES[4]).encode()).payload
    assert hello.capabilities == ["batch1", "zlib1"]
    assert ENVELOPES[4]["Header"]["AckRequired"] is False


def test_batch_id_is_the_message_id() -> None:
    """A batch's one ack acks its BatchId, which is the frame's MessageId."""
    batch = ENVELOPES[5]
    assert batch["Payload"]["BatchId"] == batch["Header"]["MessageId"]


def test_topics_on_the_page_are_the_real_ones() -> None:
    """The topics shown are built by the topic scheme, and the compressed type is dashed the same way."""
    text = PAGE.read_text()
    for topic in (
        topic_for(CHILD, PARENT_SHORT, "gridworks.ping"),
        subscription_filter(PARENT, CHILD_SHORT),
        topic_for(PARENT, CHILD_SHORT, "gridworks.ack"),
        subscription_filter(CHILD, PARENT_SHORT),
        topic_for(CHILD, PARENT_SHORT, "gwproactor.batch.z"),
    ):
        assert topic in text


def test_gone_announcement() -> None:
    """The gone example is exactly what a process leaves as its will; the will topic is outside ``gw/<long>/to/``."""
    assert BLOCKS[-1] == json.loads(will_payload(CHILD, "connection lost"))
    assert will_topic(CHILD) == "gw/d1-isone-ct-newhaven-orange1-scada/will"
