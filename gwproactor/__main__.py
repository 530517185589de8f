"""``python -m gwproactor``: the same as the ``gwproactor`` command."""

import sys

from gwproactor.cli import main

sys.exit(main())
