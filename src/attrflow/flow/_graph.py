"""The attention graph of Abnar & Zuidema (ACL 2020, §2): input checks, head fusion and the residual.

Shared by rollout and flow: both turn attention probabilities ``[L, H, n, n]`` into one row-stochastic matrix
per layer, ``Ā_l = 0.5·W_l + 0.5·I`` with ``W_l`` the heads fused (mean in the paper).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
import torch

from attrflow.errors import InvalidInputError

HeadFusion = Literal["mean", "max", "min"]
AttentionInput = Any  # torch.Tensor | np.ndarray | an object with an ``.attentions`` tensor
ExcludeSpec = Any  # None | "special" | bool mask [n] (sequence, numpy array or tensor)

# Attention rows are probabilities summing to 1; rounding moves the sum a little, more in half precision.
_ROW_SUM_TOLERANCE = 1e-3
_HALF_ROW_SUM_TOLERANCE = 2e-2
_HALF = (torch.float16, torch.bfloat16)


def as_attention_tensor(attentions: AttentionInput) -> tuple[torch.Tensor, torch.dtype]:
    """The attention probabilities ``[L, H, n, n]`` as a tensor (not copied), and the dtype results should have.

    Values are checked layer by layer in :func:`attention_graph`, which converts one layer at a time to float64
    so that memory stays at one layer's worth beyond the input.

    Raises:
        InvalidInputError: not a tensor, array or result with ``.attentions``; not 4-D ``[L, H, n, n]`` with
            square matrices; empty.
    """
    source = getattr(attentions, "attentions", attentions)
    if isinstance(source, np.ndarray):
        if np.iscomplexobj(source):
            raise InvalidInputError(
                f"attentions must hold real probabilities, got numpy dtype {source.dtype} (the imaginary part would "
                "be dropped)"
            )
        if not (np.issubdtype(source.dtype, np.floating) or np.issubdtype(source.dtype, np.integer)):
            raise InvalidInputError(f"attentions must hold numbers, got numpy dtype {source.dtype}")
        source = torch.from_numpy(source)
    if not isinstance(source, torch.Tensor):
        raise InvalidInputError(
            "attentions must be a torch tensor or numpy array [layers, heads, n, n], or a result with an "
            f"`.attentions` tensor (AttentionAttribution, RecordedAttention); got {type(attentions).__name__}"
        )
    if source.is_complex() or source.dtype == torch.bool:
        raise InvalidInputError(
            f"attentions must hold real probabilities, got dtype {source.dtype}"
            + (" (the imaginary part would be dropped)" if source.is_complex() else "")
        )
    if source.dim() != 4 or source.shape[2] != source.shape[3]:
        raise InvalidInputError(
            f"attentions must be [layers, heads, n, n] with square n×n matrices, got shape {tuple(source.shape)}; "
            "add a head axis (e.g. `a.unsqueeze(1)`) for already fused [layers, n, n] attention"
        )
    if source.numel() == 0:
        raise InvalidInputError(f"attentions must have at least one layer, head and token, got {tuple(source.shape)}")
    return source.detach(), torch.float64 if source.dtype == torch.float64 else torch.float32


def layer_probabilities(attentions: torch.Tensor, layer: int, *, check_rows: bool = True) -> np.ndarray:
    """One layer's attention as float64 ``[H, n, n]``, checked to be probabilities.

    Args:
        attentions: ``[L, H, n, n]``.
        layer: which layer.
        check_rows: require every row to sum to 1 (within rounding: 1e-3, 2e-2 for float16/bfloat16 input).
            False accepts any non-negative rows summing to at most 1, e.g. the attention of pruned heads or masked
            interactions, which sum to less; they are used as they are.

    Raises:
        InvalidInputError: non-finite or negative values, a row summing to more than 1 (scores before the softmax
            rather than probabilities), or with ``check_rows`` a row that does not sum to 1.
    """
    array = attentions[layer].to(device="cpu", dtype=torch.float64).numpy()
    if not np.isfinite(array).all():
        raise InvalidInputError(f"attentions of layer {layer} contain NaN or infinite values")
    if (array < 0).any():
        raise InvalidInputError(
            f"attention probabilities cannot be negative (layer {layer} has {array.min():.3g}); pass the "
            "post-softmax probabilities, not scores"
        )
    tolerance = _HALF_ROW_SUM_TOLERANCE if attentions.dtype in _HALF else _ROW_SUM_TOLERANCE
    sums = array.sum(axis=-1)
    largest = float(sums.max())
    if largest > 1.0 + max(tolerance, 1e-2):
        raise InvalidInputError(
            f"attention rows must sum to at most 1 (a row of layer {layer} sums to {largest:.4g}); pass "
            "post-softmax probabilities"
        )
    off = np.abs(sums - 1.0)
    if check_rows and float(off.max()) > tolerance:
        head, row = (int(i) for i in np.unravel_index(int(off.argmax()), off.shape))
        raise InvalidInputError(
            f"attention rows must sum to 1: row {row} of head {head} in layer {layer} sums to "
            f"{float(sums[head, row]):.4g}. Pass post-softmax probabilities; rows of pruned heads or masked "
            "interactions sum to less, and check_rows=False uses such rows as they are"
        )
    return array


def check_residual(residual: object) -> bool:
    """``residual`` if it is a bool (``"no"`` or ``0.5`` would silently read as True)."""
    if not isinstance(residual, (bool, np.bool_)):
        raise InvalidInputError(f"residual must be True or False, got {residual!r}")
    return bool(residual)


def check_choice(name: str, value: object, choices: Any) -> None:
    """Raise a clear :class:`InvalidInputError` when ``value`` is not one of the ``Literal`` ``choices``."""
    allowed = get_args(choices)
    if value not in allowed:
        raise InvalidInputError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def resolve_index(name: str, index: object, size: int, what: str) -> int:
    """A Python-style index (negatives count from the end) checked against ``size``."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise InvalidInputError(f"{name} must be an integer, got {index!r}")
    if not -size <= index < size:
        raise InvalidInputError(f"{name} {index} is out of range for {size} {what} (use {-size}..{size - 1})")
    return int(index) % size


def resolve_positions(positions: int | Sequence[int] | None, n: int) -> np.ndarray:
    """Output positions as non-negative indices; ``None`` means all ``n``."""
    if positions is None:
        return np.arange(n)
    if isinstance(positions, torch.Tensor | np.ndarray):
        positions = positions.tolist()
    items = [positions] if isinstance(positions, int | np.integer) else list(positions)
    if not items:
        raise InvalidInputError("positions is empty; pass None for every position")
    return np.array([resolve_index("position", p, n, "tokens") for p in items], dtype=np.int64)


def resolve_exclude(exclude: ExcludeSpec, attentions: AttentionInput, n: int) -> np.ndarray:
    """Boolean ``[n]`` mask of input tokens to exclude; ``"special"`` takes the input's ``special_mask``."""
    if exclude is None:
        return np.zeros(n, dtype=bool)
    if isinstance(exclude, str):
        if exclude != "special":
            raise InvalidInputError(f"exclude must be None, 'special' or a boolean mask of {n} tokens; got {exclude!r}")
        special = getattr(attentions, "special_mask", None)
        if special is None or len(special) == 0:
            raise InvalidInputError(
                "exclude='special' needs an input with a `special_mask` (a recorded or attributed result); "
                "pass a boolean mask instead"
            )
        exclude = special
    if isinstance(exclude, torch.Tensor):
        exclude = exclude.detach().cpu().numpy()
    mask = np.asarray(exclude)
    if mask.shape != (n,) or mask.dtype != bool:
        raise InvalidInputError(
            f"exclude must be a boolean mask of shape ({n},) (True = excluded), got dtype {mask.dtype}, shape {mask.shape}"
        )
    if mask.all():
        raise InvalidInputError("exclude masks every token; at least one input token must remain")
    return mask


def fuse_heads(attentions: np.ndarray, head_fusion: HeadFusion) -> np.ndarray:
    """``W``: the heads of one layer fused by mean, max or min, ``[H, n, n] -> [n, n]``."""
    fused: np.ndarray
    if head_fusion == "mean":
        fused = attentions.mean(axis=0)
    elif head_fusion == "max":
        fused = attentions.max(axis=0)
    else:
        fused = attentions.min(axis=0)
    return fused


def add_residual(weights: np.ndarray, *, residual: bool, renormalise: bool) -> np.ndarray:
    """``Ā = 0.5·W + 0.5·I`` (or ``W``), rows optionally rescaled to sum to 1 (rows summing to 0 stay 0)."""
    n = weights.shape[-1]
    graph = 0.5 * weights + 0.5 * np.eye(n) if residual else weights.copy()
    if renormalise:
        sums = graph.sum(axis=-1, keepdims=True)
        np.divide(graph, sums, out=graph, where=sums > 0)
    return graph


def attention_graph(
    attentions: torch.Tensor, *, residual: bool, head_fusion: HeadFusion, head: int | None, check_rows: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The graph's matrices: ``(Ā, top)``, both float64 ``[L, n, n]``, built one layer at a time.

    ``Ā_l`` fuses the heads of layer l; ``top_l`` is the matrix used where layer l is the *top* layer of an
    analysis: ``Ā_l`` itself, or for per-head analysis (Abnar & Zuidema, appendix A.1) head ``head`` of layer
    l with the residual, ``0.5·A_{l,h} + 0.5·I``. Max and min fusion do not keep rows stochastic, so their rows are
    rescaled to sum to 1 after the residual, as in the common ViT implementations; mean fusion is the paper's
    formula unchanged.

    Raises:
        InvalidInputError: ``residual`` is not a bool, or a layer is not probabilities (see
            :func:`layer_probabilities`; ``check_rows`` goes there).
    """
    residual = check_residual(residual)
    if not isinstance(check_rows, (bool, np.bool_)):
        raise InvalidInputError(f"check_rows must be True or False, got {check_rows!r}")
    num_layers, _, n, _ = attentions.shape
    graph = np.empty((num_layers, n, n))
    tops = graph if head is None else np.empty_like(graph)
    for layer in range(num_layers):
        probabilities = layer_probabilities(attentions, layer, check_rows=bool(check_rows))
        fused = fuse_heads(probabilities, head_fusion)
        graph[layer] = add_residual(fused, residual=residual, renormalise=head_fusion != "mean")
        if head is not None:
            tops[layer] = add_residual(probabilities[head], residual=residual, renormalise=False)
    return graph, tops
