"""The leaderboard's :class:`~attrflow.runner.DatasetTask`: :func:`leaderboard_example` on every example, with the
trained model and its re-initialised copies loaded once per worker."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from attrflow.analysis.leaderboard.kernel import leaderboard_example
from attrflow.analysis.leaderboard.options import METRICS, LeaderboardOptions
from attrflow.methods.registry import get_method
from attrflow.models import Model, load_model
from attrflow.runner import Batch, DatasetTask

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["TASK_VERSION", "LeaderboardTask"]

# the records depend on these; bump when the per-example computation or its columns change
TASK_VERSION = 1
_SCALARS = (*(m.name for m in METRICS), "step_comprehensiveness", "step_sufficiency", "subject_share")
_COSTS = ("seconds", "cpu_seconds", "memory_mb")


class LeaderboardTask(DatasetTask):
    """The per-example work of :func:`attrflow.leaderboard`, for :func:`attrflow.runner.run_dataset`.

    Built from plain settings (a model name or path, picklable for the Ray engine) or from a live
    :class:`attrflow.Model` (local engine only); ``preloaded`` is the model already loaded from the name (local
    engine: not loaded twice). The model is loaded in :meth:`setup`; the copies with re-initialised
    top layers (the sanity check) are made on first use, once per depth, and the user's model is never changed.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Model,
        options: LeaderboardOptions,
        *,
        device: str | None = None,
        preloaded: Model | None = None,
    ) -> None:
        self._source = model
        self._device = device
        self.options = options
        self._preloaded = preloaded
        self._model: Model | None = model if isinstance(model, Model) else preloaded
        self._randomized: dict[int, Model] = {}

    @property
    def name(self) -> str:
        return "leaderboard"

    @property
    def model_name(self) -> str:
        """The model's name (built-in name, path, or the loaded model's name)."""
        source = self._source
        return source.name if isinstance(source, Model) else str(source)

    def settings(self) -> dict[str, Any]:
        return {"version": TASK_VERSION, "model": self.model_name, **self.options.settings()}

    def schema(self) -> pa.Schema:
        import pyarrow as pa

        floats, lists = pa.float64(), pa.list_(pa.float64())
        fields = [
            pa.field("label", pa.int64()),
            pa.field("target", pa.int64()),
            pa.field("predicted", pa.int64()),
            pa.field("probability", floats),
            pa.field("length", pa.int64()),
            pa.field("attractors", pa.int64()),
            pa.field("subject", pa.int64()),
            pa.field("naopc_lower", floats),
            pa.field("naopc_upper", floats),
            pa.field("naopc_search", pa.string()),
            pa.field("variants", pa.int64()),
            pa.field("tree.count", pa.int64()),
            *(pa.field(f"tree.{k}", floats) for k in ("tree", "attention", "rollout", "random", "probability")),
        ]
        for name in self.options.methods:
            fields.extend(pa.field(f"{metric}.{name}", floats) for metric in (*_SCALARS, *_COSTS))
            fields.extend(pa.field(f"layers_{m}.{name}", lists) for m in ("spearman_blankout", "spearman_gradient"))
            fields.extend(pa.field(f"{curve}.{name}", lists) for curve in ("comprehensiveness", "sufficiency"))
            fields.append(pa.field(f"sanity.{name}", lists))
            fields.append(pa.field(f"scores.{name}", pa.list_(pa.float32())))
        return pa.schema(fields)

    def setup(self) -> None:
        if self._model is None:
            self._model = load_model(self._source, device=self._device)  # type: ignore[arg-type]
        for name in self.options.methods:
            get_method(name).check(self._model)

    def randomized(self, depth: int) -> Model:
        """The model with its top ``depth`` layers re-initialised (made once)."""
        assert self._model is not None, "setup() was not called"
        if depth not in self._randomized:
            self._randomized[depth] = self._model.randomized(depth, seed=self.options.sanity_seed)
        return self._randomized[depth]

    def process(self, batch: Batch) -> list[dict[str, Any]]:
        assert self._model is not None, "setup() was not called"
        return [
            leaderboard_example(self._model, int(example_id), example, self.options, randomized=self.randomized)
            for example_id, example in batch
        ]

    def teardown(self) -> None:
        self._randomized = {}
        if not isinstance(self._source, Model) and self._preloaded is None:
            self._model = None
