"""Setuptools shim; metadata lives in setup.cfg.

``twisted.plugins`` is listed so that wheels install ``twisted/plugins/gwproactor_plugin.py``
into Twisted's plugin directory (how ``twist gwproactor`` finds us).  An editable install
cannot place it there: run ``twist`` with the checkout on ``PYTHONPATH`` in that case.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["gwproactor", "gwproactor.*", "gwproactor_test", "gwproactor_test.*"])
    + ["twisted.plugins"],
)
