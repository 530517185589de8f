"""The declared surface of :class:`~gwproactor.proactor.Proactor`: the names a subclass or an embedding
application may call (:data:`API`) and the deprecated listener aliases (:data:`DEPRECATED`).

Re-exported by :mod:`gwproactor.proactor`, where users import them from.
"""

from __future__ import annotations

from gwproactor._proactor_links import LEGACY_LISTENER_METHODS

__all__ = ["API", "DEPRECATED"]


#: What a subclass or an embedding application calls (methods and read-only attributes); with the hooks of
#: :class:`~gwproactor.interfaces.IProactorHooks` and what :class:`~twisted.application.service.MultiService`
#: provides, this is the whole public surface of
#: :class:`~gwproactor.proactor.Proactor` (``tests/test_proactor_surface.py`` checks).
API = frozenset({
    # construction and wiring (before startService)
    "settings", "name", "short_name", "reactor", "codec", "log", "open_store", "attach_web", "attach_systemd",
    "use_log_levels", "apply_log_settings",
    # actors and routing
    "add_actor", "get_actor", "actor_names", "send", "send_threadsafe", "run_blocking", "actor_failed", "watch",
    # links
    "get_link", "link_states", "send_to_link", "links", "upstream", "brokers",
    # events
    "generate_event", "requeue_parked", "report_problem",
    # lifecycle
    "privilegedStartService", "startService", "stopService", "shutdown", "request_shutdown", "when_shut_down",
    "shutting_down", "exit_code", "shutdown_reason",
    # read-only views of the parts (for tests, tools and observability)
    "store", "received_ids", "outbox", "inbox", "router", "counters", "event_counts", "log_levels",
    "systemd", "web", "health", "stats",
})

#: Deprecated aliases of what the links report (now told to a private listener); a subclass that overrides
#: one still gets the calls, with a DeprecationWarning when it is defined.  Use the hooks instead.
DEPRECATED = frozenset(LEGACY_LISTENER_METHODS)
