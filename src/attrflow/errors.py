"""The exception tree of attrflow.

Every error a user can cause raises a subclass of :class:`AttrflowError` whose message says what went wrong and
what to do about it. ``assert`` is reserved for internal invariants.
"""

from __future__ import annotations

__all__ = [
    "AttrflowError",
    "InvalidInputError",
    "MissingDependencyError",
    "NonFiniteError",
    "ResultFormatError",
    "RunLockedError",
    "RunMismatchError",
    "UnsupportedModelError",
]


class AttrflowError(Exception):
    """Base class of every error raised on purpose by attrflow."""


class InvalidInputError(AttrflowError, ValueError):
    """An argument or an input (text, target, steps, file contents, ...) is not usable."""


class UnsupportedModelError(AttrflowError):
    """The model's attention cannot be read or replaced by attrflow (e.g. it bypasses AttentionInterface)."""


class MissingDependencyError(AttrflowError, ImportError):
    """An optional dependency is needed for this feature; the message names the extra to install."""


class NonFiniteError(AttrflowError, ArithmeticError):
    """A model's output or a method's result holds NaN or infinite values, so no answer can be trusted.

    The message says where the values appeared (the output row, the layer, the input tokens whose embeddings are
    not finite) and what to check; attrflow never explains an output it cannot compute.
    """


class ResultFormatError(AttrflowError):
    """A saved result or run directory is missing, corrupt or of an unknown schema version."""


class RunMismatchError(AttrflowError):
    """A resumed run was started with settings that differ from those recorded in its output."""


class RunLockedError(AttrflowError):
    """Another process is writing to the same run directory (two writers would duplicate examples)."""
