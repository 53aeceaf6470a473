"""The two data types every loader returns: an :class:`Example` and a :class:`Dataset` of them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from attrflow.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["UNLABELLED", "Dataset", "Example"]

UNLABELLED = -1
"""The label of an example read from a file without a label column (the convention of GLUE test splits)."""


@dataclass(frozen=True)
class Example:
    """One input for a classifier: a text, an optional second segment, and a class index.

    Attributes:
        text: the input text (the first segment).
        text_pair: the second segment of sentence-pair tasks (NLI, paraphrase), else None.
        label: the gold class index into the dataset's ``label_names``; ``-1`` (:data:`UNLABELLED`) when the
            source has no labels.
        meta: where the example came from and what else is known about it: ``line`` (1-based line of a file),
            ``index`` (position in a built-in corpus, which decides its split), and per dataset extras such as
            the attractor counts of the agreement grammar. Not part of equality.
    """

    text: str
    text_pair: str | None = None
    label: int = UNLABELLED
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)


class Dataset(Sequence[Example]):
    """An immutable, sliceable sequence of :class:`Example` with its label names.

    ``dataset[i]`` is an :class:`Example`; ``dataset[a:b]`` and :meth:`filter` return a :class:`Dataset` that keeps
    the name, split and label names.

    Args:
        examples: the examples, in order.
        label_names: the name of each class index (``label_names[example.label]``).
        name: the built-in name or the file path the examples came from.
        split: ``"train"``, ``"validation"``, ``"test"`` (or a file's split name), or None for a whole source.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        *,
        label_names: Sequence[str],
        name: str,
        split: str | None = None,
    ) -> None:
        self._examples: tuple[Example, ...] = tuple(examples)
        self.label_names: tuple[str, ...] = tuple(label_names)
        self.name = name
        self.split = split
        for example in self._examples:
            if not (example.label == UNLABELLED or 0 <= example.label < len(self.label_names)):
                raise InvalidInputError(f"{name}: label {example.label} is outside the label names {self.label_names}")

    def __len__(self) -> int:
        return len(self._examples)

    @overload
    def __getitem__(self, index: int) -> Example: ...

    @overload
    def __getitem__(self, index: slice) -> Dataset: ...

    def __getitem__(self, index: int | slice) -> Example | Dataset:
        if isinstance(index, slice):
            return self._derive(self._examples[index])
        return self._examples[index]

    def __iter__(self) -> Iterator[Example]:
        return iter(self._examples)

    def __repr__(self) -> str:
        split = f", split={self.split!r}" if self.split is not None else ""
        return f"Dataset({self.name!r}{split}, {len(self)} examples, label_names={self.label_names})"

    @property
    def texts(self) -> list[str]:
        """The first segment of every example."""
        return [example.text for example in self._examples]

    @property
    def text_pairs(self) -> list[str | None]:
        """The second segment of every example (None where there is none)."""
        return [example.text_pair for example in self._examples]

    @property
    def labels(self) -> list[int]:
        """The class index of every example (``-1`` for unlabelled ones)."""
        return [example.label for example in self._examples]

    @property
    def is_labelled(self) -> bool:
        """Whether every example has a gold label."""
        return all(example.label != UNLABELLED for example in self._examples)

    def label_counts(self) -> dict[str, int]:
        """How many examples carry each label name (unlabelled examples are not counted)."""
        counts = Counter(example.label for example in self._examples)
        return {name: counts.get(i, 0) for i, name in enumerate(self.label_names)}

    def filter(self, predicate: Callable[[Example], bool]) -> Dataset:
        """The examples for which ``predicate`` is true, as a dataset with the same label names."""
        return self._derive([example for example in self._examples if predicate(example)])

    def to_frame(self) -> pd.DataFrame:
        """A pandas DataFrame with columns ``text``, ``text_pair``, ``label``, ``label_name`` and the meta keys."""
        import pandas as pd

        rows = []
        for example in self._examples:
            name = self.label_names[example.label] if example.label != UNLABELLED else None
            rows.append(
                {
                    "text": example.text,
                    "text_pair": example.text_pair,
                    "label": example.label,
                    "label_name": name,
                    **example.meta,
                }
            )
        return pd.DataFrame(rows)

    def _derive(self, examples: Sequence[Example]) -> Dataset:
        # the labels were checked when this dataset was built; a subset needs no second pass
        derived = Dataset.__new__(Dataset)
        derived._examples = tuple(examples)
        derived.label_names = self.label_names
        derived.name = self.name
        derived.split = self.split
        return derived
