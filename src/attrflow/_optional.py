"""Deprecated name of :mod:`attrflow.dependencies` (kept while code moves over)."""

from attrflow.dependencies import require

__all__ = ["require"]
