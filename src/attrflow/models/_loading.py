"""Loading a model for attrflow: a built-in name, a local checkpoint directory, or a loaded transformers model.

Nothing is downloaded from a hub. The task of a checkpoint directory is inferred from its architecture's head class.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attrflow.errors import InvalidInputError, UnsupportedModelError
from attrflow.models._model import Model
from attrflow.models._probe import Task, task_of
from attrflow.validation import option_hint

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _checkpoint_errors(path: Path, what: str) -> Iterator[None]:
    """A checkpoint directory that transformers cannot read (a truncated ``config.json``, missing or damaged
    weights, shapes that do not fit the config) as one :class:`InvalidInputError` naming the directory."""
    try:
        yield
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if len(reason) > 300:
            reason = reason[:300] + " ..."
        raise InvalidInputError(
            f"{path}: cannot load the checkpoint's {what} ({type(exc).__name__}: {reason}); check that the directory "
            "holds a complete transformers checkpoint (config.json and its weights, as save_pretrained writes them)"
        ) from exc
    except Exception as exc:
        if type(exc).__name__ in ("SafetensorError", "HeaderTooLarge", "DecodeError"):
            raise InvalidInputError(
                f"{path}: the checkpoint's weights are damaged ({type(exc).__name__}: {exc}); save them again"
            ) from exc
        raise


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' weight-loading progress bar (attrflow shows its own progress where it matters)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def load_model(
    source: str | Path | nn.Module,
    *,
    tokenizer: Any = None,
    device: str | torch.device | None = None,
    task: Task | None = None,
) -> Model:
    """Wrap a model for attrflow: a built-in name, a local checkpoint directory, or a loaded transformers model.

    Sequence classifiers, causal LMs and image classifiers are supported; for encoder-decoder classifiers (BART, T5,
    ...) the layers are the encoder's self-attention sites (:attr:`Model.site_names`).

    Args:
        source: ``"sentiment"`` / ``"agreement"`` (models shipped with attrflow), a local directory with
            ``config.json`` and weights, or a ``PreTrainedModel`` object. Nothing is downloaded from a hub.
        tokenizer: the tokenizer (or image processor); loaded from the directory when omitted.
        device: where to run (default: where the model is, or CPU for directories).
        task: override the task inferred from the model's head class.

    Returns:
        A :class:`Model`; the transformers model stays unchanged outside attrflow calls.

    Raises:
        InvalidInputError: the path does not exist, is not a checkpoint or cannot be read (a damaged config or
            weights), or ``device`` is not available here.
        UnsupportedModelError: the architecture bypasses AttentionInterface, has no explainable head (an
            encoder-decoder needs a sequence-classification head), or fails on a plain input.
    """
    device = check_device(device)
    if isinstance(source, nn.Module):
        model = source
        if device is not None:
            model = model.to(device)
        return Model(model, tokenizer, task=task)
    if isinstance(source, str) and not Path(source).exists():
        from attrflow import zoo

        builtins: tuple[str, ...] = tuple(getattr(zoo, "BUILTIN_MODELS", ()))
        if source in builtins:
            model, builtin_tokenizer = zoo.load_builtin(source, device=device)
            return Model(model, tokenizer or builtin_tokenizer, task=task, name=source)
        raise InvalidInputError(
            f"no model directory {source!r} and no built-in model of that name (built-in: "
            f"{', '.join(builtins) or 'none'}); attrflow never downloads from a hub"
        )
    return Model(*_load_directory(Path(source), tokenizer, device, task), task=task, name=str(source))


def check_device(device: str | torch.device | None) -> torch.device | None:
    """``device`` as a torch device that exists here (None stays None).

    Raises:
        InvalidInputError: not a device name, or a device this machine does not have (no CUDA, no such GPU, no MPS).
    """
    if device is None:
        return None
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidInputError(
            f"{option_hint('device', repr(device), cli=str(device))} is not a torch device; use e.g. cpu, cuda, "
            "cuda:1 or mps"
        ) from None
    available = {
        "cpu": True,
        "meta": False,
        "cuda": torch.cuda.is_available() and (chosen.index is None or chosen.index < torch.cuda.device_count()),
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    }.get(chosen.type, True)
    if not available:
        found = f"{torch.cuda.device_count()} CUDA device(s)" if chosen.type == "cuda" else f"no {chosen.type}"
        raise InvalidInputError(
            f"device {str(chosen)!r} is not available on this machine ({found}); use "
            f"{option_hint('device', repr('cpu'), cli='cpu')}"
        )
    return chosen


def _load_directory(
    path: Path, tokenizer: Any, device: str | torch.device | None, task: Task | None
) -> tuple[nn.Module, Any]:
    import transformers

    if not (path / "config.json").is_file():
        raise InvalidInputError(f"{path} is not a transformers checkpoint directory (no config.json)")
    with _checkpoint_errors(path, "config.json"):
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    architecture = (getattr(config, "architectures", None) or [""])[0]
    auto = {
        "sequence-classification": transformers.AutoModelForSequenceClassification,
        "causal-lm": transformers.AutoModelForCausalLM,
        "image-classification": transformers.AutoModelForImageClassification,
    }
    chosen = task or task_of(architecture)
    if chosen is None:
        raise UnsupportedModelError(
            f"{path}: the checkpoint's architecture {architecture or '(none)'} has no explainable head; pass task= "
            "('sequence-classification', 'causal-lm' or 'image-classification') to add one"
        )
    with _quiet_transformers(), _checkpoint_errors(path, "weights"):
        model = auto[chosen].from_pretrained(path, local_files_only=True)
    if device is not None:
        model = model.to(device)
    if tokenizer is None:
        try:
            if chosen == "image-classification":
                tokenizer = transformers.AutoImageProcessor.from_pretrained(path, local_files_only=True)
            else:
                tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            logger.warning("no tokenizer found in %s (%s); pass inputs as tensors or give tokenizer=", path, exc)
            tokenizer = None
    return model, tokenizer
