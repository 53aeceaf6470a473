"""Self-attention attribution in bounded memory: the engine behind ``attrflow.attribute(..., keep=...)``.

The same integral as :mod:`attrflow.methods.attribution` (``Attr(A_l) = A_l ⊙ ∫₀¹ ∂F(α·A_l)/∂A_l dα``), organised
so that nothing of size L·H·n² ever exists:

- Passes are streaming branching passes (:meth:`Model.run_branches` with ``stream=True``): the sites without a
  branch run through the fused attention kernel and keep no ``[H, N, N]``, the blocks without a branch are
  checkpointed (recomputed in the backward: each keeps its input, not its activations), the parameters stop
  requiring grad, and a causal LM's head computes only the logits F reads.
- Each interpolation row's gradient ``G`` at site l is reduced the moment the backward returns it: ``P = A ⊙ G``
  (float32 or wider) gives the token totals ``Σ_h Σ_i P[h, i, j]`` and head totals ``Σ_i Σ_j P[h, i, j]`` (float64),
  stored per α. Both are linear in P, so the integral is the weighted sum of the stored reductions, and refining a
  layer (``steps="auto"``) reuses every α already reduced. With ``Keep(top_k=k)`` the weighted P of the current
  rule also accumulate in one ``[H, n, n]`` buffer per layer; a layer's buffer is closed (top-k taken, buffer freed)
  as soon as its last row is in, so at most two are alive.
- α = 1 costs no row: the clean row 0 of a pass is differentiated at the pass's branched sites (``clean_leaves``).
- Rows are packed into passes, layer by layer, while the estimated memory of a pass stays within the budget (the
  lower the branch point, the more layers each row crosses, the fewer rows per pass). Results never depend on it.

Completeness stays exact bookkeeping: ``gap_l = Σ_j tokens_l[j] − (F(A) − F(0))`` needs sums only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from attrflow.errors import InvalidInputError
from attrflow.memory import available_memory, format_bytes
from attrflow.methods.attribution import Keep, Outcome, first_prediction, model_sizes
from attrflow.methods.quadrature import quadrature
from attrflow.methods.targets import Target
from attrflow.models import Encoding, Model

if TYPE_CHECKING:
    from attrflow.methods.attribution import AttentionAttributor

logger = logging.getLogger(__name__)

__all__ = ["KEPT_BUDGET", "integrate_kept", "kept_pass_memory"]

# the estimated memory one streaming pass may take; at least one interpolation row runs (results never depend on it)
KEPT_BUDGET = 1024**3


@dataclass(frozen=True)
class _Row:
    layer: int
    alpha: float
    grad: bool


def _key(alpha: float) -> float:
    return round(alpha, 12)


def kept_pass_memory(
    model: Model, encoding: Encoding, rows: int, *, lowest: int = 0, top_k: bool = False, reads: int = 1
) -> int:
    """Estimated peak bytes of one streaming pass: row 0 and ``rows`` interpolation rows branching at ``lowest``.

    Every row crosses L − lowest layers; the blocks without a branch are checkpointed and keep about 5·N·d numbers
    each for the backward (their input and what the recomputation needs around it), and the branched block and
    the one being recomputed hold their activations, about N·(8d + 6f) numbers each (norms, the fused
    attention's q, k, v and output, the MLP's intermediates; f the MLP width); the branched site holds its ``[H, N, N]``
    scores and probabilities, about 3 model numbers and one float32 per entry and row, the interpolation rows
    also their gradient and float32 product, the clean probabilities one more (and the top-k buffer two float32);
    a causal LM's head keeps the logits of the ``reads`` positions F reads (and their gradient). Calibrated on
    Qwen2-0.5B's shape (float32, RSS of a fresh process): within 15 % at n = 512 to 2048, at the top layer and at
    layer 0; a process that ran before reuses freed memory and peaks lower.
    """
    hidden, inner = model_sizes(model)
    n = encoding.padded_length
    entries = model.num_heads * n * n
    size = next(model.model.parameters()).element_size()
    above = model.num_layers - lowest
    activations = (above * 5 * hidden + 2 * (8 * hidden + 6 * inner)) * n * size
    per_row = activations + entries * (3 * size + 4) + 12 * reads * model.num_outputs
    site = rows * entries * (size + 4) + entries * (size + (8 if top_k else 0))
    return int((1 + rows) * per_row + site)


def integrate_kept(
    attributor: AttentionAttributor, encoding: Encoding, objective: Target, chosen: tuple[int, ...], keep: Keep
) -> Outcome:
    """Integrate the selected layers keeping only the reductions ``keep`` asks for (see the module docstring)."""
    return _KeptIntegration(attributor, encoding, objective, keep).run(chosen)


class _KeptIntegration:
    """The state of one kept integration: per layer and α the reduced products, F, F(0), open top-k buffers."""

    def __init__(self, attributor: AttentionAttributor, encoding: Encoding, objective: Target, keep: Keep) -> None:
        self.attributor = attributor
        self.model = attributor.model
        self.encoding = encoding
        self.objective = objective
        self.top_k = min(keep.top_k, encoding.length * encoding.length)
        self.positions = encoding.positions.to(self.model.device)
        self.padded = encoding.padded_length != encoding.length
        self.reduced: dict[int, dict[float, tuple[torch.Tensor, torch.Tensor]]] = {}
        self.f0: dict[int, float] = {}
        self.value = float("nan")
        self.predicted = -1
        self.buffers: dict[int, torch.Tensor] = {}
        self.buffered: dict[int, set[float]] = {}
        self.tokens: dict[int, torch.Tensor] = {}
        self.heads: dict[int, torch.Tensor] = {}
        self.tops: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.passes = 0
        self.rows_run = 0
        self.largest = 0

    # ------------------------------------------------------------------ the rounds
    def run(self, chosen: tuple[int, ...]) -> Outcome:
        attributor = self.attributor
        steps_of = dict.fromkeys(chosen, attributor.initial_steps)
        pending = list(chosen)
        while pending:
            rules = {layer: quadrature(attributor.rule, steps_of[layer]) for layer in pending}
            weights = {
                layer: {_key(float(a)): float(w) for a, w in zip(*rules[layer], strict=True)} for layer in pending
            }
            refine = []
            for layer in self._run_rows(weights):
                gap = float(self._integral(layer, weights[layer])[0].sum()) - (self.value - self.f0[layer])
                if attributor.refines(gap, steps_of[layer]):
                    steps_of[layer] *= 2
                    refine.append(layer)
                    self.buffers.pop(layer, None)
                    self.buffered.pop(layer, None)
                else:
                    self._close(layer, weights[layer])
            pending = refine
        return self._outcome(chosen, steps_of)

    def _run_rows(self, weights: dict[int, dict[float, float]]) -> Iterator[int]:
        """Run every row the layers' rules still need, in passes; yield each layer once its rows are all in."""
        rows = [row for layer in sorted(weights) for row in self._needed(layer, weights[layer])]
        ends = {layer for layer, table in weights.items() if 1.0 in table and self._missing(layer, 1.0)}
        chunks = list(self._chunks(rows, ends))
        last = {row.layer: index for index, chunk in enumerate(chunks) for row in chunk}
        yield from (layer for layer in sorted(weights) if layer not in last)
        for index, chunk in enumerate(chunks):
            self._run_pass(chunk, ends, weights)
            yield from (layer for layer in sorted(weights) if last.get(layer) == index)

    def _needed(self, layer: int, table: dict[float, float]) -> list[_Row]:
        """The layer's rows this round: α's whose reduction (or top-k contribution) is missing, grads first, then
        the α = 0 row that only gives F(0). α = 1 comes from row 0 (see ``ends``)."""
        grads = [_Row(layer, alpha, True) for alpha in sorted(table) if alpha != 1.0 and self._missing(layer, alpha)]
        if layer not in self.f0 and 0.0 not in table:
            return [*grads, _Row(layer, 0.0, False)]
        return grads

    def _missing(self, layer: int, alpha: float) -> bool:
        if alpha not in self.reduced.get(layer, {}):
            return True
        return self.top_k > 0 and alpha not in self.buffered.get(layer, set())

    def _chunks(self, rows: list[_Row], ends: set[int]) -> Iterator[list[_Row]]:
        """Rows packed into passes in order while a pass's estimated memory stays within the budget."""
        limit = self.attributor.batch_size
        chunk: list[_Row] = []
        for row in rows:
            if chunk and (
                (limit is not None and len(chunk) >= limit)
                or self._pass_memory(len(chunk) + 1, chunk[0].layer) > KEPT_BUDGET
            ):
                yield self._sized(chunk)
                chunk = []
            if not chunk:
                self._check_one_row(row.layer)
            chunk.append(row)
        if chunk:
            yield self._sized(chunk)
        # layers that need only α = 1 (every other point reduced): one pass of row 0 branched there
        covered = {row.layer for row in rows}
        for layer in sorted(ends - covered):
            yield [_Row(layer, 1.0, False)]

    def _sized(self, chunk: list[_Row]) -> list[_Row]:
        self.largest = max(self.largest, self._pass_memory(len(chunk), chunk[0].layer))
        return chunk

    def _pass_memory(self, rows: int, lowest: int) -> int:
        reads = len(self.objective.positions or (0,))
        return kept_pass_memory(self.model, self.encoding, rows, lowest=lowest, top_k=self.top_k > 0, reads=reads)

    def _check_one_row(self, lowest: int) -> None:
        needed = self._pass_memory(1, lowest)
        available = available_memory(self.model.device)
        if available is not None and needed > available:
            site = self._pass_memory(1, self.model.num_layers - 1)
            raise InvalidInputError(
                f"one interpolation row at n={self.encoding.length} branching at layer {lowest} needs about "
                f"{format_bytes(needed)} (the attributed layer's [H, n, n] for it and the clean row: about "
                f"{format_bytes(site)}; the layers above it: the rest) but about {format_bytes(available)} is "
                "available; shorten the input, attribute higher layers= only, or free memory"
            )

    # ------------------------------------------------------------------ one pass
    def _run_pass(self, chunk: list[_Row], ends: set[int], weights: dict[int, dict[float, float]]) -> None:
        """One streaming branching pass over ``chunk``; every gradient is reduced as soon as it exists."""
        model = self.model
        by_layer: dict[int, list[_Row]] = {}
        for row in chunk:
            # a grad-less α = 1 row is the marker of a layer that needs only row 0's gradient (no row of its own)
            rows = by_layer.setdefault(row.layer, [])
            if row.grad or row.alpha != 1.0:
                rows.append(row)
        branches = {
            layer: (
                torch.tensor([row.alpha for row in rows], dtype=torch.float64, device=model.device),
                sum(row.grad for row in rows),
            )
            for layer, rows in by_layer.items()
        }
        # engaged around the backward too: the checkpointed blocks recompute with attrflow's attention in eval mode
        with torch.enable_grad(), model.engaged():
            branched = model.run_branches(
                self.encoding,
                branches,
                require_grad=True,
                clean_leaves=True,
                stream=True,
                positions=self.objective.positions,
            )
            if self.passes == 0:
                self.predicted = first_prediction(branched.logits[0].detach())
                self.objective = self.objective.resolved(self.predicted)
                self.value = float(self.objective.values(branched.logits[:1].detach())[0])
            values = self.objective.values(branched.logits)
            wanted: list[tuple[int, bool, torch.Tensor]] = []
            for layer in by_layer:
                if layer in branched.leaves:
                    wanted.append((layer, False, branched.leaves[layer]))
                if layer in ends and self._missing(layer, 1.0):
                    wanted.append((layer, True, branched.clean_row_leaves[layer]))
            grads = torch.autograd.grad(values.sum(), [t for _, _, t in wanted]) if wanted else ()
        detached = values.detach()
        for layer, rows in by_layer.items():
            for offset, row in enumerate(rows):
                if row.alpha == 0.0:
                    self.f0[layer] = float(detached[branched.row_starts[layer] + offset])
        for (layer, end, _), grad in zip(wanted, grads, strict=True):
            base = branched.bases[layer]
            if end:
                self._reduce(layer, 1.0, grad[0], base, weights[layer])
                continue
            for offset, row in enumerate(row for row in by_layer[layer] if row.grad):
                self._reduce(layer, row.alpha, grad[offset], base, weights[layer])
        self.passes += 1
        self.rows_run += len(chunk)
        logger.debug("kept attribution: pass %d, %d rows, layers %s", self.passes, len(chunk), sorted(by_layer))

    def _reduce(
        self, layer: int, alpha: float, grad: torch.Tensor, base: torch.Tensor, table: dict[float, float]
    ) -> None:
        """Reduce ``A ⊙ ∂F/∂A`` at one α to token and head totals (and add it to the layer's top-k buffer)."""
        wide = torch.promote_types(grad.dtype, torch.float32)
        product = base.to(wide) * grad.to(wide)
        if self.padded:
            product = product.index_select(-1, self.positions).index_select(-2, self.positions)
        tokens = product.sum(dim=(0, 1), dtype=torch.float64)
        heads = product.sum(dim=(1, 2), dtype=torch.float64)
        self.reduced.setdefault(layer, {})[_key(alpha)] = (tokens, heads)
        if self.top_k:
            buffer = self.buffers.get(layer)
            if buffer is None:
                buffer = self.buffers[layer] = torch.zeros_like(product)
            buffer.add_(product, alpha=table[_key(alpha)])
            self.buffered.setdefault(layer, set()).add(_key(alpha))

    # ------------------------------------------------------------------ results
    def _integral(self, layer: int, table: dict[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens [n], heads [H])`` float64: the rule's weighted sum of the reduced products."""
        reduced = self.reduced[layer]
        tokens = sum(weight * reduced[alpha][0] for alpha, weight in table.items())
        heads = sum(weight * reduced[alpha][1] for alpha, weight in table.items())
        assert isinstance(tokens, torch.Tensor) and isinstance(heads, torch.Tensor)
        return tokens, heads

    def _close(self, layer: int, table: dict[float, float]) -> None:
        """Keep the layer's integral (and its top-k), free its buffer."""
        tokens, heads = self._integral(layer, table)
        self.tokens[layer], self.heads[layer] = tokens.cpu(), heads.cpu()
        buffer = self.buffers.pop(layer, None)
        self.buffered.pop(layer, None)
        if buffer is None:
            return
        n = buffer.shape[-1]
        values, index = torch.topk(buffer.flatten(1), self.top_k, dim=-1)
        indices = torch.stack([index // n, index % n], dim=-1)
        rest = heads - values.double().sum(dim=-1)
        self.tops[layer] = (values.float().cpu(), indices.cpu(), rest.float().cpu())

    def _outcome(self, chosen: tuple[int, ...], steps_of: dict[int, int]) -> Outcome:
        tops = [self.tops[layer] for layer in chosen] if self.top_k else []
        return Outcome(
            objective=self.objective,
            predicted=self.predicted,
            value=self.value,
            baseline={layer: self.f0[layer] for layer in chosen},
            steps_of=steps_of,
            token_totals=torch.stack([self.tokens[layer] for layer in chosen]),
            head_totals=torch.stack([self.heads[layer] for layer in chosen]),
            top_values=torch.stack([t[0] for t in tops]) if tops else None,
            top_indices=torch.stack([t[1] for t in tops]) if tops else None,
            top_rest=torch.stack([t[2] for t in tops]) if tops else None,
            settings={"passes": self.passes, "rows": self.rows_run, "largest_pass_estimate": self.largest},
        )
