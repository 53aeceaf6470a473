"""Context mixing beyond attention weights: :func:`context_mixing` and its result, :class:`ContextMixing`.

Four per-layer token-to-token measures of how much input token j of a layer feeds output token i of that layer —
attention-norm (Kobayashi et al., EMNLP 2020), GlobEnc (Modarressi et al., NAACL 2022), ALTI (Ferrando et al.,
EMNLP 2022) and value zeroing (Mohebbi et al., EACL 2023) — exactly as their official code computes them (the
project's ``MIXING.md``), with the official aggregation over layers (``A₁ = C₁``, ``A_l = C_l·A_{l−1}``).

How the work is organised: the three norm-based measures read one forward pass (:meth:`Model.block_tensors`: each
block's input, attention, value vectors, probed output projection and normalisation inputs) and compute each layer's
matrix from it (:mod:`attrflow.flow.mixing`). Value zeroing keeps every block call of one clean pass
(:meth:`Model.block_calls`) and reruns block l alone with the n zeroings as n batch rows of one call
(:meth:`Model.run_block`): L block calls instead of the official L·n.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from attrflow.errors import InvalidInputError, UnsupportedModelError
from attrflow.flow.mixing import (
    MixingMethod,
    check_method,
    cosine_distances,
    mixing_matrix,
    mixing_rollout,
    normalise_rows,
)
from attrflow.methods.context import ExplainContext
from attrflow.storage import register_result_type, write_result
from attrflow.validation import check_optional_int

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from torch import nn

    from attrflow.models import Model

__all__ = ["ContextMixing", "MixingMethod", "context_mixing", "mixing_unsupported"]

PAPERS: dict[str, str] = {
    "attention-norm": "Kobayashi, Kuribayashi, Yokoi, Inui, Attention is Not Only a Weight, EMNLP 2020",
    "globenc": "Modarressi, Fayyaz, Yaghoobzadeh, Pilehvar, GlobEnc, NAACL 2022",
    "alti": "Ferrando, Gállego, Costa-jussà, Measuring the Mixing of Contextual Information in the Transformer, "
    "EMNLP 2022",
    "value-zeroing": "Mohebbi, Zuidema, Chrupała, Alishahi, Quantifying Context Mixing in Transformers, EACL 2023",
}

# activations one value-zeroing block call may hold (estimated); results never depend on it
_MEMORY_BUDGET = 1024**3


@dataclass(frozen=True, eq=False)
class ContextMixing:
    """Per-layer context-mixing matrices of one input (the result of :func:`context_mixing`).

    Attributes:
        method: ``"attention-norm"``, ``"globenc"``, ``"alti"`` or ``"value-zeroing"``.
        tokens: the n real tokens (all positions kept, special tokens included, as the official code).
        matrices: float64 ``[len(layers), n, n]``: ``[k, i, j]`` is how much input token j of layer ``layers[k]``
            contributes to its output token i (raw norms for attention-norm and GlobEnc; rows summing to 1 for
            ALTI and value zeroing).
        layers: the model layer of each matrix, bottom to top.
        output_position: the position whose row the papers read ([CLS], or the last token of a decoder).
        special_mask: True for special tokens.
        settings: the model, the blocks' layout, and the options used.
    """

    method: str
    tokens: tuple[str, ...]
    matrices: torch.Tensor
    layers: tuple[int, ...]
    output_position: int = 0
    special_mask: tuple[bool, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)

    kind = "ContextMixing"

    def __post_init__(self) -> None:
        n = len(self.tokens)
        if self.matrices.dim() != 3 or tuple(self.matrices.shape[1:]) != (n, n):
            raise InvalidInputError(f"matrices must be [layers, {n}, {n}], got {tuple(self.matrices.shape)}")
        if self.matrices.shape[0] != len(self.layers):
            raise InvalidInputError(f"{self.matrices.shape[0]} matrices for layers {list(self.layers)}")

    def rollouts(self) -> torch.Tensor:
        """float64 ``[len(layers), n, n]``: the official aggregation up to each held layer (``A₁ = C₁``,
        ``A_k = C_k·A_{k−1}``, no identity, no renormalisation) — over the held layers only."""
        return mixing_rollout(self.matrices)

    def rollout(self) -> torch.Tensor:
        """float64 ``[n, n]``: the method's official aggregation over all held layers (row i: how much each input
        token contributes to output token i after the top layer; the papers read row 0, [CLS])."""
        return self.rollouts()[-1]

    def token_scores(self, position: int | None = None) -> torch.Tensor:
        """float64 ``[n]``: row ``position`` (default :attr:`output_position`) of :meth:`rollout`."""
        row = self.output_position if position is None else position
        if not -len(self.tokens) <= row < len(self.tokens):
            raise InvalidInputError(f"position {row} is out of range for {len(self.tokens)} tokens")
        return self.rollout()[row]

    def to_frame(self) -> pd.DataFrame:
        """Long format: one row per (layer, output token i, input token j) with the layer's value and the
        aggregation up to that layer."""
        import pandas as pd

        count, n = len(self.layers), len(self.tokens)
        index = pd.MultiIndex.from_product([self.layers, range(n), range(n)], names=["layer", "output", "input"])
        frame = pd.DataFrame(
            {
                "value": self.matrices.double().flatten().numpy(),
                "aggregated": self.rollouts().flatten().numpy(),
            },
            index=index,
        ).reset_index()
        frame.insert(2, "output_token", [self.tokens[i] for i in frame["output"]])
        frame.insert(4, "input_token", [self.tokens[j] for j in frame["input"]])
        assert len(frame) == count * n * n
        return frame

    def plot(self, *, ax: Axes | None = None, layer: int | None = None) -> Figure:
        """Heatmap of the aggregation over all held layers (default) or of one held layer's matrix (``layer``, a
        model layer; negatives count from the top held layer); see :func:`attrflow.viz.plots.plot_mixing`."""
        from attrflow.viz.plots import plot_mixing

        return plot_mixing(self, ax=ax, layer=layer)

    def to_html(self, path: str | os.PathLike[str] | None = None, *, title: str | None = None) -> str:
        """A self-contained page: the aggregated matrix, every layer's matrix and the output position's row;
        written to ``path`` when given. Returns the HTML document."""
        from attrflow.viz.mixing import render_mixing_page
        from attrflow.viz.page import write_page

        html = render_mixing_page(self, title=title)
        if path is not None:
            write_page(html, path)
        return html

    def _repr_html_(self) -> str:
        from attrflow.viz.page import iframe

        return iframe(self.to_html(), height=700)

    def to_parts(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(meta, tensors)``: what :meth:`save` stores."""
        meta = {
            "method": self.method,
            "tokens": list(self.tokens),
            "layers": list(self.layers),
            "output_position": self.output_position,
            "special_mask": list(self.special_mask),
            "settings": dict(self.settings),
        }
        return meta, {"matrices": self.matrices}

    @classmethod
    def from_parts(cls, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> ContextMixing:
        """Rebuild from :meth:`to_parts` (used by :func:`attrflow.load_result`)."""
        return cls(
            method=str(meta["method"]),
            tokens=tuple(str(t) for t in meta["tokens"]),
            matrices=tensors["matrices"],
            layers=tuple(int(x) for x in meta["layers"]),
            output_position=int(meta.get("output_position", 0)),
            special_mask=tuple(bool(x) for x in meta.get("special_mask", [])),
            settings=dict(meta.get("settings", {})),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to one ``.safetensors`` file (tensors + JSON metadata + checksum), atomically. Returns the path."""
        meta, tensors = self.to_parts()
        return write_result(path, self.kind, meta, tensors)

    def __repr__(self) -> str:
        return (
            f"ContextMixing(method={self.method!r}, tokens={len(self.tokens)}, layers={list(self.layers)}, "
            f"layout={self.settings.get('layout')!r})"
        )


register_result_type(ContextMixing)


def mixing_unsupported(model: Model, method: MixingMethod) -> str | None:
    """Why ``method`` cannot run on ``model`` (None when it can): a block that cannot be run alone (value zeroing)
    or whose algebra could not be derived (the norm-based measures)."""
    structure = model.block_structure()
    return structure.blocks_unsupported if method == "value-zeroing" else structure.algebra_unsupported


def context_mixing(
    model: Model | nn.Module,
    inputs: Any,
    *,
    method: MixingMethod,
    layers: int | Sequence[int] | None = None,
    batch_size: int | None = None,
) -> ContextMixing:
    """Per-layer context-mixing matrices of one input, as the method's official code computes them.

    Args:
        model: an :class:`attrflow.Model` (or a transformers model, wrapped on the fly).
        inputs: a string, a ``(text, text_pair)`` tuple, a dict of batch-1 tensors, or an ``Encoding``.
        method: ``"attention-norm"`` (Kobayashi et al. 2020: ``‖Σ_h α f(x_j)‖``), ``"globenc"`` (Modarressi et al.
            2022: with the residual and both LayerNorms), ``"alti"`` (Ferrando et al. 2022: L1 proximity, rows sum
            to 1) or ``"value-zeroing"`` (Mohebbi et al. 2023: cosine distance of the layer's output when token j's
            values are zeroed, rows sum to 1).
        layers: which layers' matrices to keep (default all, bottom to top; negatives count from the end).
        batch_size: value zeroing only: zeroed tokens per block call (memory only; results never depend on it).
            Default: as many as fit a 1 GiB estimate.

    Returns:
        A :class:`ContextMixing`: ``.matrices`` ``[len(layers), n, n]``, ``.rollout()`` ``[n, n]``.

    Raises:
        InvalidInputError: an unknown method, a bad layer or batch size.
        UnsupportedModelError: the model's blocks cannot be run alone (value zeroing) or decomposed (the others);
            the message names the method and what is missing.
    """
    context = ExplainContext(model, inputs)
    return mixing_of(context, _checked(method), context.layers(layers), batch_size=batch_size)


def _checked(method: object) -> MixingMethod:
    try:
        return check_method(method)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None


def mixing_of(
    context: ExplainContext, method: MixingMethod, layers: Sequence[int], *, batch_size: int | None = None
) -> ContextMixing:
    """The matrices of ``layers`` (model layers, ascending) of ``method`` on the context's input, cached in the
    context (the registry asks for layers 0..l to roll out up to layer l)."""
    check_optional_int("batch_size", batch_size, minimum=1)
    model = context.model
    reason = mixing_unsupported(model, method)
    if reason:
        raise UnsupportedModelError(f"method {method!r} cannot explain {type(model.model).__name__}: {reason}")
    chosen = tuple(layers)
    return context.shared(("mixing", method, chosen), lambda: _compute(context, method, chosen, batch_size))


def _compute(
    context: ExplainContext, method: MixingMethod, layers: tuple[int, ...], batch_size: int | None
) -> ContextMixing:
    model = context.model
    if method == "value-zeroing":
        matrices = _value_zeroing(context, layers, batch_size)
    else:
        tensors = context.shared("block_tensors", lambda: model.block_tensors(context.encoding))
        context.shared("recording", lambda: tensors.recording)  # the same pass as model.record: no second forward
        matrices = torch.stack([mixing_matrix(tensors.layers[layer], method) for layer in layers])
    layouts = model.block_structure().layouts
    return ContextMixing(
        method=method,
        tokens=context.tokens,
        matrices=matrices,
        layers=layers,
        output_position=context.encoding.output_position,
        special_mask=context.encoding.special_mask,
        settings={
            "model": model.name,
            "layout": layouts[0] if len(set(layouts)) == 1 else ",".join(layouts),
            "paper": PAPERS[method],
        },
    )


def _value_zeroing(context: ExplainContext, layers: tuple[int, ...], batch_size: int | None) -> torch.Tensor:
    """``[len(layers), n, n]``: each layer's value-zeroing matrix, the n zeroings of a layer in one batched block
    call (or in chunks of ``batch_size``). Layers are measured independently: only the chosen ones run."""
    model, n = context.model, context.n
    calls = model.block_calls(context.encoding)
    context.shared("recording", lambda: calls.recording)  # the same pass as model.record: no second forward
    rows = batch_size or _auto_batch_size(model, context)
    out = torch.empty(len(layers), n, n, dtype=torch.float64)
    for k, layer in enumerate(layers):
        clean = calls.output(layer)
        for start in range(0, n, rows):
            positions = list(range(start, min(n, start + rows)))
            zeroed = model.run_block(calls, layer, positions)  # [r, n, d]: row r zeroes token positions[r]
            out[k, :, start : start + len(positions)] = cosine_distances(zeroed, clean).T
    return normalise_rows(out)


def _auto_batch_size(model: Model, context: ExplainContext) -> int:
    config = model.model.config.get_text_config() if model.task != "image-classification" else model.model.config
    hidden = int(getattr(config, "hidden_size", 768))
    length = context.encoding.padded_length
    per_row = 4 * (3 * model.num_heads * length * length + 12 * length * hidden)
    return max(1, int(_MEMORY_BUDGET // per_row))
