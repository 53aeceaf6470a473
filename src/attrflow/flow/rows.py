"""Rollout and raw attention for chosen output rows, from blocks of attention rows (no ``[L, H, n, n]`` kept).

Row p of rollout is a vector–matrix chain, ``Ã_l[p] = e_p · Ā_l · Ā_{l-1} ··· Ā_0`` (Abnar & Zuidema, ACL 2020,
§3): computed top-down it needs one block of rows of one layer at a time, so memory is ``O(n · block)`` however
long the input. The chains of every reported layer run together, so each layer's rows are computed once. The
rows come from anything with :class:`AttentionRows`'s shape — :class:`attrflow.models.KeyCache` recomputes them
from the queries and keys of one forward pass, :class:`MaterialisedRows` reads a recorded tensor — and the
results equal :func:`attrflow.attention_rollout` and the raw-attention scores of the same attention.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch

from attrflow.errors import InvalidInputError
from attrflow.validation import HeadFusion, Reduction, check_choice, resolve_index, resolve_layers

__all__ = [
    "AttentionRows",
    "MaterialisedRows",
    "attention_row_scores",
    "chain_rows",
    "column_chain",
    "graph_rows",
    "rollout_rows",
    "row_token_scores",
    "sink_share",
]

MatrixRows = Callable[[int, int, int], torch.Tensor]
"""``(layer, start, stop) -> [stop - start, n]``: rows of one layer's token-to-token matrix."""


class AttentionRows(Protocol):
    """Attention probabilities of one input, served a block of rows at a time."""

    @property
    def num_layers(self) -> int: ...

    @property
    def num_heads(self) -> int: ...

    @property
    def n(self) -> int: ...

    @property
    def block_size(self) -> int: ...

    def attention_rows(self, layer: int, start: int, stop: int) -> torch.Tensor:
        """``[H, stop - start, n]``: query rows ``start..stop-1`` of ``layer``, every head."""
        ...


class MaterialisedRows:
    """:class:`AttentionRows` over a recorded ``[L, H, n, n]`` tensor (tests, and inputs short enough to record)."""

    def __init__(self, attentions: torch.Tensor, *, block_size: int = 64) -> None:
        if (
            not isinstance(attentions, torch.Tensor)
            or attentions.dim() != 4
            or attentions.shape[2] != attentions.shape[3]
        ):
            shape = tuple(attentions.shape) if isinstance(attentions, torch.Tensor) else type(attentions).__name__
            raise InvalidInputError(f"attentions must be a tensor [layers, heads, n, n], got {shape}")
        self.attentions = attentions.detach()
        self.num_layers, self.num_heads, self.n, _ = (int(size) for size in attentions.shape)
        self.block_size = max(1, int(block_size))

    def attention_rows(self, layer: int, start: int, stop: int) -> torch.Tensor:
        return self.attentions[layer, :, start:stop]


def _dtype(rows: torch.Tensor) -> torch.dtype:
    return torch.float64 if rows.dtype == torch.float64 else torch.float32


def graph_rows(
    probs: torch.Tensor, start: int, *, residual: bool, head_fusion: HeadFusion, rescale: bool = True
) -> torch.Tensor:
    """Rows ``start..start+b-1`` of the attention graph ``Ā = 0.5·W + 0.5·I`` (or ``W``) from ``[H, b, n]`` rows.

    As :func:`attrflow.attention_rollout` builds it: heads fused by mean, max or min; with ``rescale``, max and min
    rows rescaled to sum to 1 (rows summing to 0 stay 0). float32 (float64 for float64 input).
    """
    probs = probs.to(_dtype(probs))
    if head_fusion == "mean":
        fused = probs.mean(dim=0)
    elif head_fusion == "max":
        fused = probs.amax(dim=0)
    else:
        fused = probs.amin(dim=0)
    block = fused.shape[0]
    if residual:
        fused = 0.5 * fused
        diagonal = torch.arange(block, device=fused.device)
        fused[diagonal, diagonal + start] += 0.5
    if rescale and head_fusion != "mean":
        sums = fused.sum(dim=-1, keepdim=True)
        fused = torch.where(sums > 0, fused / torch.where(sums > 0, sums, 1), fused)
    return fused


def chain_rows(
    matrix_rows: MatrixRows, starts: dict[int, torch.Tensor], *, n: int, block_size: int
) -> dict[int, torch.Tensor]:
    """Vector–matrix chains through the layers, top-down: for each ``layer: V [m, n]`` in ``starts``,
    ``V · M_layer · M_{layer-1} ··· M_0``. All chains share each layer's rows, computed once, block by block.

    Args:
        matrix_rows: rows of each layer's matrix, ``(layer, start, stop) -> [stop - start, n]``.
        starts: the start vectors of the chains, keyed by the layer each chain starts from.
        n: the matrices' size.
        block_size: rows per block.

    Returns:
        ``{layer: [m, n]}`` for each chain.
    """
    active: list[tuple[int, torch.Tensor]] = []
    for layer in range(max(starts, default=-1), -1, -1):
        if layer in starts:
            active.append((layer, starts[layer]))
        stacked = torch.cat([vectors for _, vectors in active])
        result = torch.zeros_like(stacked)
        for begin in range(0, n, block_size):
            end = min(begin + block_size, n)
            weights = stacked[:, begin:end]
            if not bool(weights.any()):
                continue  # e.g. the rows after a causal position, which its chain never reaches
            result += weights @ matrix_rows(layer, begin, end).to(stacked.dtype)
        offset = 0
        for index, (top, vectors) in enumerate(active):
            active[index] = (top, result[offset : offset + len(vectors)])
            offset += len(vectors)
    return dict(active)


def column_chain(
    matrix_rows: MatrixRows, columns: torch.Tensor, layers: Sequence[int], *, n: int, block_size: int
) -> dict[int, torch.Tensor]:
    """Matrix–vector chains bottom-up: ``M_l ··· M_1 · M_0 · columns`` (``[n, m]``) for every l in ``layers``."""
    out: dict[int, torch.Tensor] = {}
    for layer in range(max(layers, default=-1) + 1):
        result = torch.empty_like(columns)
        for begin in range(0, n, block_size):
            end = min(begin + block_size, n)
            result[begin:end] = matrix_rows(layer, begin, end).to(columns.dtype) @ columns
        columns = result
        if layer in layers:
            out[layer] = columns
    return out


def _positions(positions: int | Sequence[int], n: int) -> list[int]:
    items = [positions] if isinstance(positions, (int, np.integer)) else list(positions)
    if not items:
        raise InvalidInputError("positions is empty")
    return [resolve_index("position", p, n) for p in items]


def _exclude_mask(exclude: torch.Tensor | Sequence[bool] | None, n: int) -> torch.Tensor | None:
    if exclude is None:
        return None
    mask = torch.as_tensor(exclude)
    if mask.shape != (n,) or mask.dtype != torch.bool:
        raise InvalidInputError(f"exclude must be a boolean mask of shape ({n},), got {mask.dtype} {tuple(mask.shape)}")
    if bool(mask.all()):
        raise InvalidInputError("exclude masks every token; at least one input token must remain")
    return mask if bool(mask.any()) else None


def _renormalise(rows: torch.Tensor, excluded: torch.Tensor | None) -> torch.Tensor:
    """Zero the excluded columns of ``[..., n]`` rows and rescale each row to sum to 1 (rows summing to 0 stay 0)."""
    if excluded is None:
        return rows
    rows = rows.masked_fill(excluded.to(rows.device), 0.0)
    sums = rows.sum(dim=-1, keepdim=True)
    return torch.where(sums > 0, rows / torch.where(sums > 0, sums, 1), rows)


def rollout_rows(
    attention: AttentionRows,
    *,
    positions: int | Sequence[int] | None = -1,
    weights: torch.Tensor | None = None,
    layers: int | Sequence[int] | None = None,
    residual: bool = True,
    head_fusion: HeadFusion = "mean",
    exclude: torch.Tensor | Sequence[bool] | None = None,
) -> torch.Tensor:
    """Rows of attention rollout at every chosen layer, top-down from rows of attention (Abnar & Zuidema, §3).

    ``Ã_l[p] = e_p · Ā_l ··· Ā_0`` with ``Ā_l = 0.5·W_l + 0.5·I`` (``residual=True``) and ``W_l`` the heads of
    layer l fused, exactly as :func:`attrflow.attention_rollout` (whose ``[l, p]`` rows these equal) but in
    ``O(m · n)`` memory beyond one block of attention rows.

    Args:
        attention: the attention rows (a :class:`attrflow.models.KeyCache`, or :class:`MaterialisedRows`).
        positions: the output positions (negatives count from the end): -1 is the last token, the one a causal
            LM predicts from. Ignored when ``weights`` is given.
        weights: ``[m, n]`` instead of positions: each result row is ``Σ_i weights[k, i] · Ã_l[i]`` (e.g. all
            ``1/n`` for the mean over query rows). With ``exclude``, each ``Ã_l[i]`` is renormalised before the
            sum, which costs one more pass over the layers (bottom-up, for each row's remaining mass).
        layers: the layers to report (0-based, negatives from the end); default all.
        residual: add the identity for the residual connection.
        head_fusion: ``"mean"`` (the paper), ``"max"`` or ``"min"``.
        exclude: boolean ``[n]``: input tokens left out (e.g. a BOS attention sink): their columns become 0 and
            every row is rescaled to sum to 1 over the rest, as in :func:`attrflow.attention_rollout`.

    Returns:
        ``[len(layers), m, n]``: float32 (float64 for float64 attention); the chains run in float64.
    """
    check_choice("head_fusion", head_fusion, HeadFusion)
    n = attention.n
    chosen = resolve_layers(layers, attention.num_layers)
    excluded = _exclude_mask(exclude, n)
    probe = attention.attention_rows(0, 0, 1)
    # the chains are vectors: float64 costs little next to recomputing the rows, and the renormalisation that
    # `exclude` needs divides by what is left of a row, which can be small
    dtype = torch.float64

    def rows(layer: int, start: int, stop: int) -> torch.Tensor:
        block = attention.attention_rows(layer, start, stop)
        return graph_rows(block, start, residual=residual, head_fusion=head_fusion)

    if weights is None:
        if positions is None:
            positions = list(range(n))
        chosen_rows = _positions(positions, n)
        start = torch.zeros(len(chosen_rows), n, dtype=dtype, device=probe.device)
        start[torch.arange(len(chosen_rows)), torch.tensor(chosen_rows)] = 1.0
        starts = {layer: start for layer in chosen}
    else:
        weights = weights.to(device=probe.device, dtype=dtype)
        if weights.dim() != 2 or weights.shape[1] != n:
            raise InvalidInputError(f"weights must be [m, {n}], got {tuple(weights.shape)}")
        starts = {layer: weights for layer in chosen}
        if excluded is not None:
            starts = _excluded_weights(rows, weights, excluded, chosen, n, attention.block_size)
    chains = chain_rows(rows, starts, n=n, block_size=attention.block_size)
    result = torch.stack([chains[layer] for layer in chosen])
    if excluded is not None and weights is not None:
        result = result.masked_fill(excluded.to(result.device), 0.0)
    else:
        result = _renormalise(result, excluded)
    return result.to(_dtype(probe))


def _excluded_weights(
    rows: MatrixRows,
    weights: torch.Tensor,
    excluded: torch.Tensor,
    chosen: Sequence[int],
    n: int,
    block_size: int,
) -> dict[int, torch.Tensor]:
    """Per layer l, ``weights[k, i] / Σ_{j kept} Ã_l[i, j]``: start vectors that renormalise each row before it is
    weighed (0 for rows with nothing left), from one bottom-up chain of two columns (all tokens, the excluded)."""
    columns = torch.stack([torch.ones(n, dtype=weights.dtype), excluded.to(weights.dtype)], dim=1).to(weights.device)
    sums = column_chain(rows, columns, chosen, n=n, block_size=block_size)
    starts: dict[int, torch.Tensor] = {}
    for layer in chosen:
        kept = sums[layer][:, 0] - sums[layer][:, 1]
        scale = torch.where(kept > 0, 1.0 / torch.where(kept > 0, kept, 1), torch.zeros_like(kept))
        starts[layer] = weights * scale[None, :]
    return starts


def attention_row_scores(
    attention: AttentionRows,
    *,
    layers: int | Sequence[int] | None = None,
    position: int = -1,
    reduction: Reduction = "cls",
    head_fusion: HeadFusion = "mean",
    exclude: torch.Tensor | Sequence[bool] | None = None,
) -> torch.Tensor:
    """Raw attention token scores ``[len(layers), n]`` from rows of attention: the head-fused row of ``position``
    (``"cls"``), or the max / mean over every query row (each row renormalised first when ``exclude`` is given).

    Equal to :func:`attrflow.flow.scores.attention_token_scores` with ``method="attention"``; ``"cls"`` computes
    one row per layer.
    """
    check_choice("reduction", reduction, Reduction)
    check_choice("head_fusion", head_fusion, HeadFusion)
    n = attention.n
    chosen = resolve_layers(layers, attention.num_layers)
    excluded = _exclude_mask(exclude, n)
    position = resolve_index("position", position, n)
    out = []
    for layer in chosen:
        if reduction == "cls":
            block = attention.attention_rows(layer, position, position + 1)
            out.append(
                _renormalise(
                    graph_rows(block, position, residual=False, head_fusion=head_fusion, rescale=False), excluded
                )[0]
            )
            continue
        total: torch.Tensor | None = None
        for start in range(0, n, attention.block_size):
            stop = min(start + attention.block_size, n)
            block = attention.attention_rows(layer, start, stop)
            fused = graph_rows(block, start, residual=False, head_fusion=head_fusion, rescale=False)
            fused = _renormalise(fused, excluded)
            part = fused.sum(dim=0) if reduction == "mean" else fused.amax(dim=0)
            total = part if total is None else (total + part if reduction == "mean" else torch.maximum(total, part))
        assert total is not None
        out.append(total / n if reduction == "mean" else total)
    return torch.stack(out).float()


def row_token_scores(
    attention: AttentionRows,
    *,
    method: str,
    layers: int | Sequence[int] | None = None,
    position: int = -1,
    reduction: Reduction = "cls",
    head_fusion: HeadFusion = "mean",
    residual: bool = True,
    exclude: torch.Tensor | Sequence[bool] | None = None,
) -> torch.Tensor:
    """The streamed twin of :func:`attrflow.flow.scores.attention_token_scores` for ``"attention"`` and ``"rollout"``:
    float32 ``[len(layers), n]``.

    Raises:
        InvalidInputError: ``method="rollout"`` with ``reduction="max"`` (the max over every row of a rollout
            matrix needs the whole matrix; ``"cls"`` and ``"mean"`` are chains), or an unknown method.
    """
    if method == "attention":
        return attention_row_scores(
            attention, layers=layers, position=position, reduction=reduction, head_fusion=head_fusion, exclude=exclude
        )
    if method != "rollout":
        raise InvalidInputError(f"row scores exist for 'attention' and 'rollout', not {method!r}")
    check_choice("reduction", reduction, Reduction)
    if reduction == "max":
        raise InvalidInputError(
            "rollout with reduction='max' needs every row of every rollout matrix; from attention rows only "
            "reduction='cls' (one row) and 'mean' (a weighted row) can be computed"
        )
    n = attention.n
    weights = None
    if reduction == "mean":
        weights = torch.full((1, n), 1.0 / n, dtype=torch.float64)
    rolled = rollout_rows(
        attention,
        positions=position,
        weights=weights,
        layers=layers,
        residual=residual,
        head_fusion=head_fusion,
        exclude=exclude,
    )
    return rolled[:, 0, :].float()


def sink_share(
    attention: AttentionRows,
    *,
    sink: int = 0,
    rows: int | Sequence[int] | None = None,
    layers: int | Sequence[int] | None = None,
) -> torch.Tensor:
    """The share of attention mass on one token (an attention sink: the first token / BOS), per layer and head.

    Args:
        attention: the attention rows.
        sink: the token (0: the first).
        rows: the query rows averaged over; default every row except the sink's own (whose attention to itself
            says nothing about sinks: a causal model's first row is all on itself).
        layers: the layers (default all).

    Returns:
        float32 ``[len(layers), H]``: the mean over those rows of the attention each head pays to ``sink``.
    """
    n = attention.n
    sink = resolve_index("sink", sink, n)
    chosen = resolve_layers(layers, attention.num_layers)
    read = [i for i in range(n) if i != sink] if rows is None else _positions(rows, n)
    if not read:
        return torch.zeros(len(chosen), attention.num_heads)
    wanted = torch.zeros(n, dtype=torch.bool)
    wanted[read] = True
    out = []
    for layer in chosen:
        total = torch.zeros(attention.num_heads, dtype=torch.float64)
        for start in range(0, n, attention.block_size):
            stop = min(start + attention.block_size, n)
            inside = wanted[start:stop]
            if not bool(inside.any()):
                continue
            block = attention.attention_rows(layer, start, stop)[:, :, sink].double().cpu()
            total += block[:, inside].sum(dim=1)
        out.append(total / len(read))
    return torch.stack(out).float()
