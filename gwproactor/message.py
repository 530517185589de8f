"""Envelope, payloads, JSON codec and topic scheme of the gridworks wire format (see ``WIRE.md``).

The implementation lives in :mod:`gwproactor.messages`; import from here.
"""

from gwproactor.messages import *  # noqa: F401,F403
from gwproactor.messages import __all__  # noqa: F401
