"""Names of the single-module ``attrflow.analysis.heads`` kept for one release: they warn and forward."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from attrflow.data.sampling import sample
from attrflow.validation import Selection

__all__ = ["Subset", "select_examples"]


class Subset(list[Any]):
    """Deprecated: some examples of a dataset with their ``example_ids`` (use :func:`attrflow.data.sample`)."""

    def __init__(self, examples: Sequence[Any], example_ids: Sequence[int]) -> None:
        super().__init__(examples)
        self.example_ids = [int(i) for i in example_ids]


def select_examples(
    dataset: Sequence[Any], count: int | None, *, selection: Selection = "random", seed: int = 0
) -> Subset:
    """Deprecated: :func:`attrflow.data.sample` (the same draw), as a :class:`Subset`."""
    warnings.warn(
        "attrflow.analysis.heads.select_examples is now attrflow.data.sample (the same draw); select_examples stops "
        "working in the next release",
        DeprecationWarning,
        stacklevel=2,
    )
    chosen = sample(dataset, count, selection=selection, seed=seed, warn_one_class=False)
    return Subset(list(chosen), chosen.example_ids)
