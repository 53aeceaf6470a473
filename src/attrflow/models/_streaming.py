"""Attention rows without attention matrices: one forward pass that keeps each layer's queries and keys.

Recording attention materialises ``[L, H, n, n]``: 22 GB for a Qwen2-0.5B-shaped model at n = 4096. Rollout and
raw attention for one output position need far less: top-down, ``r ← r · Ā_l`` only ever needs a block of rows
of one layer at a time. :meth:`Model.capture_keys` runs one forward pass in which every attention call hands its
output to torch's fused scaled-dot-product attention (nothing ``n × n`` is kept) and keeps, per layer, what is
needed to recompute any block of rows later: the query and key states after rotary embeddings, in the
grouped-query layout (``H_kv`` key heads), the mask the model built (or the causal rule), the scaling, a
softcap and a position bias. That is ``O(L · n · d)`` memory. :meth:`KeyCache.attention_rows` then recomputes
rows ``i0..i1`` of one layer exactly as :func:`~attrflow.models._interface.attrflow_attention_forward` computes
them — same masking constant, softcap, bias and float32 softmax, in the model's dtype — so the materialised and
the streamed paths give the same probabilities (checked on every supported architecture).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attrflow.errors import InvalidInputError
from attrflow.models._encoding import Encoding
from attrflow.models._interface import current_site_modules
from attrflow.validation import resolve_index

__all__ = ["KeyCache"]

# Work memory of one block of recomputed rows (scores, float32 softmax, probabilities) and of the output blocks of
# calls that cannot go to SDPA; rows per block follow from it and the layer's width. Larger on accelerators, where
# each block costs a dozen kernel launches: at n = 32k and 32 heads, 1 GiB is about 80 rows per block.
ROW_BLOCK_BYTES = 64 * 2**20
ROW_BLOCK_BYTES_ACCELERATOR = 2**30


def _owned(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` itself, or a compact copy when it is a view into a larger buffer (GPT-2's fused q/k/v)."""
    if tensor.untyped_storage().nbytes() > tensor.numel() * tensor.element_size():
        return tensor.clone(memory_format=torch.contiguous_format)
    return tensor


@dataclass(frozen=True, eq=False)
class _SiteKeys:
    """What one attention site needs to recompute its probabilities, batch row 0, over the padded positions.

    ``query`` ``[H, q, d]``; ``key`` ``[H_kv, k, d]``; ``mask`` ``[1 or H, q, k]`` (boolean: True = attend; or
    additive) or None with ``causal`` saying whether the causal rule applies; ``position_bias`` ``[1 or H, q, k]``;
    ``gate`` ``[H]`` head multipliers; ``edit`` ``[N, N]`` interaction multipliers.
    """

    query: torch.Tensor
    key: torch.Tensor
    scaling: float
    causal: bool
    mask: torch.Tensor | None = None
    position_bias: torch.Tensor | None = None
    softcap: float | None = None
    gate: torch.Tensor | None = None
    edit: torch.Tensor | None = None

    @property
    def num_heads(self) -> int:
        return int(self.query.shape[0])

    @property
    def kv_length(self) -> int:
        return int(self.key.shape[1])

    def probabilities(self, rows: torch.Tensor | slice) -> torch.Tensor:
        """``[H, b, k]``: the probabilities of query rows ``rows`` (padded indices), as the attention function
        computes them (scores in the model's dtype, softmax in at least float32, result in the model's dtype)."""
        heads, kv_heads = self.num_heads, int(self.key.shape[0])
        query = self.query[:, rows]
        block = query.shape[1]
        # grouped-query heads share their key: [H_kv, H/H_kv, b, d] @ [H_kv, 1, d, k], no repeated keys
        grouped = query.reshape(kv_heads, heads // kv_heads, block, -1)
        scores = torch.matmul(grouped, self.key.transpose(1, 2).unsqueeze(1)).reshape(heads, block, -1)
        scores = scores * self.scaling
        if self.position_bias is not None:
            scores = scores + self.position_bias[:, rows]
        if self.softcap is not None:
            scores = torch.tanh(scores / self.softcap) * self.softcap
        if self.mask is not None:
            mask = self.mask[:, rows, : self.kv_length]
            if mask.dtype == torch.bool:
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            else:
                scores = scores + mask
        elif self.causal:
            index = torch.arange(self.query.shape[1], device=scores.device)[rows]
            allowed = torch.arange(self.kv_length, device=scores.device)[None, :] <= index[:, None]
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        dtype = torch.promote_types(scores.dtype, torch.float32)
        probs = torch.softmax(scores, dim=-1, dtype=dtype).to(self.query.dtype)
        if self.gate is not None:
            probs = probs * self.gate.to(probs.dtype).view(-1, 1, 1)
        if self.edit is not None:
            probs = probs * self.edit[rows, : self.kv_length].to(probs.dtype)
        return probs

    def output(self, value: torch.Tensor) -> torch.Tensor:
        """The attention output ``[H, q, d]`` for ``value`` ``[H_kv, k, d]``, without an ``n × n`` tensor.

        Fused SDPA where it computes the same function (a boolean mask or the causal rule, no bias, softcap or
        edit); otherwise blocks of rows through :meth:`probabilities`.
        """
        heads, kv_heads = self.num_heads, int(self.key.shape[0])
        mask = self.mask
        fused = self.position_bias is None and self.softcap is None and self.edit is None
        # a query row that may attend to nothing: the attention function gives it uniform weights, SDPA may not
        fused = fused and (mask is None or (mask.dtype == torch.bool and bool(mask.any(dim=-1).all())))
        if fused:
            out = F.scaled_dot_product_attention(
                self.query.unsqueeze(0),
                self.key.unsqueeze(0),
                value.unsqueeze(0),
                attn_mask=None if mask is None else mask[:, :, : self.kv_length].unsqueeze(0),
                is_causal=self.causal and mask is None,
                scale=self.scaling,
                enable_gqa=heads != kv_heads,
            )[0]
            return out if self.gate is None else out * self.gate.to(out.dtype).view(-1, 1, 1)
        length = int(self.query.shape[1])
        out = self.query.new_empty(heads, length, value.shape[-1])
        step = rows_per_block(heads, self.kv_length, self.query.device)
        for start in range(0, length, step):
            stop = min(start + step, length)
            probs = self.probabilities(slice(start, stop))
            grouped = probs.reshape(kv_heads, heads // kv_heads, stop - start, -1)
            out[:, start:stop] = torch.matmul(grouped, value.unsqueeze(1)).reshape(heads, stop - start, -1)
        return out


def rows_per_block(heads: int, columns: int, device: torch.device | None = None) -> int:
    """Rows per block so that a block's scores and float32 softmax stay within the work budget of ``device``."""
    budget = ROW_BLOCK_BYTES if device is None or device.type == "cpu" else ROW_BLOCK_BYTES_ACCELERATOR
    return max(1, budget // (heads * max(columns, 1) * 4 * 3))


@dataclass
class StreamingCapture:
    """The handler of one capturing forward pass (see :func:`attrflow.models._interface.streaming_handler`).

    Computes every attention call's output without materialising probabilities and keeps each site's keys.
    ``gate`` (``[L, H]``) and ``edits`` (``{site: [N, N]}``) are the head gates and interaction masks in force.
    """

    gate: torch.Tensor | None = None
    edits: Mapping[int, torch.Tensor] = field(default_factory=dict)
    sites: list[_SiteKeys] = field(default_factory=list)

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
    ) -> tuple[torch.Tensor, None]:
        if query.shape[0] != 1:
            raise InvalidInputError(f"capture_keys runs one input at a time, got a batch of {query.shape[0]}")
        modules = current_site_modules()
        is_site = modules is None or id(module) in modules
        site = len(self.sites)
        mask = None if attention_mask is None else attention_mask[0]
        bias = kwargs.get("position_bias")
        softcap = kwargs.get("softcap")
        keys = _SiteKeys(
            query=_owned(query[0]),
            key=_owned(key[0]),
            scaling=float(scaling),
            causal=causal,
            mask=mask,
            position_bias=None if bias is None else bias[0],
            softcap=None if softcap is None else float(softcap),
            gate=self.gate[site] if is_site and self.gate is not None and site < self.gate.shape[0] else None,
            edit=self.edits.get(site) if is_site else None,
        )
        output = keys.output(value[0])
        if is_site:
            self.sites.append(keys)
        return output.transpose(0, 1).unsqueeze(0).contiguous(), None


@dataclass(frozen=True, eq=False)
class KeyCache:
    """One forward pass of one input that kept every layer's queries and keys instead of its attention.

    Built by :meth:`attrflow.Model.capture_keys`. Memory is ``O(L · n · d)``: the query states ``[H, n, d]`` and
    key states ``[H_kv, n, d]`` of each layer (after rotary embeddings, in the model's dtype and grouped-query
    layout), plus whatever mask or position bias the model itself built. Any block of attention rows is
    recomputed on demand by :meth:`attention_rows`, equal to the recorded attention.

    Attributes:
        encoding: the input.
        logits: ``[C]`` the model's output at the explained position, on the CPU.
    """

    encoding: Encoding
    logits: torch.Tensor
    sites: tuple[_SiteKeys, ...]

    @property
    def num_layers(self) -> int:
        """Number of layers (attention sites)."""
        return len(self.sites)

    @property
    def num_heads(self) -> int:
        """Query heads per layer."""
        return self.sites[0].num_heads

    @property
    def n(self) -> int:
        """Number of real positions."""
        return self.encoding.length

    @property
    def block_size(self) -> int:
        """Rows per block that keep one block's work within about 64 MB (1 GiB on an accelerator)."""
        return rows_per_block(self.num_heads, self.sites[0].kv_length, self.sites[0].query.device)

    @property
    def nbytes(self) -> int:
        """Bytes held: queries, keys and the distinct masks and position biases."""
        seen: dict[int, int] = {}
        for site in self.sites:
            for tensor in (site.query, site.key, site.mask, site.position_bias):
                if tensor is not None:
                    storage = tensor.untyped_storage()
                    seen[storage.data_ptr()] = storage.nbytes()
        return sum(seen.values())

    @property
    def probabilities(self) -> torch.Tensor:
        """``[C]`` softmax of the logits (float64)."""
        return torch.softmax(self.logits.double(), dim=-1)

    @property
    def predicted(self) -> int:
        """The predicted class (or next-token id)."""
        return int(self.logits.argmax())

    def _real(self) -> torch.Tensor | None:
        """The real positions inside the padded sequence, or None when there is no padding."""
        positions = self.encoding.positions
        length = int(self.sites[0].query.shape[1])
        if len(positions) == length and bool((positions == torch.arange(length)).all()):
            return None
        return positions.to(self.sites[0].query.device)

    def attention_rows(self, layer: int, start: int, stop: int) -> torch.Tensor:
        """Attention probabilities of query rows ``start..stop-1`` of ``layer``, every head: ``[H, stop-start, n]``.

        Rows and columns are the real positions (as in :meth:`Model.record`); values are in the model's dtype and
        on its device, equal to the recorded ``attentions[layer, :, start:stop]``.

        Raises:
            InvalidInputError: a layer out of range or an empty or out-of-range row range.
        """
        site = self.sites[resolve_index("layer", layer, self.num_layers)]
        if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start < stop <= self.n):
            raise InvalidInputError(f"rows must satisfy 0 <= start < stop <= {self.n}, got {start!r}..{stop!r}")
        real = self._real()
        with torch.no_grad():
            if real is None:
                return site.probabilities(slice(start, stop))
            return site.probabilities(real[start:stop]).index_select(-1, real)

    def row_blocks(self, layer: int, *, block_size: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, rows [H, b, n])`` for every block of rows of ``layer``, top to bottom of the matrix."""
        step = block_size or self.block_size
        for start in range(0, self.n, step):
            yield start, self.attention_rows(layer, start, min(start + step, self.n))

    def __repr__(self) -> str:
        size = self.nbytes / 2**20
        return f"KeyCache(layers={self.num_layers}, heads={self.num_heads}, n={self.n}, {size:.1f} MB)"


def logits_only_at(model: nn.Module, position: int | None) -> dict[str, torch.Tensor]:
    """``{"logits_to_keep": [position]}`` for a causal LM whose forward takes it (logits over a 150k vocabulary at
    every one of 4k positions would be 2.4 GB), else nothing."""
    if position is None or "logits_to_keep" not in inspect.signature(model.forward).parameters:
        return {}
    return {"logits_to_keep": torch.tensor([position], device=next(model.parameters()).device)}
