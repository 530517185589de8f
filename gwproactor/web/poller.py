"""A REST poller actor: GET a URL on an interval (treq), convert the body, send the result to an actor.

treq is optional (the ``rest`` extra) and imported only when a poller starts; without it the poller's start
raises an :class:`ImportError` that names the extra.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from gwproactor.actors.base import Actor
from gwproactor.errors import ConfigError, ConvertError, HTTPStatusError  # noqa: F401 (re-exported)
from gwproactor.ops.backoff import Backoff
from gwproactor.ops.problems import RateLimiter, describe
from gwproactor.ops.tlsstack import tls_stack_left_out

#: What to install when treq is missing.
MISSING_EXTRA = "RestPoller needs treq: pip install 'gwproactor[rest]'"

#: Outcomes of one :meth:`RestPoller.poll` (the value its Deferred fires with).
SENT = "sent"
EMPTY = "empty"
FAILED = "failed"
TIMEOUT = "timeout"
SKIPPED = "skipped"
STOPPED = "stopped"


class RestPoller(Actor):
    """Polls ``url`` every ``interval_s`` and sends ``convert(body, response)`` to the actor ``dst``.

    Each poll is a GET bounded by ``timeout_s`` (the whole request and body
    read, cancelled when late).  ``convert`` returns a payload, or None to send
    nothing.  Connection errors, timeouts, non-2xx answers and ``convert``
    errors are counted, logged and reported with ``proactor.report_problem``
    (at most ``max_reports`` per kind per ``report_period_s``), and the next
    poll is put off: ``min(backoff_cap_s, interval_s * 2 ** (k - 1))`` after
    the k-th consecutive failure.  A success resets the backoff.

    :param http_client: a treq-like object whose ``get(url)`` returns a
        Deferred response (:class:`treq.testing.StubTreq`, the :mod:`treq`
        module, a :class:`treq.client.HTTPClient`); default: an ``HTTPClient``
        on ``reactor`` without persistent connections.  Bodies are read with
        :func:`treq.content`.
    :param reactor: the reactor of the default client (default: the proactor's reactor at start).
    :param clock: schedules polls and timeouts (default: ``reactor``).
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        dst: str,
        convert: Callable[[bytes, Any], Any],
        interval_s: float = 60.0,
        timeout_s: float = 10.0,
        backoff_cap_s: float = 600.0,
        http_client: Any = None,
        reactor: Any = None,
        clock: Any = None,
        max_reports: int = 1,
        report_period_s: float = 300.0,
    ) -> None:
        super().__init__(name)
        if not interval_s > 0 or not timeout_s > 0:
            raise ValueError("interval_s and timeout_s must be > 0")
        if http_client is None and url.lower().startswith("https:") and tls_stack_left_out():
            # Said at start, not at the first poll (which may be hours away).
            raise ConfigError(
                f"REST poller {name!r} polls {url} over HTTPS, but the TLS stack was left out of this process "
                "(no broker uses TLS); run with `gwproactor run --tls-stack always`"
            )
        self.url = url
        self.dst = dst
        self.convert = convert
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.backoff_cap_s = max(backoff_cap_s, interval_s)
        self.http_client = http_client
        self.reactor = reactor
        self.clock = clock
        self.max_reports = max_reports
        self.report_period_s = report_period_s
        self.limiter: RateLimiter | None = None
        self.polls = 0
        self.successes = 0
        self.failures = 0
        self.timeouts = 0
        self.consecutive_failures = 0
        self.sent = 0
        self.empty = 0
        self.last_error: str | None = None
        self.next_delay_s = interval_s
        self._call: Any = None
        self._in_flight: Deferred | None = None
        self._in_flight_why: list[str] = []

    # --- lifecycle -------------------------------------------------------------

    def _clock(self) -> Any:
        if self.clock is None:
            if self.reactor is None:
                self.reactor = self._require_proactor().reactor
            self.clock = self.reactor
        return self.clock

    def startService(self) -> None:
        """Start polling: the first poll runs on the next reactor turn."""
        super().startService()
        clock = self._clock()
        if self.limiter is None:
            self.limiter = RateLimiter(clock, self.max_reports, self.report_period_s)
        if self.http_client is None:
            self.http_client = _default_client(self.reactor or clock)
        self._schedule(0)

    def stopService(self) -> None:
        """Stop polling and cancel a poll in flight."""
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._in_flight is not None:
            _cancel(self._in_flight, self._in_flight_why, "stopped")

    def _schedule(self, delay: float) -> None:
        if self.running:
            self._call = self._clock().callLater(delay, self._scheduled_poll)

    def _scheduled_poll(self) -> None:
        self._call = None
        self.poll().addCallback(self._after_poll)

    def _after_poll(self, outcome: str) -> None:
        # After "skipped" (a manual poll was in flight) the loop carries on at the current delay.
        if self.running and self._call is None:
            self._schedule(self.next_delay_s)

    # --- one poll --------------------------------------------------------------

    def poll(self) -> Deferred:
        """Poll once now; the Deferred fires with the outcome (never fails).

        Outcomes: ``"sent"``, ``"empty"`` (convert returned None), ``"failed"``,
        ``"timeout"``, ``"skipped"`` (a poll was in flight), ``"stopped"``
        (cancelled by :meth:`stopService`).
        """
        if self._in_flight is not None:
            d: Deferred = Deferred()
            d.callback(SKIPPED)
            return d
        if self.http_client is None:
            self.http_client = _default_client(self.reactor or self._clock())
        self.polls += 1
        why: list[str] = []  # "timeout" or "stopped" once this poll is cancelled
        fetch = Deferred.fromCoroutine(self._fetch())
        self._in_flight = fetch
        self._in_flight_why = why
        timer = self._clock().callLater(self.timeout_s, _cancel, fetch, why, "timeout")

        def done(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        fetch.addBoth(done)
        fetch.addCallbacks(self._succeeded, self._failed, errbackArgs=(why,))
        return fetch

    async def _fetch(self) -> tuple[bytes, Any]:
        treq = _import_treq()

        response = await self.http_client.get(self.url)
        body = await treq.content(response)
        code = response.code
        if not 200 <= code < 300:
            raise HTTPStatusError(code, self.url)
        return body, response

    def _succeeded(self, result: tuple[bytes, Any]) -> str:
        self._in_flight = None
        body, response = result
        try:
            payload = self.convert(body, response)
        except Exception as e:
            return self._failed(Failure(ConvertError(f"convert failed on the body of {self.url}: {describe(e)}")))
        self.successes += 1
        if self.consecutive_failures:
            self.log.info(
                "poller {actor} recovered after {n} failures", actor=self.name, n=self.consecutive_failures
            )
        self.consecutive_failures = 0
        self.next_delay_s = self.interval_s
        if payload is None:
            self.empty += 1
            return EMPTY
        try:
            self.send_to(self.dst, payload)
        except Exception as e:
            self.log.failure("poller {actor} could not send to {dst}", actor=self.name, dst=self.dst)
            self.last_error = describe(e)
            return FAILED
        self.sent += 1
        return SENT

    def _failed(self, failure: Failure, why: list[str] | None = None) -> str:
        self._in_flight = None
        if why and why[0] == "stopped":
            return STOPPED
        timed_out = bool(why)
        if timed_out:
            self.timeouts += 1
            kind = "timeout"
            text = f"GET {self.url} timed out after {self.timeout_s:g} s"
        else:
            kind = type(failure.value).__name__
            text = describe(failure)
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = text
        backoff = Backoff(initial=self.interval_s, factor=2.0, cap=max(self.backoff_cap_s, self.interval_s))
        self.next_delay_s = backoff.ceiling(self.consecutive_failures - 1)  # no jitter: one poller, one URL
        self.log.warn(
            "poller {actor} failed ({n} in a row), next poll in {delay} s: {error}",
            actor=self.name,
            n=self.consecutive_failures,
            delay=self.next_delay_s,
            error=text,
        )
        self._report(kind, text)
        return TIMEOUT if timed_out else FAILED

    def _report(self, kind: str, text: str) -> None:
        limiter = self.limiter
        if limiter is None:
            limiter = self.limiter = RateLimiter(self._clock(), self.max_reports, self.report_period_s)
        if not limiter.allow(kind):
            return
        suppressed = limiter.take_suppressed(kind)
        details = f"{text}; {self.consecutive_failures} consecutive failures"
        if suppressed:
            details += f"; {suppressed} similar reports suppressed"
        report = getattr(self.proactor, "report_problem", None)
        if report is None:
            return
        try:
            d = report("warning", f"poller {self.name} failed", details)
        except Exception:
            self.log.failure("poller {actor} could not report a problem", actor=self.name)
            return
        if isinstance(d, Deferred):
            d.addErrback(lambda f: self.log.failure("poller {actor} problem report failed", f, actor=self.name))

    def stats(self) -> dict[str, Any]:
        """JSON-ready counters of this poller."""
        return {
            "url": self.url,
            "polls": self.polls,
            "successes": self.successes,
            "failures": self.failures,
            "timeouts": self.timeouts,
            "consecutive_failures": self.consecutive_failures,
            "sent": self.sent,
            "empty": self.empty,
            "last_error": self.last_error,
            "next_delay_s": self.next_delay_s,
        }


def _cancel(fetch: Deferred, why: list[str], reason: str) -> None:
    if not fetch.called and not why:
        why.append(reason)
        fetch.cancel()


def _default_client(reactor: Any) -> Any:
    """A treq ``HTTPClient`` on ``reactor`` that opens a new connection per request."""
    _import_treq()
    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool

    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


def _import_treq() -> Any:
    try:
        import treq
    except ImportError as e:
        raise ImportError(MISSING_EXTRA) from e
    return treq
