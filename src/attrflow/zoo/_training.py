"""The training and evaluation loop shared by the zoo's models: seeded, CPU-frugal, with a progress bar.

CPU time is what limits training here, so batches are built from examples of similar length (shuffled pools
sorted by length, then the batches shuffled) and padded only to the longest example of each batch.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attrflow.data import Dataset

__all__ = [
    "TrainingConfig",
    "encode_dataset",
    "evaluate",
    "pick_device",
    "predict",
    "seed_everything",
    "train_classifier",
]

logger = logging.getLogger(__name__)

# how many batches' worth of examples are sorted by length together (bigger: less padding, less randomness)
_POOL_BATCHES = 50


@dataclass(frozen=True)
class TrainingConfig:
    """The optimisation recipe of one training run (recorded next to the weights it produces)."""

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    max_length: int = 64
    seed: int = 0
    max_grad_norm: float = 1.0


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's generators (all devices)."""
    random.seed(seed)
    torch.manual_seed(seed)


def pick_device(device: str | torch.device | None) -> torch.device:
    """The given device, else the first GPU when one is present, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def encode_dataset(tokenizer: Any, dataset: Dataset, *, max_length: int) -> list[list[int]]:
    """Token ids of every example (with the tokenizer's special tokens), truncated to ``max_length``."""
    pairs = dataset.text_pairs
    if any(pair is not None for pair in pairs):
        encoded = tokenizer(dataset.texts, pairs, truncation=True, max_length=max_length)
    else:
        encoded = tokenizer(dataset.texts, truncation=True, max_length=max_length)
    return [list(ids) for ids in encoded["input_ids"]]


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random | None) -> list[list[int]]:
    """Index batches of similar lengths: shuffled pools sorted by length (or all sorted when rng is None)."""
    order = list(range(len(lengths)))
    if rng is None:
        order.sort(key=lambda i: lengths[i])
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(order)
    pool = batch_size * _POOL_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def _collate(ids: Sequence[list[int]], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    # widths rounded up to a multiple of 8: fewer distinct shapes for the kernels, little extra padding
    width = -(-max(len(row) for row in ids) // 8) * 8
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, tokens in enumerate(ids):
        input_ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        attention_mask[row, : len(tokens)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}


def _iterate(
    ids: Sequence[list[int]], labels: Sequence[int], batches: list[list[int]], pad_id: int, device: torch.device
) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    for batch in batches:
        inputs = _collate([ids[i] for i in batch], pad_id, device)
        yield inputs, torch.tensor([labels[i] for i in batch], dtype=torch.long, device=device)


@torch.no_grad()
def predict(
    model: nn.Module,
    ids: Sequence[list[int]],
    *,
    pad_id: int,
    batch_size: int = 128,
    device: torch.device | None = None,
    progress: bool = False,
    description: str = "predict",
) -> list[int]:
    """The argmax class of every encoded example (eval mode; the model's mode is restored)."""
    from tqdm.auto import tqdm

    device = device if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    predictions = [0] * len(ids)
    try:
        batches = _batches([len(row) for row in ids], batch_size, None)
        for batch in tqdm(batches, desc=description, disable=not progress, leave=False):
            logits = model(**_collate([ids[i] for i in batch], pad_id, device)).logits
            for i, p in zip(batch, logits.argmax(-1).tolist(), strict=True):
                predictions[i] = p
    finally:
        model.train(was_training)
    return predictions


def evaluate(
    model: nn.Module,
    tokenizer: Any,
    dataset: Dataset,
    *,
    max_length: int = 64,
    batch_size: int = 128,
    progress: bool = False,
) -> tuple[float, list[int]]:
    """Accuracy of ``model`` on a labelled dataset, and its predictions in dataset order."""
    ids = encode_dataset(tokenizer, dataset, max_length=max_length)
    predictions = predict(
        model, ids, pad_id=tokenizer.pad_token_id, batch_size=batch_size, progress=progress, description=dataset.name
    )
    correct = sum(p == y for p, y in zip(predictions, dataset.labels, strict=True))
    return correct / max(len(dataset), 1), predictions


def train_classifier(
    model: nn.Module,
    tokenizer: Any,
    train: Dataset,
    validation: Dataset,
    config: TrainingConfig,
    *,
    parameter_groups: Sequence[dict[str, Any]] | None = None,
    device: torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune a sequence classifier with AdamW and a linear warm-up/decay schedule, cross-entropy loss.

    Args:
        model: a transformers ``...ForSequenceClassification`` (returns ``.logits`` ``[B, C]``).
        tokenizer: its tokenizer (adds the special tokens; ``pad_token_id`` pads).
        train: the labelled training examples.
        validation: scored after every epoch (logged and returned, not used to pick a checkpoint).
        config: the recipe.
        parameter_groups: AdamW groups; default: every parameter with ``requires_grad``.
        device: where to train (default: GPU when present).
        progress: show a tqdm progress bar.

    Returns:
        The training history: ``seconds`` (wall-clock), ``validation_accuracy`` per epoch, ``loss`` per epoch,
        ``steps``, ``device``.
    """
    from tqdm.auto import tqdm

    device = pick_device(device)
    seed_everything(config.seed)
    model.to(device)
    train_ids = encode_dataset(tokenizer, train, max_length=config.max_length)
    validation_ids = encode_dataset(tokenizer, validation, max_length=config.max_length)
    lengths = [len(row) for row in train_ids]
    batch_rng = random.Random(config.seed)
    steps_per_epoch = math.ceil(len(train_ids) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = max(1, int(config.warmup_fraction * total_steps))

    groups = parameter_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total_steps - step) / (total_steps - warmup)))
    )
    loss_fn = nn.CrossEntropyLoss()
    history: dict[str, Any] = {"validation_accuracy": [], "loss": [], "steps": total_steps, "device": str(device)}
    start = time.perf_counter()
    bar = tqdm(total=total_steps, desc="training", disable=not progress, smoothing=0.05)
    try:
        for epoch in range(config.epochs):
            model.train()
            running, seen = 0.0, 0
            for inputs, labels in _iterate(
                train_ids, train.labels, _batches(lengths, config.batch_size, batch_rng), tokenizer.pad_token_id, device
            ):
                loss = loss_fn(model(**inputs).logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                running += loss.item() * len(labels)
                seen += len(labels)
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{running / seen:.4f}")
            predictions = predict(model, validation_ids, pad_id=tokenizer.pad_token_id, device=device)
            accuracy = sum(p == y for p, y in zip(predictions, validation.labels, strict=True)) / len(validation)
            history["loss"].append(running / max(seen, 1))
            history["validation_accuracy"].append(accuracy)
            logger.info(
                "epoch %d/%d: loss %.4f, validation accuracy %.4f (%.0f s)",
                epoch + 1,
                config.epochs,
                running / max(seen, 1),
                accuracy,
                time.perf_counter() - start,
            )
    finally:
        bar.close()
    history["seconds"] = time.perf_counter() - start
    model.eval()
    return history
