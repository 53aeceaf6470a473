"""attrflow's own attention function, registered with ``transformers.AttentionInterface``.

While attrflow works, a model is switched to the implementation named :data:`IMPL_NAME`. The function computes
attention exactly as the SDPA/eager paths do (same masks, causal rule, grouped-query heads, scaling), but
materialises the probabilities so that a :class:`Session` (private: the state of one pass, built only inside
:class:`~attrflow.models.Model`) can record them, gate heads, mask interactions, or replace a site's probabilities
by ``α·A`` with gradients taken on the very tensor that multiplies V.

Attention *sites* are numbered by call order within one forward pass: DistilBERT, ALBERT and ViT modules carry
no ``layer_idx`` and ALBERT reuses one module for every layer, so modules cannot identify layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from attrflow.errors import UnsupportedModelError

IMPL_NAME = "attrflow"

_SESSION: ContextVar[Session | None] = ContextVar("attrflow_session", default=None)
# ids of the attention modules that count as sites (None: all); set by Model.engaged for encoder-decoder models,
# whose decoder self-attention and cross-attention run through the same function but are not exposed as layers
_SITE_MODULES: ContextVar[frozenset[int] | None] = ContextVar("attrflow_site_modules", default=None)
# the handler of Model.capture_keys (models/_streaming.py) while it runs: it computes each call's output without
# materialising the probabilities and keeps what row queries need (set by `streaming_handler`)
_STREAMING: ContextVar[StreamingHandler | None] = ContextVar("attrflow_streaming", default=None)
_registered = False


@dataclass
class Session:
    """What the attention function does during the forward passes run inside :func:`active_session`.

    Attributes:
        record: keep a detached copy of every site's probabilities in ``records``.
        require_grad: make the branched rows' replaced tensors leaves that require grad (see ``branches``).
        gate: ``[num_sites, H]`` multipliers of each head's probabilities (1 keep, 0 prune).
        edits: per site, a ``[n, n]`` multiplier of the probabilities (all heads), e.g. to mask interactions.
        branches: per site, ``(first_row, alphas, grad_rows)``: rows ``first_row .. first_row + len(alphas) − 1``
            of the batch get that site's probabilities replaced by ``alphas[k] · A`` (A = those rows' own, clean,
            probabilities); with ``require_grad`` the first ``grad_rows`` of them form a grad-requiring leaf stored
            in ``leaves[site]`` (the others get no gradient, which saves their backward pass).
        clean_leaves: with ``require_grad``, keep row 0's probabilities at every site as a tensor to
            differentiate by (``clean_row_leaves[site]``, still inside the graph): one backward gives ∂F/∂A at
            α = 1 for every layer.
        stream: sites with nothing to do (no branch, gate, edit or record) run through torch's fused
            scaled-dot-product attention: their probabilities are never materialised, so a backward through them
            keeps O(N·d) per row instead of [H, N, N]. ``clean_leaves`` then applies to the branched sites only,
            and each branched site keeps row 0's (clean) probabilities ``[H, N, N]`` in ``bases[site]``.
        capture_values: keep a detached copy of every site's value states ``[B, H_kv, N, d]`` in ``values``.
        zero_values: per site, ``[B]`` key positions: row r of the batch gets the value vector of position
            ``zero_values[site][r]`` set to 0 in every head (−1: none), after the softmax (value zeroing).
        suppress: ``([B] key positions, factor)``: at every site, row r's pre-softmax scores towards position
            ``positions[r]`` are multiplied by ``factor`` (−1: none) before the mask (AtMan).
    """

    record: bool = False
    require_grad: bool = False
    gate: torch.Tensor | None = None
    edits: dict[int, torch.Tensor] = field(default_factory=dict)
    branches: dict[int, tuple[int, torch.Tensor, int]] = field(default_factory=dict)
    clean_leaves: bool = False
    stream: bool = False
    capture_values: bool = False
    zero_values: dict[int, torch.Tensor] = field(default_factory=dict)
    suppress: tuple[torch.Tensor, float] | None = None
    # filled while running
    count: int = 0
    records: list[torch.Tensor] = field(default_factory=list)
    modules: list[nn.Module] = field(default_factory=list)
    site_block_call: list[int] = field(default_factory=list)
    block_calls: int = 0
    leaves: dict[int, torch.Tensor] = field(default_factory=dict)
    clean_row_leaves: dict[int, torch.Tensor] = field(default_factory=dict)
    bases: dict[int, torch.Tensor] = field(default_factory=dict)
    values: list[torch.Tensor] = field(default_factory=list)

    def reset(self) -> None:
        """Forget what the previous forward pass left (call before each pass)."""
        self.count = 0
        self.records = []
        self.modules = []
        self.site_block_call = []
        self.block_calls = 0
        self.leaves = {}
        self.clean_row_leaves = {}
        self.bases = {}
        self.values = []

    def streams_next_site(self, module: nn.Module) -> bool:
        """Whether the next site needs no probabilities (``stream``) and may run fused; if so, it is counted.

        A site with anything to do (a branch, gate, edit, record, value capture or zeroing, score suppression)
        runs materialised."""
        site = self.count
        quiet = not (
            self.record
            or (self.clean_leaves and not self.stream)
            or site in self.branches
            or site in self.edits
            or self.capture_values
            or site in self.zero_values
            or self.suppress is not None
            or (self.gate is not None and site < self.gate.shape[0] and not bool((self.gate[site] == 1).all()))
        )
        if not (self.stream and quiet):
            return False
        self.count += 1
        self.modules.append(module)
        self.site_block_call.append(self.block_calls - 1)
        return True

    def on_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """Scale the pre-softmax scores ``[B, H, q, k]`` of the next site as :attr:`suppress` asks."""
        if self.suppress is None:
            return scores
        positions, factor = self.suppress
        scale = torch.ones(scores.shape[0], scores.shape[-1], dtype=scores.dtype, device=scores.device)
        rows = torch.nonzero(positions >= 0).flatten()
        scale[rows, positions[rows]] = factor
        return scores * scale[:, None, None, :]

    def on_values(self, value: torch.Tensor) -> torch.Tensor:
        """Capture or zero the value states ``[B, H_kv, k, d]`` of the next site (before :meth:`on_site` counts it)."""
        if self.capture_values:
            self.values.append(value.detach())
        positions = self.zero_values.get(self.count)
        if positions is None:
            return value
        keep = torch.ones(value.shape[0], value.shape[2], dtype=value.dtype, device=value.device)
        rows = torch.nonzero(positions >= 0).flatten()
        keep[rows, positions[rows]] = 0.0
        return value * keep[:, None, :, None]

    def on_site(self, module: nn.Module, probs: torch.Tensor) -> torch.Tensor:
        """Apply this session's interventions to the probabilities ``[B, H, q, k]`` of the next site."""
        site = self.count
        self.count += 1
        self.modules.append(module)
        self.site_block_call.append(self.block_calls - 1)
        if self.gate is not None and site < self.gate.shape[0]:
            probs = probs * self.gate[site].to(probs.dtype).view(1, -1, 1, 1)
        edit = self.edits.get(site)
        if edit is not None:
            probs = probs * edit.to(probs.dtype)
        if self.clean_leaves and self.require_grad:
            # not a detached leaf: the gradient must flow through the attention of the layers above this site
            # (they react to this layer). A leaf only where nothing below requires grad (frozen weights).
            row = probs[:1].clone() if probs.requires_grad else probs[:1].detach().requires_grad_(True)
            self.clean_row_leaves[site] = row
            probs = torch.cat([row, probs[1:]], dim=0)
        branch = self.branches.get(site)
        if branch is not None:
            start, alphas, grad_rows = branch
            stop = start + alphas.shape[0]
            if self.stream:
                self.bases[site] = probs[0].detach().clone()
            # alpha in at least float32: a half-precision alpha (0.2764 -> 0.2773) would move the quadrature node
            wide = torch.promote_types(probs.dtype, torch.float32)
            scaled = (alphas.to(wide).view(-1, 1, 1, 1) * probs[start:stop].detach().to(wide)).to(probs.dtype)
            if self.require_grad and grad_rows > 0:
                leaf = scaled[:grad_rows].detach().requires_grad_(True)
                self.leaves[site] = leaf
                scaled = torch.cat([leaf, scaled[grad_rows:]], dim=0)
            probs = torch.cat([probs[:start], scaled, probs[stop:]], dim=0)
        if self.record:
            self.records.append(probs.detach())
        return probs


@contextlib.contextmanager
def site_modules(modules: frozenset[int] | None) -> Iterator[None]:
    """Count only the attention calls of these modules (by ``id``) as sites; None counts every call."""
    token = _SITE_MODULES.set(modules)
    try:
        yield
    finally:
        _SITE_MODULES.reset(token)


class StreamingHandler(Protocol):
    """What :func:`attrflow_attention_forward` hands a call to while :func:`streaming_handler` is active: the call's
    query ``[B, H, q, d]``, key/value ``[B, H_kv, k, d]`` (grouped-query layout kept), mask, resolved scaling and
    causal rule; it returns the attention output ``[B, q, H, d]`` and no probabilities."""

    def __call__(
        self,
        module: nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        *,
        scaling: float,
        causal: bool,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, None]: ...


@contextlib.contextmanager
def streaming_handler(handler: StreamingHandler) -> Iterator[None]:
    """Route every attention call to ``handler`` instead of the materialising computation (nesting restores)."""
    token = _STREAMING.set(handler)
    try:
        yield
    finally:
        _STREAMING.reset(token)


def current_site_modules() -> frozenset[int] | None:
    """The attention modules (by ``id``) whose calls count as sites right now (None: every call)."""
    return _SITE_MODULES.get()


@contextlib.contextmanager
def active_session(session: Session) -> Iterator[Session]:
    """Make ``session`` the one the attention function consults (nesting restores the outer one)."""
    token = _SESSION.set(session)
    try:
        yield session
    finally:
        _SESSION.reset(token)


def _repeat_kv(states: torch.Tensor, n_rep: int) -> torch.Tensor:
    if n_rep == 1:
        return states
    batch, kv_heads, length, dim = states.shape
    expanded = states[:, :, None, :, :].expand(batch, kv_heads, n_rep, length, dim)
    return expanded.reshape(batch, kv_heads * n_rep, length, dim)


def _no_empty_rows(mask: torch.Tensor | None) -> bool:
    """Whether every query row of a boolean mask may attend somewhere (fused kernels give NaN on empty rows)."""
    return mask is None or mask.dtype != torch.bool or bool(mask.any(dim=-1).all())


def _fused(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    position_bias: torch.Tensor | None,
    *,
    scaling: float,
    causal: bool,
) -> torch.Tensor:
    """The same attention through torch's fused kernel (no [H, q, k] kept for backward): ``[B, q, H, d]``."""
    kv_len = key.shape[2]
    bias = None if mask is None else mask[..., :kv_len]
    if position_bias is not None:
        extra = position_bias.to(query.dtype)
        if bias is None:
            bias = extra
        elif bias.dtype == torch.bool:
            bias = extra.masked_fill(~bias, torch.finfo(query.dtype).min)
        else:
            bias = extra + bias
    output = nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=bias, is_causal=causal and bias is None, scale=scaling
    )
    return output.transpose(1, 2).contiguous()


def attrflow_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled dot-product attention with materialised probabilities (the AttentionInterface signature).

    Shapes: query ``[B, H, q, d]``, key/value ``[B, H_kv, k, d]`` (H_kv divides H), mask broadcastable to
    ``[B, H, q, k]`` (boolean: True = attend; float: added to the scores). Returns ``([B, q, H, d], [B, H, q, k])``,
    or no probabilities while a :func:`streaming_handler` is active (:meth:`Model.capture_keys`) or for a site a
    streaming session leaves alone (it runs fused).
    """
    if kwargs.get("s_aux") is not None or kwargs.get("sinks") is not None:
        raise UnsupportedModelError(
            f"{type(module).__name__} uses attention sinks (extra softmax logits); attrflow's probabilities would "
            "not be the model's. This architecture is not supported."
        )
    session = _SESSION.get()
    sites = _SITE_MODULES.get()
    if session is not None and not (sites is None or id(module) in sites):
        session = None
    if session is not None:
        value = session.on_values(value)
    heads = query.shape[1]
    if heads % key.shape[1]:
        raise UnsupportedModelError(f"{type(module).__name__}: {heads} query heads vs {key.shape[1]} key heads")
    q_len = query.shape[2]
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(q_len > 1 and attention_mask is None and causal)
    if causal and key.shape[2] > q_len:
        key, value = key[:, :, :q_len], value[:, :, :q_len]
    streaming = _STREAMING.get()
    if streaming is not None:  # keys kept for later row queries; the probabilities are never materialised
        return streaming(module, query, key, value, attention_mask, scaling=scaling, causal=causal, **kwargs)
    if key.shape[1] != heads:
        key = _repeat_kv(key, heads // key.shape[1])
        value = _repeat_kv(value, heads // value.shape[1])
    position_bias = kwargs.get("position_bias")
    if (
        session is not None
        and session.stream
        and kwargs.get("softcap") is None
        and _no_empty_rows(attention_mask)
        and session.streams_next_site(module)
    ):
        return _fused(query, key, value, attention_mask, position_bias, scaling=scaling, causal=causal), None
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if position_bias is not None:
        scores = scores + position_bias
    softcap = kwargs.get("softcap")
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if session is not None:
        scores = session.on_scores(scores)
    kv_len = key.shape[2]
    if attention_mask is not None:
        mask = attention_mask[..., :kv_len]
        bool_mask = mask.dtype == torch.bool
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min) if bool_mask else scores + mask
    elif causal:
        allowed = torch.ones(q_len, kv_len, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    # at least float32 (half-precision models), never less than the model's own precision (float64 models)
    probs = torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(query.dtype)
    if dropout > 0.0 and module.training:
        probs = nn.functional.dropout(probs, p=dropout, training=True)
    if session is not None:
        probs = session.on_site(module, probs)
    output = torch.matmul(probs, value)
    return output.transpose(1, 2).contiguous(), probs


def ensure_registered() -> None:
    """Register the attention function and its (materialised, additive) mask builder once per process."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(IMPL_NAME, attrflow_attention_forward)
    # boolean masks as SDPA gets them (None where SDPA would skip the mask); the function above handles both
    ALL_MASK_ATTENTION_FUNCTIONS.register(IMPL_NAME, sdpa_mask)
    _registered = True
