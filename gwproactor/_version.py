"""The version of gwproactor, in one place: setup.cfg reads it, and modules that need it import it from here."""

__version__ = "0.1.0.dev0"
