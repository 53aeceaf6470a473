"""One rule for taking N examples of a dataset, and one adapter from anything example-like to an :class:`Example`.

Every dataset-level command (heads, triggers, faithfulness, the leaderboard) samples with :func:`sample`: by default
a seeded random draw kept in dataset order, because the built-in splits are sorted by label (the first 200 test
tweets are all negative). A sample that holds one class only is warned about.
"""

from __future__ import annotations

import logging
import warnings
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from attrflow.data._dataset import UNLABELLED, Example
from attrflow.errors import InvalidInputError
from attrflow.validation import Selection, check_choice, check_int

__all__ = ["Sample", "as_example", "example_inputs", "example_seed", "sample"]

logger = logging.getLogger(__name__)


class Sample(Sequence[Any]):
    """Some examples of a dataset, in dataset order, with their ids there (``example_ids``, what runs record).

    Keeps the dataset's ``name``, ``split`` and ``label_names`` when it has them.
    """

    def __init__(self, dataset: Sequence[Any], positions: Sequence[int]) -> None:
        self._dataset = dataset
        self.positions: tuple[int, ...] = tuple(int(p) for p in positions)
        given = getattr(dataset, "example_ids", None)
        ids = list(given) if given is not None else None
        self.example_ids: list[int] = [int(ids[p]) if ids is not None else p for p in self.positions]
        self.name: str | None = getattr(dataset, "name", None)
        self.split: str | None = getattr(dataset, "split", None)
        names = getattr(dataset, "label_names", None)
        self.label_names: tuple[str, ...] | None = tuple(names) if names is not None else None

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        return self._dataset[self.positions[index]]

    def __repr__(self) -> str:
        return f"Sample({self.name!r}, {len(self)} of {len(self._dataset)} examples)"


def sample(
    dataset: Sequence[Any],
    n: int | None = None,
    *,
    selection: Selection = "random",
    seed: int = 0,
    warn_one_class: bool = True,
    balanced: bool = False,
) -> Sample:
    """``n`` examples of ``dataset`` (all when None or larger), in dataset order.

    Args:
        dataset: any sequence of examples (an :class:`attrflow.Dataset`, a list of texts, ...).
        n: how many; None for all.
        selection: ``"random"`` (default): drawn without replacement by ``numpy.random.default_rng(seed)``;
            ``"first"``: the first n (only representative when the dataset is shuffled).
        seed: the seed of the random draw.
        warn_one_class: warn when the sample's labelled examples all carry one label.
        balanced: with ``selection="random"``, draw the same number of examples of every label (as near as n
            allows; a label with too few examples gives all it has and the others fill the rest), each label's
            share drawn by the seeded generator. Unlabelled examples are not drawn. For label-sorted splits whose
            labels are unequally frequent (the tweets are 70 % negative).

    Returns:
        A :class:`Sample` whose ``example_ids`` are the positions in ``dataset`` (or its own ``example_ids``).
    """
    if isinstance(dataset, (str, bytes)) or not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise InvalidInputError(
            "dataset must be a sequence of examples (e.g. attrflow.load_dataset(...), or a list of texts)"
        )
    check_choice("selection", selection, Selection)
    count = None if n is None else check_int("the number of examples", n, minimum=1)
    seed = check_int("seed", seed)
    total = len(dataset)
    if total == 0:
        raise InvalidInputError("the dataset is empty")
    if count is None or count >= total:
        positions = np.arange(total)
    elif selection == "first":
        if balanced:
            raise InvalidInputError("balanced=True draws at random; use it with selection='random'")
        positions = np.arange(count)
    elif balanced:
        positions = _balanced_positions(dataset, count, seed)
    else:
        positions = np.sort(np.random.default_rng(seed).choice(total, size=count, replace=False))
    chosen = Sample(dataset, positions.tolist())
    if warn_one_class:
        _warn_if_one_class(chosen, selection)
    return chosen


def _label_of(example: Any) -> int:
    label = example.get("label") if isinstance(example, Mapping) else getattr(example, "label", None)
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool) and label != UNLABELLED:
        return int(label)
    return UNLABELLED


def _balanced_positions(dataset: Sequence[Any], count: int, seed: int) -> np.ndarray:
    """``count`` positions with the labels as equally represented as the dataset allows, sorted."""
    by_label: dict[int, list[int]] = {}
    for position in range(len(dataset)):
        label = _label_of(dataset[position])
        if label != UNLABELLED:
            by_label.setdefault(label, []).append(position)
    if not by_label:
        raise InvalidInputError("balanced=True needs labelled examples; this dataset has none")
    if count > sum(len(p) for p in by_label.values()):
        raise InvalidInputError(f"balanced=True: the dataset has fewer than {count} labelled examples")
    rng = np.random.default_rng(seed)
    labels = sorted(by_label)
    quota = {label: 0 for label in labels}
    remaining = count
    while remaining:
        open_labels = [label for label in labels if quota[label] < len(by_label[label])]
        share = max(remaining // len(open_labels), 1)
        for label in open_labels:
            take = min(share, len(by_label[label]) - quota[label], remaining)
            quota[label] += take
            remaining -= take
            if not remaining:
                break
    chosen = [rng.choice(np.asarray(by_label[label]), size=quota[label], replace=False) for label in labels]
    return np.sort(np.concatenate(chosen))


def _warn_if_one_class(chosen: Sample, selection: str) -> None:
    labels = set()
    for example in chosen:
        label = getattr(example, "label", None) if not isinstance(example, Mapping) else example.get("label")
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool) and label != UNLABELLED:
            labels.add(int(label))
    if len(labels) == 1 and len(chosen) > 1:
        (label,) = labels
        name = chosen.label_names[label] if chosen.label_names and label < len(chosen.label_names) else str(label)
        hint = " (the first examples of a label-sorted split; use selection='random')" if selection == "first" else ""
        warnings.warn(
            f"all {len(chosen)} sampled examples carry the label {name!r}{hint}: accuracies and comparisons on one "
            "class say little",
            UserWarning,
            stacklevel=3,
        )


def as_example(item: Any) -> Example:
    """Anything example-like as an :class:`Example`: an ``Example``, a string, a ``(text, text_pair)`` tuple, a
    mapping or an object with ``text`` (and optionally ``text_pair``, ``label``)."""
    if isinstance(item, Example):
        return item
    if isinstance(item, str):
        return Example(item)
    if isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) for x in item):
        return Example(item[0], item[1])
    if isinstance(item, Mapping):
        text, pair, label = item.get("text"), item.get("text_pair"), item.get("label")
    elif hasattr(item, "text"):
        text, pair, label = item.text, getattr(item, "text_pair", None), getattr(item, "label", None)
    else:
        raise InvalidInputError(
            f"cannot read an example from {type(item).__name__}: give strings, (text, text_pair) tuples, or "
            "objects/mappings with `text` (and optionally `text_pair`, `label`)"
        )
    if not isinstance(text, str):
        raise InvalidInputError(f"an example's text must be a string, got {type(text).__name__}")
    if pair is not None and not isinstance(pair, str):
        raise InvalidInputError(f"an example's text_pair must be a string or None, got {type(pair).__name__}")
    if label is None or (isinstance(label, (int, np.integer)) and not isinstance(label, bool) and label < 0):
        gold = UNLABELLED
    elif isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise InvalidInputError(f"an example's label must be a class index, got {label!r}")
    else:
        gold = int(label)
    return Example(text, pair, gold)


def example_inputs(item: Any) -> str | tuple[str, str]:
    """The model input of an example-like item: its text, or ``(text, text_pair)``."""
    example = as_example(item)
    return example.text if example.text_pair is None else (example.text, example.text_pair)


def example_seed(token_ids: Sequence[int], seed: int) -> int:
    """A seed derived from an input's token ids and ``seed``: the same input gets the same random draws in every
    run, whatever the order or grouping of the examples (so seeded per-example randomness is reproducible and
    resumable)."""
    digest = zlib.crc32(np.asarray(token_ids, dtype=np.int64).tobytes())
    return (digest * 1_000_003 + int(seed)) % (2**63)
