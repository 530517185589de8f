"""Building a broker connection from :class:`~gwproactor.config.BrokerSettings`."""

from __future__ import annotations

from typing import Any

from gwproactor.config import BrokerSettings

__all__ = ["make_broker"]


def make_broker(name: str, settings: BrokerSettings, reactor: Any) -> Any:
    """Build a :class:`~gwproactor.mqtt.connection.BrokerConnection` from :class:`~gwproactor.config.BrokerSettings`."""
    from gwproactor.ops.backoff import Backoff
    from gwproactor.mqtt.connection import BrokerConnection, TLSOptions

    common: dict[str, Any] = dict(
        name=name,
        reactor=reactor,
        username=settings.username,
        password=settings.password,
        client_id=settings.client_id,
        keepalive=settings.keepalive_s,
        backoff=Backoff(initial=settings.backoff_initial_s, cap=settings.backoff_cap_s),
        connect_timeout=settings.connect_timeout_s,
    )
    if settings.endpoint:
        return BrokerConnection(endpoint=settings.endpoint, **common)
    tls = None
    if settings.tls is not None:
        t = settings.tls
        tls = TLSOptions(
            ca_file=str(t.ca_file) if t.ca_file else None,
            cert_file=str(t.cert_file) if t.cert_file else None,
            # A cert_file without key_file holds the key too (TLSSettings says so); TLSOptions wants both.
            key_file=str(t.key_file or t.cert_file) if t.cert_file else None,
            check_hostname=t.check_hostname,
        )
    return BrokerConnection(host=settings.host, port=settings.port, tls=tls, **common)
