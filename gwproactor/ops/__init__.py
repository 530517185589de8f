"""Operations: systemd notification and watchdog, reactor lag, problem collection and rate limiting, gc."""

from gwproactor.ops.gcfreeze import freeze_after_start
from gwproactor.ops.lag import ReactorLag
from gwproactor.ops.problems import Problems, RateLimiter
from gwproactor.ops.systemd import IWatchable, Notifier, SystemdService, Watch, link_status

__all__ = ["IWatchable", "freeze_after_start", "Notifier", "Problems", "RateLimiter", "ReactorLag", "SystemdService", "Watch", "link_status"]
