"""Re-export of :class:`~gwproactor.ops.backoff.Backoff`, which moved to :mod:`gwproactor.ops.backoff`."""

from gwproactor.ops.backoff import Backoff

__all__ = ["Backoff"]
