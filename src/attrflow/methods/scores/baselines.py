"""The two floors every explanation method must beat: seeded random scores and token position.

Neither reads the model. A method that does no better than ``random`` on a faithfulness metric carries no
information the metric can see; one that does no better than ``position`` knows where tokens sit, not what they do
(in the verb-agreement sentences the subject is usually the first noun, so "earlier is more important" is a strong
floor for the ground truth; ``direction="last-first"`` gives the recency baseline). Both are evaluated by the leaderboard
like every other method and are left out of the defaults of ``explain`` and ``evaluate`` (``baseline = True``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from attrflow.data.sampling import example_seed
from attrflow.errors import InvalidInputError
from attrflow.methods.context import ExplainContext
from attrflow.methods.registry import Method, register_method
from attrflow.results import TokenScores
from attrflow.validation import check_choice, check_int

Direction = Literal["last-first", "first-first"]


@register_method
class RandomScores(Method):
    """Uniform random scores, seeded by the input."""

    name = "random"
    description = "baseline: uniform random scores in [0, 1), seeded by the input's token ids"
    paper = "the floor of every faithfulness comparison (e.g. DeYoung et al., ERASER, ACL 2020)"
    cost = "none (no forward pass)"
    baseline = True
    reads_output = False

    def validate(self, **options: Any) -> None:
        """seed: an integer."""
        check_int("seed", options.get("seed", 0))

    def compute(self, context: ExplainContext, *, seed: int = 0) -> TokenScores:
        """Scores ``[n]`` drawn by ``numpy.random.default_rng(example_seed(token ids, seed))``."""
        check_int("seed", seed)
        ids = context.encoding.input_ids or tuple(range(context.n))
        rng = np.random.default_rng(example_seed(tuple(ids), seed))
        scores = torch.from_numpy(rng.random(context.n)).float()
        return context.result(
            self.name,
            scores,
            "uniform random in [0, 1), seeded by the input (a baseline)",
            reads_output=False,
            settings={"seed": int(seed)},
        )


@register_method
class PositionScores(Method):
    """Scores that follow the token's position."""

    name = "position"
    description = "baseline: the token's position, the first token highest (or the last, by option)"
    paper = "a position baseline: what a method scores if it only knows where tokens sit"
    cost = "none (no forward pass)"
    baseline = True
    reads_output = False

    def validate(self, **options: Any) -> None:
        """direction: ``"first-first"`` or ``"last-first"``."""
        check_choice("direction", options.get("direction", "first-first"), Direction)

    def compute(self, context: ExplainContext, *, direction: Direction = "first-first") -> TokenScores:
        """Scores ``[n]``: ``1 − j / (n − 1)`` (``"first-first"``: earlier tokens first) or ``j / (n − 1)``
        (``"last-first"``, recency)."""
        check_choice("direction", direction, Direction)
        n = context.n
        if n < 1:
            raise InvalidInputError("the input has no tokens")
        ramp = torch.arange(n, dtype=torch.float64) / max(n - 1, 1)
        scores = ramp if direction == "last-first" else 1.0 - ramp
        return context.result(
            self.name,
            scores.float(),
            f"token position, {'the last' if direction == 'last-first' else 'the first'} token highest (a baseline)",
            reads_output=False,
            settings={"direction": direction},
        )
