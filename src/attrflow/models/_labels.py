"""Does a model fit a labelled dataset? The one check every dataset-level analysis makes before any work.

A classifier run on a dataset it was not trained for still gives numbers (the sentiment model "explains" the
agreement sentences with negative correlations); they mean nothing. A model whose number of classes differs from
the dataset's, or whose class names are not the dataset's label names in the same order, is refused naming both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from attrflow.errors import InvalidInputError
from attrflow.validation import option_hint

if TYPE_CHECKING:
    from attrflow.models._model import Model

__all__ = ["builtin_model_for", "check_labels", "model_label_names"]

# transformers' placeholder class names (LABEL_0, LABEL_1, ...) and bare indices say nothing about the classes
_GENERIC = re.compile(r"^(label_?)?\d+$", re.IGNORECASE)


def model_label_names(model: Model) -> tuple[str, ...]:
    """The model's class names in index order (``id2label``), or ``()`` when it has only placeholders."""
    names = tuple(str(model.label_name(i) or "") for i in range(model.num_outputs))
    return () if any(not n or _GENERIC.match(n) for n in names) else names


def builtin_model_for(dataset_name: str | None) -> str | None:
    """The built-in model trained on the built-in dataset ``dataset_name`` (None for any other)."""
    from attrflow import zoo

    for name in getattr(zoo, "BUILTIN_MODELS", ()):
        if zoo.builtin_info(name).dataset == dataset_name:
            return str(name)
    return None


def check_labels(model: Model, dataset: Any) -> None:
    """Refuse ``dataset`` when its classes are not ``model``'s: another number of classes, or other names.

    Causal language models, datasets without label names and models with placeholder names (``LABEL_0``) are
    checked as far as they say: the names when both sides have them, else the count (a file labelled with class
    indices only needs indices the model has).

    Raises:
        InvalidInputError: the model and the dataset disagree; the message names both and how to fix it.
    """
    if model.task == "causal-lm":
        return
    given = getattr(dataset, "label_names", None)
    if not isinstance(given, Sequence) or isinstance(given, str) or not given:
        return
    data_names = tuple(str(n) for n in given)
    count = model.num_outputs
    names = model_label_names(model)
    indices = all(_GENERIC.match(n) for n in data_names)
    named = bool(names) and not indices
    if indices and len(data_names) <= count:
        return  # class indices read from a file: the file need not hold every class
    if len(data_names) == count and (not named or [n.lower() for n in names] == [n.lower() for n in data_names]):
        return
    dataset_name = getattr(dataset, "name", None)
    split = getattr(dataset, "split", None)
    where = f"{dataset_name}{f' ({split})' if split else ''}" if dataset_name else "the dataset"
    classes = f"{count} classes ({', '.join(names)})" if names else f"{count} classes"
    problem = "in another order" if named and sorted(names) == sorted(data_names) else "other classes"
    if len(data_names) != count:
        problem = "another number of classes"
    own = builtin_model_for(dataset_name)
    if own:
        fix = f"use the model trained on it ({option_hint('model', repr(own), cli=own)})"
    else:
        label_names = option_hint("label_names", "[...]", cli="A,B")
        fix = f"use a model trained on these labels, or name the file's classes in the model's order ({label_names})"
    raise InvalidInputError(
        f"the model {model.name!r} predicts {classes} but {where} is labelled with {len(data_names)} "
        f"({', '.join(data_names)}): {problem}, so every number computed on it would be meaningless; {fix}"
    )
