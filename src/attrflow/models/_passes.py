"""What the model's forward passes give back: frozen values, not the mutable state that produced them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from attrflow.models._encoding import Encoding


@dataclass(frozen=True, eq=False)
class Recording:
    """One clean forward pass of one input, with every layer's attention probabilities.

    Attributes:
        encoding: the input.
        logits: ``[C]`` the model's output at the explained position (class logits, or next-token logits).
        attentions: float32 ``[L, H, n, n]`` over the n real positions (row = query, column = key), on the CPU
            (float16/bfloat16 for models in those types: the probabilities as the model used them).
    """

    encoding: Encoding
    logits: torch.Tensor
    attentions: torch.Tensor

    @property
    def probabilities(self) -> torch.Tensor:
        """``[C]`` softmax of the logits (float64)."""
        return torch.softmax(self.logits.double(), dim=-1)

    @property
    def predicted(self) -> int:
        """The predicted class (or next-token id)."""
        return int(self.logits.argmax())


@dataclass(frozen=True, eq=False)
class ForwardPass:
    """One forward pass of one input, its tensors still live: on the model's device, in its dtype, and the logits
    part of the autograd graph when gradients were enabled (e.g. to differentiate by a head gate).

    Attributes:
        logits: ``[C]`` the model's output at the explained position.
        attentions: ``[L, H, n, n]`` every layer's attention probabilities over the n real positions (row = query,
            column = key), detached.
    """

    logits: torch.Tensor
    attentions: torch.Tensor


@dataclass(frozen=True, eq=False)
class BranchPass:
    """One branching pass (:meth:`Model.run_branches`): a clean row and, per site, rows with scaled attention.

    All attention tensors are over the N positions the model ran on (padding included, if the encoding has any;
    ``encoding.positions`` selects the real ones), as the gradients the attribution multiplies them with.

    Attributes:
        logits: ``[1 + Σ R, C]``: row 0 clean, then the R rows of each branched site in ascending site order.
        row_starts: ``{site: first row}`` of each site's rows in ``logits``.
        leaves: with ``require_grad``, ``{site: [grad_rows, H, N, N]}`` the grad-requiring scaled probabilities
            ``alpha · A`` of the first ``grad_rows`` rows of that site.
        clean_row_leaves: with ``require_grad`` and ``clean_leaves``, ``{site: [1, H, N, N]}`` row 0's
            probabilities at every site, inside the graph: one backward gives ∂F/∂A at α = 1 for every layer.
        attentions: with ``record``, ``[L, H, N, N]`` every site's clean (row 0) probabilities, detached; else None.
        bases: with ``stream``, ``{site: [H, N, N]}`` the clean probabilities A of each branched site, detached
            (the other sites ran fused and kept none).
    """

    logits: torch.Tensor
    row_starts: Mapping[int, int]
    leaves: Mapping[int, torch.Tensor]
    clean_row_leaves: Mapping[int, torch.Tensor]
    attentions: torch.Tensor | None = None
    bases: Mapping[int, torch.Tensor] = field(default_factory=dict)
