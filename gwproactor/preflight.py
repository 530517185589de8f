"""Checking a proactor's settings completely before anything starts, and showing them with secrets masked.

:func:`check_settings` is what ``gwproactor run``, ``twist gwproactor`` and ``gwproactor check`` run before
they build anything: broker endpoint strings parsed (without connecting), every certificate, key and trust
directory they name readable (in ``tls:``/``ssl:`` strings and in the ``TLS__*`` fields), at most one upstream
link, and the event store directory usable.  Each problem is one line that names the environment variable
(``GWP_BROKERS__DEFAULT__ENDPOINT``) and says what to do.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import attrs

from gwproactor.config import _SECRET, AppPaths, ProactorSettings, TLSSettings
from gwproactor.mqtt.endpoints import _file_problem, endpoint_problems

__all__ = ["SettingsReport", "check_settings", "no_links_warning", "setting_name", "settings_lines",
           "store_lock_holder"]


@attrs.frozen
class SettingsReport:
    """What :func:`check_settings` found: ``errors`` stop the process from starting, ``warnings`` do not."""

    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when there is no error."""
        return not self.errors


def setting_name(prefix: str, *path: str) -> str:
    """The environment variable of a setting: ``setting_name("GWP", "brokers", "default", "endpoint")`` is
    ``GWP_BROKERS__DEFAULT__ENDPOINT``."""
    return f"{prefix.strip().upper().rstrip('_')}_" + "__".join(part.upper() for part in path)


def no_links_warning(long_name: str, prefix: str = "<PREFIX>") -> str:
    """The warning for a proactor configured without links."""
    return (f"{long_name} has no links: it will neither send nor receive anything over MQTT; configure one with "
            f"{setting_name(prefix, 'links', '<name>', 'peer_long_name')} and "
            f"{setting_name(prefix, 'links', '<name>', 'peer_short_name')}")


def check_settings(settings: ProactorSettings, *, prefix: str = "GWP", reactor: Any = None,
                   env: Mapping[str, str] | None = None) -> SettingsReport:
    """Check ``settings`` as far as possible without starting anything; see the module documentation.

    :param prefix: the environment variable prefix the problems name.
    :param reactor: what the broker endpoints are built for (only stored, never run; default: the global
        reactor).  Building one reads its certificate files, so do it before the reactor runs.
    :param env: the environment the default directories came from (default :data:`os.environ`).
    """
    errors: list[str] = []
    warnings: list[str] = []
    for name, broker in settings.brokers.items():
        if broker.endpoint:
            var = setting_name(prefix, "brokers", name, "endpoint")
            errors += [f"{var}={broker.endpoint!r}: {p}" for p in endpoint_problems(broker.endpoint, reactor)]
            if broker.tls is not None:
                warnings.append(f"{setting_name(prefix, 'brokers', name, 'tls')}: ignored because {var} is set "
                                "(give the certificates in the endpoint string: tls:...:trustRoots=...)")
        elif broker.tls is not None:
            errors += _tls_field_problems(prefix, name, broker.tls)
    upstream = sorted(name for name, link in settings.links.items() if link.upstream)
    if len(upstream) > 1:
        names = ", ".join(setting_name(prefix, "links", name, "upstream") for name in upstream)
        errors.append(f"{names}: at most one link may be upstream (the one this proactor's events go to); "
                      "set UPSTREAM=true on one of them only")
    if not settings.links:
        warnings.append(no_links_warning(settings.long_name, prefix))
    store = settings.resolve_paths().store
    assert store.directory is not None
    var = setting_name(prefix, "store", "directory")
    problem = _directory_problem(Path(store.directory))
    if problem:
        errors.append(f"{var}={str(store.directory)!r}: {problem}; fix it or set {var} to a directory this user "
                      "may write")
    warning = _legacy_store_warning(settings, Path(store.directory), var, env)
    if warning:
        warnings.append(warning)
    return SettingsReport(errors=tuple(errors), warnings=tuple(warnings))


def _tls_field_problems(prefix: str, broker: str, tls: TLSSettings) -> list[str]:
    from twisted.internet import ssl

    problems = []
    contents: dict[str, bytes] = {}
    for field, what in (("ca_file", "CA certificate"), ("cert_file", "client certificate"),
                        ("key_file", "private key")):
        path = getattr(tls, field)
        if path is None:
            continue
        var = setting_name(prefix, "brokers", broker, "tls", field)
        problem = _file_problem(str(path), what)
        if problem:
            problems.append(f"{var}={str(path)!r}: {problem}")
            continue
        contents[field] = Path(path).read_bytes()
    try:
        if "ca_file" in contents:
            ssl.Certificate.loadPEM(contents["ca_file"])
    except Exception as e:
        var = setting_name(prefix, "brokers", broker, "tls", "ca_file")
        problems.append(f"{var}={str(tls.ca_file)!r}: not a PEM certificate ({_one_line(e)}); give the CA's "
                        "certificate file (-----BEGIN CERTIFICATE-----)")
    if "cert_file" in contents:
        pem = contents["cert_file"] + b"\n" + contents.get("key_file", b"")
        try:
            ssl.PrivateCertificate.loadPEM(pem)
        except Exception as e:
            var = setting_name(prefix, "brokers", broker, "tls", "cert_file")
            problems.append(f"{var}={str(tls.cert_file)!r}: no usable client certificate and private key "
                            f"({_one_line(e)}); give the PEM certificate, and its key in it or in "
                            f"{setting_name(prefix, 'brokers', broker, 'tls', 'key_file')}")
    return problems


def _directory_problem(directory: Path) -> str | None:
    """Why ``directory`` cannot hold the event store (None when it exists or can be created, and is writable)."""
    if os.path.lexists(directory):
        if not directory.is_dir():
            return "is a file, not a directory"
        if not os.access(directory, os.R_OK | os.W_OK | os.X_OK):
            return f"is not writable by this user (uid {os.getuid()})"
        return None
    parent = directory.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be created: {str(parent)!r} is a file, not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be created: {str(parent)!r} is not writable by this user (uid {os.getuid()})"
    return None


def _legacy_store_warning(settings: ProactorSettings, directory: Path, var: str,
                          env: Mapping[str, str] | None) -> str | None:
    """A store left at the shared default of earlier versions (``<state>/<app>/event-store``), when the
    settings now use the per-proactor default."""
    try:
        ours = AppPaths.for_app(settings.app_name, env, proactor_name=settings.long_name).event_store_dir
        old = AppPaths.for_app(settings.app_name, env).event_store_dir
    except Exception:
        return None
    if directory != ours or not old.is_dir():
        return None
    try:
        if not any(name.startswith("seg-") for name in os.listdir(old)):
            return None
    except OSError:
        return None
    return (f"{var} is not set, so the event store is {str(ours)!r}; an event store of an earlier version is at "
            f"{str(old)!r} and its pending events are not sent from the new place: move it there "
            f"(mv {old} {ours}) while the application is stopped, or set {var}={old}")


def store_lock_holder(directory: Path | str) -> int | None:
    """The pid of the process that holds the store's ``LOCK`` now (from ``/proc/locks``; None when free,
    absent or unknown).  Takes no lock itself, so it never gets in the way of a store that is opening."""
    try:
        st = os.stat(os.path.join(directory, "LOCK"))
        device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
            continue
        if fields[5] == device and fields[4].isdigit():
            return int(fields[4])
    return None


# --- showing settings ------------------------------------------------------------------------


def settings_lines(settings: Any, prefix: str = "GWP") -> list[str]:
    """The settings as ``.env`` lines (``GWP_BROKERS__DEFAULT__PORT=1883``), secrets as ``***``.

    Empty groups (no links) are ``#`` comments; everything else loads back with
    :func:`~gwproactor.config.load_settings` to the same settings (but for the masked secrets).
    """
    lines: list[str] = []
    _walk(settings, (), prefix, lines)
    return lines


def _walk(value: Any, path: tuple[str, ...], prefix: str, lines: list[str]) -> None:
    if attrs.has(type(value)):
        hints = typing.get_type_hints(type(value))
        for field in attrs.fields(type(value)):
            if not field.init:
                continue
            item = getattr(value, field.name)
            where = path + (field.alias,)
            if field.metadata.get(_SECRET) and item is not None:
                lines.append(f"{setting_name(prefix, *where)}=***")
            elif item is None and _optional_group(hints.get(field.name)):
                lines.append(f"{setting_name(prefix, *where)}=false")
            else:
                _walk(item, where, prefix, lines)
    elif isinstance(value, Mapping):
        if not value:
            lines.append(f"# {setting_name(prefix, *path)}: none")
        for key, item in value.items():
            _walk(item, path + (str(key),), prefix, lines)
    else:
        lines.append(f"{setting_name(prefix, *path)}={_text(value)}")


def _optional_group(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType) and any(
        attrs.has(arg) for arg in typing.get_args(hint) if isinstance(arg, type)
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text == "" or any(c in text for c in " \t#'\"\\\n") or text != text.strip():
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    return text


def _one_line(e: BaseException) -> str:
    return " ".join((str(e) or type(e).__name__).split())
