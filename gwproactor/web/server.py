"""HTTP endpoints of a proactor on twisted.web: ``GET /health``, ``GET /stats``, ``POST /events``, ``GET /metrics``
and the status page (``GET /``, ``GET /status``, ``GET /status.json``)."""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Iterable

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.iweb import IAccessLogFormatter
from twisted.web.resource import Resource
from zope.interface import provider

from gwproactor.errors import DecodeError, EncodeError, StoreClosed, StoreFull
from gwproactor.web._body import MAX_JSON_DEPTH, REASONS, BodyRefused, read_json
from gwproactor.web._http import (
    MAX_BODY_BYTES,
    MAX_CONNECTIONS,
    REQUEST_DEADLINE_S,
    JSONSite,
)
from gwproactor.web._http import json_reply as _reply
from gwproactor.web.metrics import MetricsResource, ProactorCollector
from gwproactor.web.status import status_page, status_view

_log = Logger(namespace="gwproactor.web")


class _JSONResource(Resource):
    """A leaf resource answering unsupported methods with a JSON 405."""

    isLeaf = True

    def render(self, request: Any) -> Any:
        method = request.method.decode("ascii", "replace")
        allowed = sorted(name[len("render_") :] for name in dir(self) if name.startswith("render_"))
        if "GET" not in allowed and "HEAD" in allowed:
            allowed.remove("HEAD")  # Resource's default HEAD only serves a GET
        if method not in allowed:
            request.setHeader(b"allow", ", ".join(allowed).encode("ascii"))
            return _reply(request, 405, {"error": f"method {method} not allowed; use {', '.join(allowed)}"})
        return super().render(request)


class _Root(Resource):
    """The root: known children, JSON 404 for anything else."""

    def getChild(self, path: bytes, request: Any) -> Resource:
        return _NotFound()


class _NotFound(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        return _reply(
            request,
            404,
            {
                "error": "not found; endpoints: GET /health, GET /stats, POST /events, GET /metrics, "
                "GET /status, GET /status.json"
            },
        )


class HealthResource(_JSONResource):
    """``GET /health``: 200 when healthy, else 503; JSON body with the link states."""

    def __init__(self, proactor: Any, required_links: Iterable[str] | None = None) -> None:
        super().__init__()
        self.proactor = proactor
        self.required_links = None if required_links is None else list(required_links)

    def check(self) -> tuple[bool, dict[str, Any]]:
        """The health verdict and the JSON body."""
        if self.required_links is None:
            ok, detail = self.proactor.health()
            return bool(ok), {"ok": bool(ok), **detail}
        states = self.proactor.link_states()
        ok = all(states.get(name) == "active" for name in self.required_links)
        return ok, {"ok": ok, "links": states, "required_links": self.required_links}

    def render_GET(self, request: Any) -> bytes:
        try:
            ok, body = self.check()
        except Exception as e:
            _log.failure("health check failed")
            return _reply(request, 500, {"ok": False, "error": f"health check failed: {e}"})
        return _reply(request, 200 if ok else 503, body)


class StatsResource(_JSONResource):
    """``GET /stats``: the JSON of ``proactor.stats()`` plus ``http``, the counters of the HTTP server."""

    def __init__(self, proactor: Any, http_stats: Callable[[], dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.proactor = proactor
        self.http_stats = http_stats

    def render_GET(self, request: Any) -> bytes:
        try:
            body = dict(self.proactor.stats())
            if self.http_stats is not None:
                body["http"] = self.http_stats()
            return _reply(request, 200, body)
        except Exception as e:
            _log.failure("stats failed")
            return _reply(request, 500, {"error": f"stats failed: {e}"})


class MetricsEndpoint(_JSONResource):
    """``GET /metrics``: Prometheus exposition of the proactor's stats (see :mod:`gwproactor.web.metrics`)."""

    def __init__(self, collector: ProactorCollector) -> None:
        super().__init__()
        self.metrics = MetricsResource(collector)

    def render_GET(self, request: Any) -> bytes:
        return self.metrics.render_metrics(request)


class StatusPageResource(_JSONResource):
    """``GET /`` and ``GET /status``: the self-updating HTML status page (see :mod:`gwproactor.web.status`)."""

    def __init__(self, proactor: Any) -> None:
        super().__init__()
        self.proactor = proactor

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        # The page loads nothing from elsewhere; the policy says so to the browser too.
        request.setHeader(
            b"content-security-policy",
            b"default-src 'none'; connect-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
        )
        return status_page(str(self.proactor.name))


class StatusJSONResource(_JSONResource):
    """``GET /status.json``: what the status page shows (:func:`~gwproactor.web.status.status_view`)."""

    def __init__(self, proactor: Any) -> None:
        super().__init__()
        self.proactor = proactor

    def render_GET(self, request: Any) -> bytes:
        try:
            return _reply(request, 200, status_view(self.proactor))
        except Exception as e:
            _log.failure("status failed")
            return _reply(request, 500, {"error": f"status failed: {e}"})


class EventsResource(_JSONResource):
    """``POST /events``: insert one event (a JSON object) through ``proactor.generate_event``.

    The body is one payload object with a ``TypeName`` that decodes (with the
    proactor's codec) to an event class: any ``gridworks.event.*`` name or a
    registered application event.  Missing ``Src`` defaults to the proactor's
    name, missing ``MessageId`` to a new uuid4, missing ``TimeCreatedMs`` to now
    (``wall()``, :func:`time.time` by default: a timestamp, never the reactor's
    monotonic ``seconds()``).

    Everything that can be refused is refused before the event reaches the
    store: the body is read strictly (:func:`~gwproactor.web._body.read_json`:
    at most ``max_depth`` levels of nesting, integers within 64 bits, no
    ``NaN``/``Infinity``), decoded with the codec, and encoded with the codec
    exactly as the store path encodes it (``codec.encode_payload``), so an
    event the store's encoder would refuse never gets as far as ``generate_event``.

    Replies: 200 ``{"MessageId": ...}`` once the event is durable; 400 for a
    body that is not UTF-8 JSON; 413 for a body over the limit; 422
    ``{"error": ...}`` for JSON that is not an acceptable event (the reason is
    counted under ``rejected``); 503 when the store rejects the event (full or
    closed); 500 for anything else.
    """

    def __init__(self, proactor: Any, wall: Callable[[], float] = time.time, max_depth: int = MAX_JSON_DEPTH) -> None:
        super().__init__()
        self.proactor = proactor
        self.wall = wall
        self.max_depth = max_depth
        self.accepted = 0
        self.rejected = dict.fromkeys(REASONS, 0)
        self.unavailable = 0
        self.failed = 0
        self.too_large = 0
        self.disconnected = 0

    def stats(self) -> dict[str, Any]:
        """Counters of the endpoint (``rejected`` by reason)."""
        return {
            "accepted": self.accepted,
            "rejected": dict(self.rejected),
            "too_large": self.too_large,
            "unavailable": self.unavailable,
            "failed": self.failed,
            "disconnected": self.disconnected,
        }

    def _refuse(self, request: Any, refused: BodyRefused) -> bytes:
        self.rejected[refused.reason] += 1
        return _reply(request, refused.status, {"error": str(refused)})

    def decode(self, body: bytes) -> Any:
        """The event in ``body``, checked as the store will encode it; raises :class:`BodyRefused`."""
        from gwproactor.message import Event

        obj = read_json(body, self.max_depth)
        if type(obj) is not dict:
            kind = "array" if isinstance(obj, list) else type(obj).__name__ if obj is not None else "null"
            raise BodyRefused("not_an_object", f"body must be a JSON object (an event), got {kind}")
        obj.setdefault("Src", self.proactor.name)
        obj.setdefault("MessageId", str(uuid.uuid4()))
        if "TimeCreatedMs" not in obj:
            obj["TimeCreatedMs"] = int(self.wall() * 1000)
        codec = self.proactor.codec
        try:
            payload = codec.payload_from_dict(obj)
        except DecodeError as e:
            raise BodyRefused("invalid_event", str(e)) from e
        if not isinstance(payload, Event):
            raise BodyRefused("invalid_event", f"Payload.TypeName: {obj.get('TypeName')!r} is not an event type")
        try:  # what the store path does with it (Proactor._store_event)
            codec.encode_payload(payload)
        except (EncodeError, DecodeError, TypeError, ValueError) as e:
            raise BodyRefused("unencodable", f"event cannot be stored: {e}") from e
        return payload

    def render_POST(self, request: Any) -> Any:
        if getattr(request, "body_too_large", False):
            self.too_large += 1
            limit = getattr(request.channel.site, "max_body_bytes", MAX_BODY_BYTES)
            return _reply(request, 413, {"error": f"body larger than {limit} bytes"})
        body = request.content.read() if request.content is not None else b""
        try:
            event = self.decode(body)
        except BodyRefused as e:
            return self._refuse(request, e)
        except RecursionError:  # unreachable with read_json's depth bound; never let it out
            return self._refuse(request, BodyRefused("too_deep", "body nests arrays/objects too deeply"))
        gone: list[bool] = []
        request.notifyFinish().addErrback(self._client_gone, gone)
        d = maybeDeferred(self.proactor.generate_event, event)
        d.addCallbacks(
            self._stored, self._store_failed, callbackArgs=(request, event, gone), errbackArgs=(request, gone)
        )
        d.addErrback(lambda f: _log.failure("replying to POST /events failed", f))
        return server.NOT_DONE_YET

    def _client_gone(self, _: Failure, gone: list) -> None:
        """The client disconnected before the reply; the event is still stored (it is not cancelled)."""
        gone.append(True)
        self.disconnected += 1

    def _finish(self, request: Any, gone: list, code: int, obj: Any) -> None:
        if gone:
            return
        body = _reply(request, code, obj)
        request.setHeader(b"content-length", b"%d" % len(body))
        request.write(body)
        request.finish()

    def _stored(self, _: Any, request: Any, event: Any, gone: list) -> None:
        self.accepted += 1
        self._finish(request, gone, 200, {"MessageId": event.message_id})

    def _store_failed(self, failure: Failure, request: Any, gone: list) -> None:
        if failure.check(StoreFull, StoreClosed):
            self.unavailable += 1
            self._finish(request, gone, 503, {"error": f"event store unavailable: {failure.getErrorMessage()}"})
            return
        if failure.check(EncodeError, DecodeError):  # the input, not the server: retrying cannot help
            self.rejected["unencodable"] += 1
            self._finish(request, gone, 422, {"error": f"event cannot be stored: {failure.getErrorMessage()}"})
            return
        self.failed += 1
        _log.failure("generate_event failed for POST /events", failure)
        self._finish(request, gone, 500, {"error": f"event not stored: {failure.getErrorMessage()}"})


def _wall_clock_log_formatter(wall: Callable[[], float]) -> Callable[[str, Any], str]:
    """Twisted's combined access-log format, dated with ``wall()``.

    ``HTTPFactory`` dates its access-log lines from ``reactor.seconds()``, which is monotonic
    once the proactor has started (:mod:`gwproactor.ops.clock`): they would read 1970.
    """

    @provider(IAccessLogFormatter)
    def format_line(timestamp: str, request: Any) -> str:
        return http.combinedLogFormatter(http.datetimeToLogString(wall()), request)

    return format_line


def make_site(
    proactor: Any,
    *,
    required_links: Iterable[str] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    request_deadline_s: float = REQUEST_DEADLINE_S,
    max_connections: int = MAX_CONNECTIONS,
    max_json_depth: int = MAX_JSON_DEPTH,
    wall: Callable[[], float] = time.time,
    reactor: Any = None,
    lag: Any = None,
) -> JSONSite:
    """A :class:`~twisted.web.server.Site` serving ``/health``, ``/stats``, ``/events``, ``/metrics`` and the
    status page (``/``, ``/status``, ``/status.json``) for ``proactor``.

    :param required_links: when given, ``/health`` is ok only when each of these
        links is ``"active"`` (from ``proactor.link_states()``); otherwise
        ``proactor.health()`` decides.
    :param max_body_bytes: bound of a ``POST /events`` body.
    :param request_deadline_s: time for each request's headers and body to arrive (from the connection's
        start or the end of the previous answer); past it the connection is closed.
    :param max_connections: bound of open connections; more are closed as soon as they are accepted.
    :param max_json_depth: bound of the nesting of arrays and objects in a ``POST /events`` body.
    :param wall: the wall clock of defaulted ``TimeCreatedMs`` and of the access log's dates
        (default :func:`time.time`).
    :param reactor: runs the HTTP timeouts (default: the global reactor).
    :param lag: a :class:`~gwproactor.ops.lag.ReactorLag` (or a callable returning one or ``None``) whose
        figures ``/metrics`` exposes; without it no reactor-lag metrics are exposed.
    """
    root = _Root()
    root.putChild(b"health", HealthResource(proactor, required_links))
    events = EventsResource(proactor, wall, max_json_depth)
    root.putChild(b"events", events)
    site = JSONSite(
        root,
        max_connections=max_connections,
        request_deadline_s=request_deadline_s,
        max_body_bytes=max_body_bytes,
        logFormatter=_wall_clock_log_formatter(wall),
        reactor=reactor,
    )
    root.putChild(b"stats", StatsResource(proactor, site.stats))
    root.putChild(b"metrics", MetricsEndpoint(ProactorCollector(proactor, lag=lag, http_stats=site.stats)))
    page = StatusPageResource(proactor)
    root.putChild(b"", page)
    root.putChild(b"status", page)
    root.putChild(b"status.json", StatusJSONResource(proactor))
    site.events = events
    site.displayTracebacks = False
    site.noisy = False
    return site


def _site_options(settings: Any) -> dict[str, Any]:
    """The :func:`make_site` keyword arguments an :class:`~gwproactor.config.HTTPSettings` sets."""
    return {
        "max_body_bytes": settings.max_body_bytes,
        "request_deadline_s": settings.request_deadline_s,
        "max_connections": settings.max_connections,
    }


def _measured_lag(proactor: Any) -> Any:
    """The reactor-lag monitor of the proactor's systemd watchdog, when it measures (else ``None``)."""
    monitor = getattr(getattr(proactor, "systemd", None), "monitor", None)
    if monitor is None or not (getattr(monitor, "running", False) or getattr(monitor, "samples", 0)):
        return None
    return monitor


class _ReportingEndpoint:
    """Wraps the server endpoint of a :class:`WebService` to tell it the port bound (or why not)."""

    def __init__(self, endpoint: Any, service: WebService) -> None:
        self._endpoint = endpoint
        self._service = service

    def listen(self, factory: Any) -> Deferred:
        """Listen with the wrapped endpoint; the service hears the outcome before anyone else."""
        return self._endpoint.listen(factory).addCallbacks(self._service._listened, self._service._listen_failed)


class WebService(StreamServerEndpointService):
    """Serves :func:`make_site` on a server endpoint (a string like ``"tcp:8080:interface=127.0.0.1"``).

    A :class:`~twisted.application.internet.StreamServerEndpointService`: it listens when it starts
    (``privilegedStartService`` under ``twistd``), and ``stopService`` stops listening (or cancels the
    attempt) and fires once the port is closed.  An endpoint string is parsed when the service starts.
    A listen failure is logged; the service keeps running without a port.

    The limits of the site (``max_body_bytes``, ``request_deadline_s``, ``max_connections``) are taken
    from ``proactor.settings.http`` when the proactor has settings, unless given in ``site_kwargs``.
    Unless ``lag`` is given, ``/metrics`` exposes the reactor lag measured by the proactor's systemd
    watchdog (``proactor.systemd.monitor``) while it runs.
    :attr:`port` is the listening port once :meth:`when_listening` has fired.
    """

    log = Logger(namespace="gwproactor.web")

    def __init__(
        self,
        proactor: Any,
        endpoint: Any = "tcp:8080:interface=127.0.0.1",
        *,
        reactor: Any = None,
        name: str = "web",
        **site_kwargs: Any,
    ) -> None:
        from gwproactor.config import HTTPSettings

        self.name = name
        self.proactor = proactor
        self.description = endpoint if isinstance(endpoint, str) else repr(endpoint)
        self.reactor = reactor if reactor is not None else proactor.reactor
        settings = getattr(getattr(proactor, "settings", None), "http", None)
        if isinstance(settings, HTTPSettings):
            for key, value in _site_options(settings).items():
                site_kwargs.setdefault(key, value)
        site_kwargs.setdefault("reactor", self.reactor)
        site_kwargs.setdefault("lag", lambda: _measured_lag(proactor))
        self.site = make_site(proactor, **site_kwargs)
        super().__init__(endpoint, self.site)
        self.port: Any = None
        self._waiters: list[Deferred] = []

    def privilegedStartService(self) -> None:
        """Start listening (parsing an endpoint string first)."""
        from twisted.internet.endpoints import serverFromString

        endpoint = self.endpoint
        if isinstance(endpoint, str):
            endpoint = serverFromString(self.reactor, endpoint)
        self.endpoint = _ReportingEndpoint(endpoint, self)
        try:
            super().privilegedStartService()
        finally:
            self.endpoint = endpoint

    def _listened(self, port: Any) -> Any:
        self.port = port
        self.log.info("HTTP endpoints listening on {address}", address=str(port.getHost()))
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(port)
        return port

    def _listen_failed(self, failure: Failure) -> Any:
        if failure.check(CancelledError):
            return failure  # stopped before it listened: StreamServerEndpointService expects it
        self.log.failure("HTTP endpoints could not listen on {endpoint}", failure, endpoint=self.description)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.errback(failure)
        return None

    def when_listening(self) -> Deferred:
        """A Deferred that fires with the listening port (at once if listening)."""
        if self.port is not None:
            d: Deferred = Deferred()
            d.callback(self.port)
            return d
        d = Deferred()
        self._waiters.append(d)
        return d

    def stopService(self) -> Deferred | None:
        """Stop listening (or cancel the attempt); the Deferred fires once the port is closed."""
        self.port = None
        if self._waitingForPort is None:  # never started
            Service.stopService(self)
            return None
        d = super().stopService()
        self._waitingForPort = None  # it may start again
        return d
