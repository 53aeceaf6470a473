"""Lazy imports of optional heavy dependencies (matplotlib, Ray, the explorer's server, ...), with an install hint
when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from attrflow.errors import MissingDependencyError

__all__ = ["require"]

_EXTRA_OF = {"matplotlib": "viz", "ray": "ray", "networkx": "dev", "starlette": "explore", "uvicorn": "explore"}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRA_OF.get(top)
        hint = f"pip install 'attrflow[{extra}]'" if extra else f"pip install {top}"
        raise MissingDependencyError(f"this feature needs the optional package {top!r}: {hint}") from exc
