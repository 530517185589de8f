"""HTTP for a proactor: the twisted.web health/stats/events endpoints and a treq REST poller actor."""

from gwproactor.web.poller import RestPoller
from gwproactor.web.server import WebService, make_site

__all__ = ["RestPoller", "WebService", "make_site"]
