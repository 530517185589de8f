"""A ``.tac`` file for ``twistd -ny demo_child.tac``: the demo child, settings from ``GWP_*`` variables."""

from twisted.application import service
from twisted.internet import reactor

from gwproactor.runner import AppSpec, make_service

application = service.Application("gwproactor-demo-child")
make_service(AppSpec(app="gwproactor.demo.apps:DemoChild", env_prefix="GWP"), reactor).setServiceParent(application)
