"""Envelope, payloads, JSON codec and topic scheme of the gridworks wire format (topics, envelope and payloads: ``docs/migration.rst`` and ``docs/interop_4x.rst``).

The implementation lives in :mod:`gwproactor.messages`; import from here.
"""

from gwproactor.messages import *  # noqa: F401,F403
from gwproactor.messages import __all__  # noqa: F401
