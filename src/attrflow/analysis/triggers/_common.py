"""What the trigger modules share: defaults, the classifier check, label names, and the deprecated spellings."""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any

from attrflow.errors import InvalidInputError, UnsupportedModelError
from attrflow.models import SPECIAL_SEGMENT, Model, load_model
from attrflow.runner import resolve_run_options
from attrflow.validation import Selection, check_choice

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "DEFAULT_CONTROL_SEEDS",
    "DEFAULT_MIN_SCORE",
    "DEFAULT_PAIR_RATIO",
    "OVERALL",
    "SPECIAL",
    "as_model",
    "check_classifier",
    "keyword_ax",
    "label_names",
    "resolve_run_options",
    "resolve_selection",
]

DEFAULT_MIN_SCORE = 0.02
"""Patterns whose summed score is below this are not used as triggers (the official ``pattern_threshold``)."""
DEFAULT_PAIR_RATIO = 0.2
"""The second pair joins the trigger when its score is at least this fraction of the first's (official code)."""
DEFAULT_CONTROL_SEEDS = 5
"""Random-token draws per trigger in the control."""
SPECIAL = SPECIAL_SEGMENT
"""Segment value of special tokens ([CLS], [SEP], <s>, ...) in :attr:`Pattern.segments`."""
OVERALL = "all"
"""The ``label`` of the rows that count every evaluation example."""


def check_classifier(model: Model) -> None:
    """Refuse models that are not sequence classifiers with a tokenizer (triggers are word-pieces)."""
    if model.task != "sequence-classification":
        raise UnsupportedModelError(
            f"adversarial triggers need a sequence classifier; {model.name} is a {model.task} model"
        )
    if model.tokenizer is None:
        raise InvalidInputError("triggers are word-pieces: this model needs a tokenizer (load_model(..., tokenizer=))")


def as_model(model: Model | str | os.PathLike[str], device: str | None = None) -> Model:
    """``model`` itself, or the model loaded from a built-in name or a checkpoint directory."""
    return model if isinstance(model, Model) else load_model(os.fspath(model), device=device)


def label_names(dataset: Any, model: Model) -> tuple[str, ...]:
    """The dataset's ``label_names`` when it has them, else the model's names of its classes."""
    names = getattr(dataset, "label_names", None)
    if names:
        return tuple(str(n) for n in names)
    return tuple(model.label_name(i) or str(i) for i in range(model.num_outputs))


def resolve_selection(selection: Selection, sample: Selection | None, *, new_name: str = "selection") -> Selection:
    """``selection``, or the deprecated ``sample=`` spelling of it (with a DeprecationWarning)."""
    if sample is None:
        chosen: Selection = check_choice(new_name, selection, Selection)
        return chosen
    warnings.warn(
        f"sample= is deprecated and stops working in the next release; use {new_name}= (whose default is "
        "'random' with seed=0: the built-in splits are sorted by label)",
        DeprecationWarning,
        stacklevel=3,
    )
    chosen = check_choice("sample", sample, Selection)
    return chosen


def keyword_ax(positional: Axes | None, keyword: Axes | None) -> Axes | None:
    """The axes of a ``plot``: ``ax=``, or the deprecated positional one (with a DeprecationWarning)."""
    if positional is None:
        return keyword
    if keyword is not None:
        raise InvalidInputError("give the axes once: plot(ax=ax)")
    warnings.warn(
        "plot(ax) with the axes as a positional argument is deprecated and stops working in the next release; "
        "use plot(ax=ax)",
        DeprecationWarning,
        stacklevel=3,
    )
    return positional
