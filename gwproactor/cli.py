"""The ``gwproactor`` command."""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    print("gwproactor: not yet available", file=sys.stderr)
    return 2
