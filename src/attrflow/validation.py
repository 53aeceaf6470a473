"""Shared vocabulary and argument checks: the literal types every module uses and the one place that validates
choices, whole numbers, layer and head indices.

Every check raises :class:`~attrflow.errors.InvalidInputError` with a message that names the argument, what it
got and what it accepts. Nothing here knows about models; :meth:`attrflow.Model.resolve_target` checks targets.
"""

from __future__ import annotations

import contextlib
import math
import unicodedata
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Literal, get_args

import numpy as np

from attrflow.errors import InvalidInputError

__all__ = [
    "HEAD_FUSIONS",
    "REDUCTIONS",
    "SELECTIONS",
    "TARGET_RULES",
    "HeadFusion",
    "Reduction",
    "Selection",
    "TargetRule",
    "check_choice",
    "check_choices",
    "check_finite",
    "check_fraction",
    "check_int",
    "check_optional_int",
    "option_hint",
    "option_spelling",
    "resolve_index",
    "resolve_layers",
    "target_rule",
    "visible_text",
]

HeadFusion = Literal["mean", "max", "min"]
"""How the heads of a layer are fused into one matrix (Abnar & Zuidema use the mean)."""
HEAD_FUSIONS: tuple[str, ...] = get_args(HeadFusion)

Reduction = Literal["cls", "max", "mean"]
"""How a token-to-token matrix becomes one score per token: the explained position's row, or the max / mean
over query rows (the official SST-2 script of Abnar & Zuidema takes the max)."""
REDUCTIONS: tuple[str, ...] = get_args(Reduction)

TargetRule = Literal["label", "predicted"]
"""Which output a dataset-level command explains: the example's gold ``label`` or the model's ``predicted``
class (for unlabelled examples ``label`` falls back to the prediction)."""
TARGET_RULES: tuple[str, ...] = get_args(TargetRule)

Selection = Literal["random", "first"]
"""How N examples are taken from a dataset: a seeded random draw (kept in dataset order) or the first N."""
SELECTIONS: tuple[str, ...] = get_args(Selection)


def _allowed(choices: Any) -> tuple[Any, ...]:
    args = get_args(choices)
    return args if args else tuple(choices)


def check_choice(name: str, value: object, choices: Any) -> Any:
    """``value`` if it is one of ``choices`` (a ``Literal`` type or a sequence), else a clear error."""
    allowed = _allowed(choices)
    if isinstance(value, str) and value in allowed:
        return value
    if not isinstance(value, str) and any(value is a or (type(value) is type(a) and value == a) for a in allowed):
        return value
    raise InvalidInputError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def check_choices(name: str, values: Iterable[str] | str, choices: Any, *, empty: bool = False) -> tuple[str, ...]:
    """A selection of ``choices`` without repeats, in the given order (a comma-separated string is split)."""
    items = [v.strip() for v in values.split(",")] if isinstance(values, str) else list(values)
    chosen = tuple(dict.fromkeys(v for v in items if v != ""))
    allowed = _allowed(choices)
    unknown = [v for v in chosen if v not in allowed]
    if unknown:
        raise InvalidInputError(f"{name}: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(allowed)}")
    if not chosen and not empty:
        raise InvalidInputError(f"{name} must name at least one of {', '.join(allowed)}")
    return chosen


def check_int(name: str, value: object, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int if it is a whole number (not a bool) within the bounds, else a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"{name} must be a whole number, got {value!r}")
    number = int(value)
    if minimum is not None and number < minimum:
        raise InvalidInputError(f"{name} must be >= {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise InvalidInputError(f"{name} must be <= {maximum}, got {number}")
    return number


def check_optional_int(name: str, value: object, *, minimum: int | None = None) -> int | None:
    """Like :func:`check_int`, but None passes through."""
    return None if value is None else check_int(name, value, minimum=minimum)


def check_fraction(name: str, value: object, *, low: float = 0.0, high: float = 1.0) -> float:
    """A finite real number in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        raise InvalidInputError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return number


def check_finite(name: str, value: object) -> float:
    """A finite real number (not NaN, not infinite, not complex, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"{name} must be a real number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInputError(f"{name} must be finite, got {value!r}")
    return number


def resolve_index(name: str, index: object, size: int) -> int:
    """One index into ``size`` items; negatives count from the end, like Python."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise InvalidInputError(f"{name} must be a whole number, got {index!r}")
    if not -size <= int(index) < size:
        raise InvalidInputError(f"{name} {index} is out of range for {size} (use 0..{size - 1} or -{size}..-1)")
    return int(index) % size


def resolve_layers(layers: int | Sequence[int] | None, num_layers: int) -> tuple[int, ...]:
    """A layer selection (None: all; negatives count from the end) as sorted unique indices."""
    if layers is None:
        return tuple(range(num_layers))
    chosen = [layers] if isinstance(layers, (int, np.integer)) and not isinstance(layers, bool) else layers
    if isinstance(chosen, (str, bytes)) or not isinstance(chosen, Iterable):
        raise InvalidInputError(f"layers must be a layer index, a list of them, or None; got {layers!r}")
    out = {resolve_index("layer", layer, num_layers) for layer in chosen}
    if not out:
        raise InvalidInputError("layers is empty; give layer indices or None for all layers")
    return tuple(sorted(out))


def target_rule(value: object) -> TargetRule:
    """A dataset-level target rule; ``"gold"`` (the old name in heads) is read as ``"label"`` with a warning."""
    if value == "gold":
        warnings.warn(
            f"{option_hint('target', repr('gold'), cli='gold')} is now spelled "
            f"{option_hint('target', repr('label'), cli='label')} (the same words everywhere); 'gold' stops working "
            "in the next release",
            DeprecationWarning,
            stacklevel=3,
        )
        return "label"
    rule: TargetRule = check_choice("target", value, TargetRule)
    return rule


# how the caller spells options: None (Python keywords) or, inside the CLI, keyword -> command-line option
_SPELLING: ContextVar[Mapping[str, str] | None] = ContextVar("attrflow_option_spelling", default=None)


def option_hint(keyword: str, value: str, *, cli: str | None = None) -> str:
    """How to pass an option, in the words of whoever called attrflow: ``label=NAME`` from Python, ``--label-column
    NAME`` from the command line. Error messages name options through this, so that a hint is never a keyword
    the user cannot type.

    Args:
        keyword: the Python keyword (``"label"``).
        value: its value as Python code (``"NAME"``, ``"None"``, ``"[...]"``).
        cli: the value as typed on the command line, when it differs (``"A,B"`` for a list).
    """
    spelling = _SPELLING.get()
    if spelling is not None and keyword in spelling:
        return f"{spelling[keyword]} {value if cli is None else cli}".strip()
    return f"{keyword}={value}"


@contextlib.contextmanager
def option_spelling(spelling: Mapping[str, str]) -> Iterator[None]:
    """Inside the block, :func:`option_hint` spells ``keyword`` as ``spelling[keyword]`` (the CLI sets its options)."""
    outer = _SPELLING.get() or {}
    token = _SPELLING.set({**outer, **spelling})
    try:
        yield
    finally:
        _SPELLING.reset(token)


# Unicode categories without visible content: controls, format characters (zero-width space and joiners, BOM,
# direction marks), separators
_INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def visible_text(text: str) -> str:
    """``text`` without whitespace, zero-width, format and control characters: what carries content. A text for
    which this is empty is empty, whatever its length."""
    return "".join(ch for ch in text if unicodedata.category(ch) not in _INVISIBLE and not ch.isspace())
