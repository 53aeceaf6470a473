"""Context mixing: per-layer token-to-token contribution matrices beyond attention weights, as pure tensor maths.

Four measures of how much input token j of layer l contributes to output token i of that layer, each written down
exactly as its official code computes it (``shared/MIXING.md`` of the project: file and line references):

- ``attention-norm`` (Kobayashi et al., EMNLP 2020): ``‖Σ_h α^h_ij f^h(x_j)‖₂``;
- ``globenc`` (Modarressi et al., NAACL 2022): the same vectors with the residual and both LayerNorms' scaling;
- ``alti`` (Ferrando et al., EMNLP 2022): the L1 proximity of each summand to the LayerNorm's output, clipped at 0
  and normalised per row;
- ``value-zeroing`` (Mohebbi et al., EACL 2023): the cosine distance between the layer's output and its output with
  token j's value vectors zeroed (the reruns happen in :mod:`attrflow.models`; here only the distance).

Their aggregation over layers is the official one for all four: ``A₁ = C₁``, ``A_l = C_l·A_{l−1}`` — no identity
(the residual is inside C where a measure has it) and no renormalisation (:func:`mixing_rollout`).

Pre-norm blocks (GPT-2, Llama, RoBERTa-PreLayerNorm) follow Ferrando et al., ACL 2023 ("Explaining how transformers
use context to build predictions", §3 and their code): the normalisation in front of the attention is a function of
each token alone, so it stays inside f(x_j) (the value vectors are those of the normalised x_j, bias included); the
residual adds x_i unnormalised, and no normalisation sits between the block input and ``y_i = x_i + attention_i``.
So ``T_ij = R_ij = Σ_h α^h_ij f^h(x_j) + [i = j]·x_i``, ``y_i = Σ_j T_ij + b_O``; ALTI reads its L1 proximity to
``y_i``, GlobEnc has no normalisation left to apply and is ``‖R_ij‖₂`` (the FFN is left out, as GlobEnc leaves it
out). No final norm: layer l's output is the block's own.

No model access happens here; :class:`LayerTensors` holds what one layer of one input contributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch

__all__ = [
    "ALTI_EPS",
    "NORM_METHODS",
    "LayerTensors",
    "Layout",
    "MixingMethod",
    "Norm",
    "alti",
    "attention_norm",
    "check_method",
    "cosine_distances",
    "globenc",
    "mixing_matrix",
    "mixing_rollout",
    "normalise_rows",
]

MixingMethod = Literal["attention-norm", "globenc", "alti", "value-zeroing"]
"""The four context-mixing measures."""

NORM_METHODS: tuple[MixingMethod, ...] = ("attention-norm", "globenc", "alti")
"""The measures computed from a block's algebra (the others rerun the block)."""

Layout = Literal["post-norm", "pre-norm"]
"""Where a block normalises: after each residual addition (BERT) or in front of each sub-block (GPT-2, Llama)."""

ALTI_EPS = 1e-6
"""``torch.nn.functional.pairwise_distance`` adds this to every coordinate of the difference (the official ALTI)."""

_CHUNK_ELEMENTS = 1 << 24  # [rows, n, d] elements ALTI holds at once (float64: 128 MiB)


@dataclass(frozen=True, eq=False)
class Norm:
    """One normalisation of a block, with the input it had at each position.

    Attributes:
        weight: ``γ`` ``[d]``.
        bias: ``β`` ``[d]`` or None (RMSNorm).
        eps: the epsilon added to the variance.
        centered: LayerNorm (subtract the mean; variance about it) or RMSNorm (mean of squares).
        inputs: ``[n, d]`` the normalisation's actual input at each of the n positions.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    eps: float
    centered: bool
    inputs: torch.Tensor

    def center(self, vectors: torch.Tensor) -> torch.Tensor:
        """``v − mean(v)`` over the last dimension (LayerNorm), ``v`` itself (RMSNorm)."""
        return vectors - vectors.mean(dim=-1, keepdim=True) if self.centered else vectors

    def variance(self) -> torch.Tensor:
        """``[n]`` the biased variance of each position's input (RMSNorm: its mean square)."""
        centred = self.center(self.inputs.double())
        return (centred * centred).mean(dim=-1)


@dataclass(frozen=True, eq=False)
class LayerTensors:
    """One layer of one input, as the norm-based measures read it (n real positions, no padding).

    Attributes:
        inputs: ``x`` ``[n, d]``, the block's input.
        attention: ``α`` ``[H, n, n]``, the attention probabilities (row = query).
        values: ``[H_kv, n, d_h]`` the value vectors, value bias included (pre-norm: of the normalised input);
            grouped-query heads: query head h reads key/value head ``h // (H / H_kv)``.
        out_weight: ``W_O`` as ``[H·d_h, d]`` (``y = z W + b``), found by probing the output projection.
        out_bias: ``b_O`` ``[d]``.
        layout: ``"post-norm"`` or ``"pre-norm"``.
        norm1: post-norm: the normalisation of ``x + attention`` (LN1, input ``u``); pre-norm: None.
        norm2: post-norm: the normalisation closing the block (LN2, input ``w``); pre-norm: the one in front of the
            feed-forward network, whose input is ``y = x + attention``.
    """

    inputs: torch.Tensor
    attention: torch.Tensor
    values: torch.Tensor
    out_weight: torch.Tensor
    out_bias: torch.Tensor
    layout: Layout
    norm1: Norm | None
    norm2: Norm | None

    @property
    def n(self) -> int:
        """Number of positions."""
        return int(self.inputs.shape[0])

    def head_outputs(self) -> torch.Tensor:
        """``f^h(x_j) = v^h_j W_O[s_h]`` for every query head h and token j: float64 ``[H, n, d]`` (no ``b_O``)."""
        heads, kv_heads = int(self.attention.shape[0]), int(self.values.shape[0])
        values = self.values.double().repeat_interleave(heads // kv_heads, dim=0)
        weight = self.out_weight.double().reshape(heads, values.shape[-1], -1)
        return torch.bmm(values, weight)

    def mixed(self, rows: slice | None = None) -> torch.Tensor:
        """``Z_ij = Σ_h α^h_ij f^h(x_j)`` for the query rows ``rows`` (default all): float64 ``[rows, n, d]``."""
        alpha = self.attention.double() if rows is None else self.attention[:, rows].double()
        return torch.einsum("hij,hjd->ijd", alpha, self.head_outputs())


def _row_norms(alpha: torch.Tensor, vectors: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
    """``‖Σ_h α^h_ij v^h_j (+ [i = j]·extra_j)‖₂`` for all i, j without forming the ``[n, n, d]`` sums: float64 ``[n, n]``.

    With ``G_j = V_j V_jᵀ`` (``[H, H]`` per token), ``‖Σ_h α_h v_h‖² = αᵀ G_j α``; the diagonal adds
    ``2 Σ_h α_h v_h·e + ‖e‖²``.
    """
    gram = torch.einsum("hjd,gjd->jhg", vectors, vectors)  # [n_j, H, H]
    by_key = alpha.permute(2, 0, 1)  # [n_j, H, n_i]
    squares = (torch.bmm(gram, by_key) * by_key).sum(dim=1).T.contiguous()  # [n_i, n_j]
    if extra is not None:
        cross = torch.einsum("hjd,jd->hj", vectors, extra)  # [H, n]
        diagonal = torch.arange(alpha.shape[-1])
        squares[diagonal, diagonal] += 2 * (alpha[:, diagonal, diagonal] * cross).sum(dim=0)
        squares[diagonal, diagonal] += (extra * extra).sum(dim=-1)
    return squares.clamp_min(0.0).sqrt()


def attention_norm(layer: LayerTensors) -> torch.Tensor:
    """Kobayashi et al. 2020's ``C_ij = ‖Σ_h α^h_ij f^h(x_j)‖₂``: float64 ``[n, n]`` (raw norms, rows not normalised).

    f includes the value bias and excludes ``b_O`` (MIXING.md §1); no residual, no normalisation.
    """
    return _row_norms(layer.attention.double(), layer.head_outputs())


def globenc(layer: LayerTensors) -> torch.Tensor:
    """Modarressi et al. 2022's N_Enc: float64 ``[n, n]`` (raw, rows not normalised).

    Post-norm (MIXING.md §2): ``P_ij = γ₁ ⊙ center(R_ij) / √(var(u_i) + ε₁)``,
    ``C_ij = ‖γ₂ ⊙ center(P_ij) / √(var(w_i) + ε₂)‖₂`` with ``R_ij = Z_ij + [i = j]·x_j``, u and w the actual LN1 and
    LN2 inputs, the FFN skipped, no β. Both scalings are linear maps applied to every summand, so the norms come from
    per-token Gram matrices. Pre-norm: ``‖R_ij‖₂`` (see the module docstring).
    """
    alpha = layer.attention.double()
    heads = layer.head_outputs()
    inputs = layer.inputs.double()
    if layer.layout == "pre-norm":
        return _row_norms(alpha, heads, inputs)
    norm1, norm2 = _post_norms(layer)

    def both(vectors: torch.Tensor) -> torch.Tensor:
        once = norm1.weight.double() * norm1.center(vectors)
        return norm2.weight.double() * norm2.center(once)

    scale = torch.rsqrt(norm1.variance() + norm1.eps) * torch.rsqrt(norm2.variance() + norm2.eps)  # per row i
    return _row_norms(alpha, both(heads), both(inputs)) * scale[:, None]


def alti(layer: LayerTensors) -> torch.Tensor:
    """Ferrando et al. 2022's ALTI contributions: float64 ``[n, n]``, rows summing to 1 (MIXING.md §3).

    Post-norm: ``T_ij = γ₁ ⊙ center(R_ij) / std(u_i)`` (no ε, as the official code),
    ``y_i = Σ_j T_ij + γ₁ ⊙ center(b_O) / std(u_i) + β₁``; pre-norm: ``T_ij = R_ij``, ``y_i = Σ_j R_ij + b_O``
    (Ferrando et al. 2023). Then ``c_ij = max(0, ‖y_i‖₁ − ‖T_ij − y_i + 10⁻⁶‖₁)`` and ``C_ij = c_ij / Σ_k c_ik``.
    """
    n, d = layer.n, int(layer.inputs.shape[-1])
    alpha, heads, inputs = layer.attention.double(), layer.head_outputs(), layer.inputs.double()
    bias = layer.out_bias.double()
    if layer.layout == "post-norm":
        # T_ij is linear in the summands: centre and scale f(x_j) and x_j once, fold 1/std(u_i) into row i of α
        norm1, _ = _post_norms(layer)
        gamma = norm1.weight.double()
        scale = torch.rsqrt(norm1.variance())
        heads, inputs = gamma * norm1.center(heads), gamma * norm1.center(inputs) * scale[:, None]
        alpha = alpha * scale[None, :, None]
        beta = torch.zeros(d, dtype=torch.float64) if norm1.bias is None else norm1.bias.double()
        offset = gamma * norm1.center(bias) * scale[:, None] + beta  # [n, d]
    else:
        offset = bias.expand(n, d)
    contributions = torch.empty(n, n, dtype=torch.float64)
    step = max(1, _CHUNK_ELEMENTS // max(1, n * d))
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        transformed = torch.einsum("hij,hjd->ijd", alpha[:, rows], heads)  # T_ij, [r, n, d]
        index = torch.arange(rows.start, rows.stop)
        transformed[index - start, index] += inputs[index]
        resultant = transformed.sum(dim=1) + offset[rows]  # y_i, [r, d]
        distance = transformed.sub_(resultant[:, None, :]).add_(ALTI_EPS).abs_().sum(dim=-1)
        contributions[rows] = (resultant.abs().sum(dim=-1, keepdim=True) - distance).clamp_min(0.0)
    return normalise_rows(contributions)


def _post_norms(layer: LayerTensors) -> tuple[Norm, Norm]:
    if layer.norm1 is None or layer.norm2 is None:
        raise ValueError("a post-norm layer needs both normalisations")
    return layer.norm1, layer.norm2


def mixing_matrix(layer: LayerTensors, method: MixingMethod) -> torch.Tensor:
    """The per-layer matrix ``C_l`` ``[n, n]`` of one of :data:`NORM_METHODS`."""
    if method == "attention-norm":
        return attention_norm(layer)
    if method == "globenc":
        return globenc(layer)
    if method == "alti":
        return alti(layer)
    raise ValueError(f"{method!r} is not computed from the block's algebra; choose from {', '.join(NORM_METHODS)}")


def cosine_distances(changed: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """``clip(1 − cos(changed[r, i], clean[i]), 0, 2)`` in float64: ``[R, n, d]``, ``[n, d]`` → ``[R, n]``.

    Value zeroing's distance (MIXING.md §4; sklearn's ``cosine_distances`` diagonal). float64 because 1 − cos loses
    the digits of small changes in float32.
    """
    changed, clean = changed.double(), clean.double()
    dot = (changed * clean).sum(dim=-1)
    norms = changed.norm(dim=-1) * clean.norm(dim=-1)
    cosine = dot / norms.clamp_min(torch.finfo(torch.float64).tiny)
    distance: torch.Tensor = (1.0 - cosine).clamp(0.0, 2.0)
    return distance


def normalise_rows(matrix: torch.Tensor) -> torch.Tensor:
    """Each row divided by its sum (rows summing to 0 stay 0)."""
    sums = matrix.sum(dim=-1, keepdim=True)
    return torch.where(sums > 0, matrix / torch.where(sums > 0, sums, torch.ones_like(sums)), matrix)


def mixing_rollout(matrices: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The official aggregation of per-layer mixing matrices: ``A₁ = C₁``, ``A_l = C_l·A_{l−1}``.

    No identity is added and nothing is renormalised (MIXING.md §1–4: GlobEnc's ``AttentionRollout``, ALTI's and
    value zeroing's ``compute_joint_attention(res=False)``).

    Args:
        matrices: ``[L, n, n]`` bottom layer first.

    Returns:
        float64 ``[L, n, n]``: ``[l]`` is ``A_l``, the aggregation up to layer l.
    """
    stacked = torch.stack(list(matrices)) if not isinstance(matrices, torch.Tensor) else matrices
    stacked = stacked.double()
    out = torch.empty_like(stacked)
    for layer in range(stacked.shape[0]):
        out[layer] = stacked[layer] if layer == 0 else stacked[layer] @ out[layer - 1]
    return out


def check_method(method: object) -> MixingMethod:
    """``method`` if it names a context-mixing measure (raises ValueError otherwise; callers word the user error)."""
    if method not in get_args(MixingMethod):
        raise ValueError(f"method must be one of {', '.join(get_args(MixingMethod))}, got {method!r}")
    return method  # type: ignore[return-value]
