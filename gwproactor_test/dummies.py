"""Dummy proactors for live tests: a child/parent pair and a scada2 → scada1 → atn tree, with settings factories.

Each dummy records the events and messages its application sees.  The names match the 4.x test dummies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gwproactor.config import BrokerSettings, LinkSettings, ProactorSettings, StoreSettings
from gwproactor.proactor import Proactor

__all__ = [
    "ATN_LONG_NAME",
    "CHILD_LONG_NAME",
    "PARENT_LONG_NAME",
    "SCADA1_LONG_NAME",
    "SCADA2_LONG_NAME",
    "TEST_LINK_TIMINGS",
    "DummyAtn",
    "DummyChild",
    "DummyParent",
    "DummyScada1",
    "DummyScada2",
    "RecordingProactor",
    "atn_settings",
    "child_settings",
    "parent_settings",
    "scada1_settings",
    "scada2_settings",
    "test_broker_settings",
    "test_settings",
]

CHILD_LONG_NAME, CHILD_SHORT_NAME = "d1.isone.ct.newhaven.orange1.scada", "s"
PARENT_LONG_NAME, PARENT_SHORT_NAME = "d1.isone.ct.newhaven.orange1", "a"
SCADA1_LONG_NAME, SCADA1_SHORT_NAME = CHILD_LONG_NAME, CHILD_SHORT_NAME
ATN_LONG_NAME, ATN_SHORT_NAME = PARENT_LONG_NAME, PARENT_SHORT_NAME
SCADA2_LONG_NAME, SCADA2_SHORT_NAME = "d1.isone.ct.newhaven.orange1.scada.s2", "s2"

TEST_LINK_TIMINGS: dict[str, float] = {"ack_timeout_s": 2.0, "heartbeat_s": 0.5, "receive_deadline_s": 3.0}
"""Link timings for live tests: short, yet with room for a loaded 2-core machine (a 1 s ack timeout
produced spurious timeouts when other test runs shared the CPUs)."""


class RecordingProactor(Proactor):
    """A proactor whose application records what it sees.

    :ivar events: events given to :meth:`handle_event`, in order.
    :ivar messages: non-event messages given to :meth:`handle_message`.
    :ivar activations: link names, each time a link became active.
    :ivar deactivations: ``(link name, reason)`` each time a link left active.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.events: list[Any] = []
        self.messages: list[Any] = []
        self.activations: list[str] = []
        self.deactivations: list[tuple[str, str]] = []
        super().__init__(*args, **kwargs)

    def handle_event(self, link: Any, event: Any) -> Any:
        """Record ``event``."""
        self.events.append(event)
        return super().handle_event(link, event)

    def handle_message(self, link: Any, message: Any) -> Any:
        """Record ``message``."""
        self.messages.append(message)
        return None

    def link_activated(self, link: Any) -> None:
        """Record the activation."""
        self.activations.append(link.link_name)

    def link_deactivated(self, link: Any, reason: str) -> None:
        """Record the deactivation."""
        self.deactivations.append((link.link_name, reason))


class DummyChild(RecordingProactor):
    """The child of a pair (``d1.isone.ct.newhaven.orange1.scada``, short ``s``), upstream link ``parent``."""


class DummyParent(RecordingProactor):
    """The parent of a pair (``d1.isone.ct.newhaven.orange1``, short ``a``), link ``child``."""


class DummyScada2(RecordingProactor):
    """The leaf of the tree (``...orange1.scada.s2``, short ``s2``), upstream link ``scada1``."""


class DummyScada1(RecordingProactor):
    """The middle of the tree: upstream link ``atn``, downstream link ``scada2``; forwards scada2's events."""


class DummyAtn(RecordingProactor):
    """The top of the tree (``d1.isone.ct.newhaven.orange1``, short ``a``), link ``scada1``."""


def test_broker_settings(endpoint: str) -> BrokerSettings:
    """Broker settings for live tests: quick reconnects (backoff 0.05 s, cap 0.5 s), 5 s connect timeout."""
    return BrokerSettings(endpoint=endpoint, backoff_initial_s=0.05, backoff_cap_s=0.5, connect_timeout_s=5.0)


test_broker_settings.__test__ = False  # type: ignore[attr-defined]


def _link(peer_long: str, peer_short: str, upstream: bool, overrides: dict[str, Any]) -> LinkSettings:
    values: dict[str, Any] = {**TEST_LINK_TIMINGS, **overrides}
    return LinkSettings(peer_long_name=peer_long, peer_short_name=peer_short, upstream=upstream, **values)


def test_settings(
    long_name: str,
    short_name: str,
    broker_endpoint: str,
    store_dir: Path | str,
    links: dict[str, tuple[str, str, bool]],
    link_overrides: dict[str, Any] | None = None,
) -> ProactorSettings:
    """Settings for a live-test proactor.

    :param links: ``{link name: (peer long name, peer short name, upstream)}``.
    :param link_overrides: :class:`~gwproactor.config.LinkSettings` fields applied to every link.

    The store syncs with policy ``never``: tests stop proactors cleanly, and fsync would only slow them.
    """
    overrides = dict(link_overrides or {})
    return ProactorSettings(
        long_name=long_name,
        short_name=short_name,
        brokers={"default": test_broker_settings(broker_endpoint)},
        links={name: _link(pl, ps, up, overrides) for name, (pl, ps, up) in links.items()},
        store=StoreSettings(directory=Path(store_dir), sync_policy="never"),
    )


test_settings.__test__ = False  # type: ignore[attr-defined]


def child_settings(broker_endpoint: str, store_dir: Path | str, **link_overrides: Any) -> ProactorSettings:
    """Settings of :class:`DummyChild`: upstream link ``parent``."""
    return test_settings(CHILD_LONG_NAME, CHILD_SHORT_NAME, broker_endpoint, store_dir,
                         {"parent": (PARENT_LONG_NAME, PARENT_SHORT_NAME, True)}, link_overrides)


def parent_settings(broker_endpoint: str, store_dir: Path | str, **link_overrides: Any) -> ProactorSettings:
    """Settings of :class:`DummyParent`: link ``child``."""
    return test_settings(PARENT_LONG_NAME, PARENT_SHORT_NAME, broker_endpoint, store_dir,
                         {"child": (CHILD_LONG_NAME, CHILD_SHORT_NAME, False)}, link_overrides)


def scada2_settings(broker_endpoint: str, store_dir: Path | str, **link_overrides: Any) -> ProactorSettings:
    """Settings of :class:`DummyScada2`: upstream link ``scada1``."""
    return test_settings(SCADA2_LONG_NAME, SCADA2_SHORT_NAME, broker_endpoint, store_dir,
                         {"scada1": (SCADA1_LONG_NAME, SCADA1_SHORT_NAME, True)}, link_overrides)


def scada1_settings(broker_endpoint: str, store_dir: Path | str, **link_overrides: Any) -> ProactorSettings:
    """Settings of :class:`DummyScada1`: upstream link ``atn``, link ``scada2``."""
    return test_settings(SCADA1_LONG_NAME, SCADA1_SHORT_NAME, broker_endpoint, store_dir,
                         {"atn": (ATN_LONG_NAME, ATN_SHORT_NAME, True),
                          "scada2": (SCADA2_LONG_NAME, SCADA2_SHORT_NAME, False)}, link_overrides)


def atn_settings(broker_endpoint: str, store_dir: Path | str, **link_overrides: Any) -> ProactorSettings:
    """Settings of :class:`DummyAtn`: link ``scada1``."""
    return test_settings(ATN_LONG_NAME, ATN_SHORT_NAME, broker_endpoint, store_dir,
                         {"scada1": (SCADA1_LONG_NAME, SCADA1_SHORT_NAME, False)}, link_overrides)
