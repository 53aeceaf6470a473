"""AtMan (Deiseroth, Deb, Weinbach, Brack, Schramowski, Kersting, "ATMAN: Understanding Transformer Predictions
Through Memory Efficient Attention Manipulation", NeurIPS 2023) as token scores.

The variant: single-token suppression (the paper's §3.1; the conceptual suppression of correlated tokens, §3.2, is
not applied). For each token j, every layer's and head's pre-softmax attention scores towards j are multiplied by
``factor`` (the official code's ``suppression_factor`` = 0.1, the paper's ``1 − f`` with f = 0.9), and the score is
the change in the target's cross-entropy, ``log p(target) − log p(target | j suppressed)``: positive when suppressing
j lowers the target. Forward passes only: the clean input and the n suppressions run as n + 1 rows of one batch.
"""

from __future__ import annotations

from typing import Any

import torch

from attrflow.methods.context import ExplainContext
from attrflow.methods.registry import Method, register_method
from attrflow.results import TokenScores
from attrflow.validation import check_fraction, check_optional_int


@register_method
class AtMan(Method):
    """Deiseroth et al. 2023."""

    name = "atman"
    description = (
        "AtMan: drop in log p(target) when every layer's pre-softmax attention towards token j is scaled by 0.1"
    )
    paper = "Deiseroth et al., ATMAN: Understanding Transformer Predictions Through Memory Efficient Attention Manipulation, NeurIPS 2023"
    signed = True
    cost = "n + 1 forwards, batched"

    def validate(self, **options: Any) -> None:
        """factor in [0, 1]; batch_size None or >= 1."""
        check_fraction("factor", options.get("factor", 0.1))
        check_optional_int("batch_size", options.get("batch_size"), minimum=1)

    def compute(self, context: ExplainContext, *, factor: float = 0.1, batch_size: int | None = None) -> TokenScores:
        """AtMan scores ``[n]`` (signed); ``batch_size`` (rows per forward pass) never changes them."""
        context.require_output_position(self.name)
        self.validate(factor=factor, batch_size=batch_size)
        model, encoding = context.model, context.encoding
        positions = [-1, *range(context.n)]
        rows = batch_size or len(positions)
        logits = torch.cat(
            [
                model.suppress_keys(encoding, positions[start : start + rows], factor=factor)
                for start in range(0, len(positions), rows)
            ]
        )
        log_probs = torch.log_softmax(logits.double(), dim=-1)[:, context.target]
        return context.result(
            self.name,
            (log_probs[0] - log_probs[1:]).cpu(),
            f"log p(target) − log p(target) with every layer's pre-softmax scores towards token j × {factor:g} (signed)",
            settings={"factor": float(factor)},
        )
