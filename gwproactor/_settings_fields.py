"""Field metadata keys shared by the settings classes (:mod:`gwproactor.config`) and their loader.

The loader (:mod:`gwproactor._settings_loader`) reads these keys from any attrs class's fields; it knows nothing
of the settings classes themselves.
"""

from __future__ import annotations

SECRET = "gwproactor.secret"
"""A value hidden in repr, ``to_dict`` and error messages (passwords)."""
BYTES = "gwproactor.bytes"
"""An int that also accepts KiB/MiB/GB suffixes."""
FILE = "gwproactor.file"
"""A Path that must name an existing file when loaded."""
LOWER = "gwproactor.lower"
"""A str lower-cased when loaded (names of dict entries)."""
