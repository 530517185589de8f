"""The one exception tree of gwproactor.

Every exception the library raises on purpose derives from :class:`GwProactorError`, so
``except GwProactorError`` catches all of them and nothing else.  Messages say what was wrong and,
where there is one, what to do about it.

The policy:

* **Settings** that cannot be loaded or are invalid raise :class:`ConfigError` (the environment, a
  ``.env`` file, the settings classes' validation as the loader reports it).  A runner turns it into
  one line per problem and a non-zero exit, before anything starts.  The validators of the settings
  classes in :mod:`gwproactor.config` raise ``ValueError`` (the attrs convention): the loader
  (:func:`~gwproactor.config.load_settings`) catches each one and reports it, naming its variable, in
  one :class:`InvalidSettings`, so settings from the environment or a ``.env`` file always fail with a
  :class:`ConfigError`.  A settings object built in code with a bad value is a programming error and
  raises the validator's ``ValueError`` itself.
* **Runtime** errors (the wire, actors, MQTT, links, the event store, certificates, HTTP polling) derive
  from :class:`GwProactorError` through the base of their family: :class:`DecodeError`,
  :class:`MQTTError`, :class:`LinkError`, :class:`StoreError` ...  A Deferred that fails fails with one
  of these.
* **Programming errors** (an argument of the wrong type or value handed to the API) stay Python's own
  ``TypeError`` / ``ValueError``; where a caller may want to catch one, the class derives from both
  (``DuplicateTypeNameError`` is a ``ValueError``; ``UnknownActorError`` a ``KeyError``).
* Built-in exceptions are never used as internal signals between gwproactor's parts.

The tree (``(also X)`` names a built-in second base; ``tests/test_error_tree.py`` checks this list
against the classes)::

    GwProactorError
        ConfigError
            InvalidSettings
        DecodeError
            UnknownTypeError
            TopicError
            FrameTooLarge
        EncodeError
        RegistryError
            DuplicateTypeNameError (also ValueError)
        DuplicateActorError
        UnknownActorError (also KeyError)
        MQTTError
            InvalidTopic (also ValueError)
            NotConnectedError
            ConnectionRefusedByBroker
            PublishFailed
            SessionUnavailable
        LinkError
            UnknownLinkError (also KeyError)
            AckTimeout
            LinkDown
        StoreError
            StoreWriteError
            StoreLocked
            StoreFull
            StoreClosed
            EventNotFound (also KeyError)
            CorruptRecord
                StoreReadError
        CertsError
        HTTPStatusError
        ConvertError
"""

from __future__ import annotations

from collections.abc import Iterable


class GwProactorError(Exception):
    """Base class of every error gwproactor raises on purpose."""


# --- configuration ---------------------------------------------------------


class ConfigError(GwProactorError):
    """Settings could not be loaded: names the variable and the problem."""


class InvalidSettings(ConfigError):
    """One or more settings are invalid; :attr:`problems` lists each, naming its variable."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} settings problems:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


# --- messages and codec ----------------------------------------------------


class DecodeError(GwProactorError):
    """Bytes or a JSON object could not be decoded into a :class:`~gwproactor.message.Message`.

    The message names the problem (not JSON, not an object, a missing field, a
    wrong type, an unknown ``TypeName`` ...).
    """


class EncodeError(GwProactorError):
    """A message or payload could not be encoded."""


class UnknownTypeError(DecodeError):
    """A payload's ``TypeName`` is not registered (and is not a ``gridworks.event.*``)."""


class RegistryError(GwProactorError):
    """A class cannot be registered as a payload (not attrs, no ``TYPE_NAME`` ...)."""


class DuplicateTypeNameError(RegistryError, ValueError):
    """Another class is already registered under the same ``TypeName``."""


class TopicError(DecodeError):
    """An MQTT topic does not follow ``gw/<src>/to/<dst>/<type>`` or does not match the link."""


class FrameTooLarge(DecodeError):
    """A frame is larger than the link's ``max_frame_bytes`` (or would inflate past it): dropped undecoded."""


# --- actors and routing ----------------------------------------------------


class DuplicateActorError(GwProactorError):
    """An actor with the same name is already registered with the proactor."""


class UnknownActorError(GwProactorError, KeyError):
    """No actor is registered under that name."""


# --- MQTT ------------------------------------------------------------------


class MQTTError(GwProactorError):
    """Base class of MQTT connection errors."""


class InvalidTopic(MQTTError, ValueError):
    """A topic or topic filter is not valid MQTT (empty, misplaced wildcard, NUL ...)."""


class NotConnectedError(MQTTError):
    """Publish was attempted while the broker connection is not connected.

    Queueing while disconnected is the link layer's job (the event store and outbox).
    """


class ConnectionRefusedByBroker(MQTTError):
    """The broker answered CONNECT with a refusing CONNACK (bad credentials, not authorised ...)."""

    def __init__(self, reason_code: int, reason: str) -> None:
        super().__init__(f"broker refused the connection: {reason} (CONNACK code {reason_code})")
        self.reason_code = reason_code
        self.reason = reason


class PublishFailed(MQTTError):
    """A publish was lost because the connection went away before it completed."""


class SessionUnavailable(MQTTError):
    """One MQTT session (one broker connection) cannot take a command: it is closed, or paho refused it.

    Raised by the paho adapter and handled by the broker connection, which waits for its next connection
    (a subscription is re-sent after the next CONNACK) or fails a publish with :class:`NotConnectedError`;
    users of :class:`~gwproactor.mqtt.connection.BrokerConnection` do not see it.
    """


# --- links -----------------------------------------------------------------


class LinkError(GwProactorError):
    """Base class of link errors."""


class UnknownLinkError(LinkError, KeyError):
    """No link is configured under that name."""


class AckTimeout(LinkError):
    """No ``gridworks.ack`` arrived for an ack-required message within the ack timeout."""


class LinkDown(LinkError):
    """The link went down (or was stopped) while a message waited for its ack."""


# --- event store -----------------------------------------------------------


class StoreError(GwProactorError):
    """Base class of event store errors."""


class StoreWriteError(StoreError):
    """Writing or syncing a store file failed (disk full, I/O error, too many open files).

    The message names the file and the error; :attr:`errno` and :attr:`path` hold them (None when unknown).
    The event of a failed append is not stored: append it again once the condition clears.
    """

    def __init__(self, message: str, *, errno: int | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.path = path


class StoreLocked(StoreError):
    """Another open store (in this or another process) holds the directory's lock; close it first.

    :attr:`pid` is the process that holds it, as it wrote into the ``LOCK`` file (None if unknown).
    """

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class StoreFull(StoreError):
    """The store is at its size bound and its full policy is ``reject_new``."""


class StoreClosed(StoreError):
    """The store was used after :meth:`close`."""


class EventNotFound(StoreError, KeyError):
    """No pending event has that id."""


class CorruptRecord(StoreError):
    """A stored record failed its length or CRC check, or could not be decoded."""


class StoreReadError(CorruptRecord):
    """A stored record could not be read because of an OS error (EMFILE, EIO ...): it may well be intact.

    A :class:`CorruptRecord` for callers that predate it; a caller that can should try again later
    instead of setting the event aside.  :attr:`errno` holds the error number.
    """

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


# --- certificates ------------------------------------------------------------


class CertsError(GwProactorError):
    """A ``gwproactor certs`` command cannot do what it was asked (existing files, bad name or address).

    The command prints the message and exits with status 1.
    """


# --- HTTP ------------------------------------------------------------------


class HTTPStatusError(GwProactorError):
    """A polled URL answered with a status outside 2xx."""

    def __init__(self, code: int, url: str) -> None:
        super().__init__(f"GET {url} answered HTTP {code}")
        self.code = code


class ConvertError(GwProactorError):
    """A REST poller's ``convert`` callable raised on a response body."""
