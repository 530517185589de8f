"""Operations: systemd notification and watchdog, reactor lag, monotonic reactor time, problem collection and rate limiting, gc."""

from gwproactor.ops.clock import is_monotonic, use_monotonic_time
from gwproactor.ops.gcfreeze import freeze_after_start
from gwproactor.ops.lag import ReactorLag
from gwproactor.ops.problems import Problems, RateLimiter
from gwproactor.ops.systemd import IWatchable, Notifier, SystemdService, Watch, link_status

__all__ = [
    "IWatchable", "freeze_after_start", "is_monotonic", "Notifier", "Problems", "RateLimiter", "ReactorLag",
    "SystemdService", "Watch", "link_status", "use_monotonic_time",
]
