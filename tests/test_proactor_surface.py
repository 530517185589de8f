"""The Proactor's declared extension surface (hooks and API), and construction without I/O."""

from __future__ import annotations

import inspect
import os
import socket
import warnings
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.application.service import MultiService
from twisted.internet.task import Clock
from zope.interface.verify import verifyClass, verifyObject

from gwproactor.config import BrokerSettings, HTTPSettings, LinkSettings, ProactorSettings, StoreSettings
from gwproactor.interfaces import ILinkListener, IProactorHooks
from gwproactor.proactor import API, DEPRECATED, Proactor
from gwproactor.store import MemoryEventStore

HOOKS = frozenset(IProactorHooks.names())


def public_names(cls: type) -> set[str]:
    """Public names ``cls`` defines or overrides beyond what MultiService provides."""
    names = set()
    for name in dir(cls):
        if name.startswith("_"):
            continue
        if name in dir(MultiService) and getattr(cls, name) is getattr(MultiService, name, None):
            continue
        names.add(name)
    return names


def settings(tmp_path: Path | None = None, **kwargs: Any) -> ProactorSettings:
    kwargs.setdefault("links", {"parent": LinkSettings(peer_long_name="d1", peer_short_name="a", upstream=True)})
    kwargs.setdefault("brokers", {"default": BrokerSettings(endpoint="tcp:host=127.0.0.1:port=1")})
    if tmp_path is not None:
        kwargs.setdefault("store", StoreSettings(directory=tmp_path / "store"))
    return ProactorSettings(long_name="d1.surface", short_name="s", **kwargs)


# --- the surface ---------------------------------------------------------------------------------------------


def test_proactor_implements_the_hooks() -> None:
    """Proactor provides every hook of IProactorHooks, and declares settings_class (the runner loads it)."""
    assert verifyClass(IProactorHooks, Proactor)
    assert Proactor.settings_class is ProactorSettings
    assert verifyObject(IProactorHooks, Proactor(settings(), reactor=Clock(), store=MemoryEventStore()))


def test_every_public_name_is_a_hook_or_in_the_api() -> None:
    """Each public method or attribute of Proactor is a hook, in API, or a deprecated alias: the surface cannot grow silently."""
    names = public_names(Proactor)
    assert names - HOOKS - API - DEPRECATED == set()
    assert {"link_transition", "link_message", "link_acked", "link_problem"} == DEPRECATED
    assert not (HOOKS & API) and not (HOOKS & DEPRECATED) and not (API & DEPRECATED)


def test_every_api_name_exists_and_is_documented() -> None:
    """Every name in API is on a built Proactor and named in its class docstring (the documented API)."""
    p = Proactor(settings(), reactor=Clock(), store=MemoryEventStore())
    doc = inspect.getdoc(Proactor) or ""
    for name in API | HOOKS:
        assert hasattr(p, name), name
        assert name in doc, f"{name} is not in the Proactor docstring"


def test_every_public_method_has_a_docstring() -> None:
    """Public API keeps docstrings."""
    for name in public_names(Proactor):
        value = inspect.getattr_static(Proactor, name)
        if callable(value) or isinstance(value, property):
            assert (getattr(value, "__doc__", None) or "").strip(), name


def test_embedding_doc_shows_exactly_the_hooks_and_the_api() -> None:
    """docs/embedding.rst names every hook and every API name."""
    text = (Path(__file__).parent.parent / "docs" / "embedding.rst").read_text()
    for name in HOOKS | API:
        assert f"``{name}``" in text or f"{name}(" in text or f":meth:`{name}`" in text or f".{name}`" in text, name


def test_links_report_to_a_private_listener() -> None:
    """The links' listener is an object the proactor owns, not the proactor: overriding a hook cannot break dedup."""
    p = Proactor(settings(), reactor=Clock(), store=MemoryEventStore())
    assert not ILinkListener.providedBy(p)
    listener = p.get_link("parent").listener
    assert listener is not p and verifyObject(ILinkListener, listener)


def test_overriding_a_deprecated_listener_method_warns_and_still_works() -> None:
    """A subclass that overrides link_acked (the old listener name) is warned when defined, and its override still runs."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        class Old(Proactor):
            def link_acked(self, link: Any, message_id: str, rtt: Any) -> None:
                self.acked_ids = [*getattr(self, "acked_ids", []), message_id]
                super().link_acked(link, message_id, rtt)

    assert any(issubclass(w.category, DeprecationWarning) and "link_acked" in str(w.message) for w in caught)
    p = Old(settings(), reactor=Clock(), store=MemoryEventStore())
    link = p.get_link("parent")
    link.listener.link_acked(link, "abc", 0.1)
    assert p.acked_ids == ["abc"]


def test_a_subclass_with_only_hooks_is_not_warned() -> None:
    """Overriding hooks only gives no DeprecationWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        class New(Proactor):
            def handle_message(self, link: Any, message: Any) -> Any:
                return None

    assert New.handle_message is not Proactor.handle_message


# --- construction does no I/O --------------------------------------------------------------------------------


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("directory", [True, False], ids=["store-directory", "xdg-state-default"])
def test_construction_creates_no_files_opens_no_sockets_and_tells_systemd_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, directory: bool
) -> None:
    """Building a Proactor (file store, broker from settings, http enabled) under NOTIFY_SOCKET does no I/O at all."""
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    notify_path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    sock.setblocking(False)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", notify_path)
        monkeypatch.setenv("WATCHDOG_USEC", "200000")
        make = lambda: Proactor(  # noqa: E731
            settings(tmp_path if directory else None, http=HTTPSettings(enabled=True, port=0)), reactor=Clock()
        )
        make()  # imports whatever the constructor imports, so the count below sees only what it opens
        before_files = sorted(p.name for p in tmp_path.rglob("*"))
        before_fds = open_fds()
        p = make()
        assert open_fds() == before_fds
        assert sorted(p.name for p in tmp_path.rglob("*")) == before_files == ["notify"]
        assert p.systemd is None and p.web is None
        with pytest.raises(BlockingIOError):
            sock.recv(4096)
    finally:
        sock.close()


def test_the_store_opens_on_request_in_start_or_first_use(tmp_path: Path) -> None:
    """The default file store is created and locked by open_store (startService calls it), once."""
    p = Proactor(settings(tmp_path), reactor=Clock())
    assert not (tmp_path / "store").exists()
    store = p.open_store()
    assert (tmp_path / "store").is_dir() and p.store is store and p.open_store() is store
    assert p.received_ids is store.received
    store.close()


def test_store_access_before_start_opens_it(tmp_path: Path) -> None:
    """Reading ``proactor.store`` before start still works: it opens the store then."""
    p = Proactor(settings(tmp_path), reactor=Clock())
    assert p.store.pending_ids() == []
    assert (tmp_path / "store").is_dir()
    p.store.close()


def test_attach_web_builds_the_service_between_links_and_actors() -> None:
    """attach_web (startService calls it under http.enabled) puts the web service after links and brokers."""
    from gwproactor.actors import Actor

    p = Proactor(settings(http=HTTPSettings(enabled=True, port=0)), reactor=Clock(), store=MemoryEventStore())
    p.add_actor(Actor("a1"))
    web = p.attach_web()
    assert p.web is web and p.attach_web() is web
    names = [s.name for s in p]
    assert names.index("web") == names.index("link:parent") + 1 and names[-1] == "a1"


def test_runner_attaches_systemd_only_under_notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """make_service (gwproactor run, twist) attaches systemd when NOTIFY_SOCKET is set, and opens the store."""
    from gwproactor.runner import AppSpec, make_service

    for name in [k for k in os.environ if k.startswith("GWP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GWP_LONG_NAME", "d1.runner")
    monkeypatch.setenv("GWP_SHORT_NAME", "r")
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("GWP_STORE__DIRECTORY", str(tmp_path / "a"))
    plain = make_service(AppSpec("gwproactor.proactor:Proactor"), Clock())
    assert plain.systemd is None and (tmp_path / "a").is_dir()
    plain.store.close()
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("GWP_STORE__DIRECTORY", str(tmp_path / "b"))
    under = make_service(AppSpec("gwproactor.proactor:Proactor"), Clock())
    assert under.systemd is not None and under.systemd.notifier.path == str(tmp_path / "notify")
    under.store.close()


@pytest_twisted.ensureDeferred
async def test_privileged_start_binds_the_web_port_before_start() -> None:
    """Under twistd, privilegedStartService attaches the web server and binds its port; startService serves on it."""
    from twisted.internet import reactor

    p = Proactor(settings(links={}, brokers={}, http=HTTPSettings(enabled=True, port=0)), reactor=reactor,
                 store=MemoryEventStore(clock=reactor))
    assert p.web is None
    p.privilegedStartService()
    port = await p.web.when_listening()
    assert port.getHost().port > 0 and not p.running
    p.startService()
    try:
        assert p.web.port is port
    finally:
        await p.stopService()
    assert p.web.port is None
