"""Small tasks and datasets for the runner tests, importable by Ray workers and runnable as a script.

    python tests/runner_tasks.py OUT NUM_EXAMPLES DELAY [ENGINE]

runs :class:`ArithmeticTask` over :func:`make_dataset` into OUT, writing a part per example (the kill -9 test
starts this, kills it and starts it again).

    python tests/runner_tasks.py --ray-head

starts a local Ray (a stand-in for an existing cluster), prints its address and keeps it up until stdin closes.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from attrflow.runner import Batch, DatasetTask, run_dataset

WORDS = ("good", "bad", "movie", "plot", "actors", "boring", "great", "the", "a", "not")


@dataclass(frozen=True)
class Example:
    text: str
    text_pair: str | None
    label: int


def make_dataset(n: int, *, seed: int = 0) -> list[Example]:
    """``n`` deterministic pseudo-random examples (a linear congruential generator: no global RNG state)."""
    state = seed * 7919 + 17
    examples = []
    for i in range(n):
        words = []
        for _ in range(3 + i % 5):
            state = (state * 1103515245 + 12345) % 2**31
            words.append(WORDS[state % len(WORDS)])
        pair = " ".join(reversed(words[:2])) if i % 3 == 0 else None
        examples.append(Example(" ".join(words), pair, state % 2))
    return examples


def expected_record(example: Example, scale: float) -> dict[str, Any]:
    """The oracle: what :class:`ArithmeticTask` must store for one example, computed without the runner."""
    tokens = example.text.split()
    scores = [scale * math.sin(k + len(example.text)) for k in range(6)]
    top = sorted(range(6), key=lambda k: -scores[k])[:2]
    return {
        "tokens": tokens,
        "label": example.label,
        "prediction": len(tokens) % 2,
        "probability": 1.0 / (1.0 + math.exp(-scale * len(tokens))),
        "head_max": scores,
        "top": [{"layer": k // 3, "head": k % 3, "score": scores[k]} for k in top],
        "pair": example.text_pair,
    }


class ArithmeticTask(DatasetTask):
    """A pure-Python stand-in for an attribution task: per-example values of every column type the runner uses.

    ``delay`` (seconds per example) and ``fail_on`` (ids whose batch raises) change how the run goes, not its
    results, so they are not settings.
    """

    def __init__(self, scale: float = 1.0, *, delay: float = 0.0, fail_on: Sequence[int] = ()) -> None:
        self.scale = scale
        self.delay = delay
        self.fail_on = frozenset(fail_on)
        self.ready = False

    def settings(self) -> Mapping[str, Any]:
        return {"scale": self.scale, "model": "arithmetic", "steps": 20}

    def schema(self) -> pa.Schema:
        return pa.schema(
            [
                ("tokens", pa.list_(pa.string())),
                ("label", pa.int64()),
                ("prediction", pa.int64()),
                ("probability", pa.float64()),
                ("head_max", pa.list_(pa.float32())),
                (
                    "top",
                    pa.list_(pa.struct([("layer", pa.int32()), ("head", pa.int32()), ("score", pa.float32())])),
                ),
                ("pair", pa.string()),
            ]
        )

    def setup(self) -> None:
        self.ready = True

    def process(self, batch: Batch) -> list[dict[str, Any]]:
        if not self.ready:
            raise RuntimeError("process() called before setup()")
        records = []
        for example_id, example in batch:
            if example_id in self.fail_on:
                raise RuntimeError(f"planned failure on example {example_id}")
            if self.delay:
                time.sleep(self.delay)
            records.append(expected_record(example, self.scale))
        return records


class TinyTorchTask(DatasetTask):
    """A seeded bag-of-characters classifier built in ``setup`` (a model replica per worker)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.model: Any = None

    def settings(self) -> Mapping[str, Any]:
        return {"model": "tiny-torch", "seed": self.seed}

    def schema(self) -> pa.Schema:
        return pa.schema([("probabilities", pa.list_(pa.float32())), ("prediction", pa.int64())])

    def setup(self) -> None:
        import torch

        torch.manual_seed(self.seed)
        self.model = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).eval()

    def process(self, batch: Batch) -> list[dict[str, Any]]:
        import torch

        features = torch.zeros(len(batch), 32)
        for row, (_, example) in enumerate(batch):
            for char in example.text:
                features[row, ord(char) % 32] += 1.0
        with torch.no_grad():
            probabilities = self.model(features).softmax(-1)
        return [{"probabilities": p.tolist(), "prediction": int(p.argmax())} for p in probabilities]


def serve_ray_head() -> None:
    import ray

    from attrflow.runner._engines import start_local_ray

    start_local_ray(ray, 2)
    print(ray.get_runtime_context().gcs_address, flush=True)
    sys.stdin.read()
    ray.shutdown()


def main(argv: list[str]) -> None:
    if argv[0] == "--ray-head":
        serve_ray_head()
        return
    out, n, delay = argv[0], int(argv[1]), float(argv[2])
    engine = argv[3] if len(argv) > 3 else "local"
    run_dataset(
        ArithmeticTask(delay=delay),
        make_dataset(n),
        out_dir=out,
        engine=engine,  # type: ignore[arg-type]
        examples_per_batch=1,
        part_rows=2,
        checkpoint_seconds=0.0,
        progress=False,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
