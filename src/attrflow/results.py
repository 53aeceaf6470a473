"""Result objects: frozen dataclasses that save, load, tabulate and render themselves.

Tensors are stored with safetensors and everything else as JSON in the same file's metadata, under a schema
version; nothing is ever pickled.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from attrflow.errors import InvalidInputError
from attrflow.storage import (
    SCHEMA_VERSION,
    atomic_write_bytes,
    load_result,
    register_result_type,
    write_result,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from attrflow.analysis.tree import AttributionTree
    from attrflow.viz.report import TokenScores

__all__ = ["SCHEMA_VERSION", "AttentionAttribution", "RecordedAttention", "load_result"]


@dataclass(frozen=True, eq=False)
class AttentionAttribution:
    """Self-attention attribution of one input (Hao et al., AAAI 2021).

    Attributes:
        tokens: the n real tokens of the input (no padding), as the tokenizer spells them.
        attributions: float32 ``[len(layers), H, n, n]``; entry ``[l, h, i, j]`` is the attribution of the
            interaction "query token i attends to key token j" in head h of layer ``layers[l]``:
            ``A ⊙ ∫₀¹ ∂F(α·A)/∂A dα``, signed.
        attentions: float32 ``[num_layers, H, n, n]``: the attention probabilities of every layer on the clean
            input (all layers, also when ``layers`` selects fewer).
        layers: the model layers (0-based) that the rows of ``attributions`` belong to.
        target: the explained output: a class index, or for causal LMs a vocabulary id of the next token.
        target_label: a readable name for ``target`` (``id2label`` or the decoded token), if known.
        predicted: the model's prediction on the clean input (class index or next-token id).
        probability: F on the clean input: the softmax probability of ``target``.
        baseline_probability: float32 ``[len(layers)]``: F with that layer's attention set to zero (α = 0).
        completeness_gap: float32 ``[len(layers)]``: ``Σ attributions[l] − (probability − baseline[l])``, the
            quadrature error of the integrated-gradients identity for each layer.
        input_ids: the n token ids (empty for image models).
        segment_ids: the segment (token type) of each token, when the model has segments.
        special_mask: True for special tokens ([CLS], [SEP], BOS, ...).
        output_position: the token position whose output is explained (0 for [CLS]-pooled classifiers, the last
            position for causal LMs; -1 when the classifier pools in another way).
        settings: the options the result was computed with (rule, steps, model, task, ...).
    """

    tokens: tuple[str, ...]
    attributions: torch.Tensor
    attentions: torch.Tensor
    layers: tuple[int, ...]
    target: int
    target_label: str | None
    predicted: int
    probability: float
    baseline_probability: torch.Tensor
    completeness_gap: torch.Tensor
    input_ids: tuple[int, ...] = ()
    segment_ids: tuple[int, ...] | None = None
    special_mask: tuple[bool, ...] = ()
    output_position: int = 0
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.tokens)
        if self.attributions.dim() != 4 or self.attributions.shape[2:] != (n, n):
            raise InvalidInputError(
                f"attributions must be [layers, heads, {n}, {n}], got {tuple(self.attributions.shape)}"
            )
        if self.attributions.shape[0] != len(self.layers):
            raise InvalidInputError("attributions has one row per entry of `layers`")
        if self.attentions.dim() != 4 or self.attentions.shape[2:] != (n, n):
            raise InvalidInputError(f"attentions must be [num_layers, heads, {n}, {n}]")

    # ------------------------------------------------------------------ shapes
    @property
    def num_layers(self) -> int:
        """Number of layers of the model (rows of ``attentions``)."""
        return int(self.attentions.shape[0])

    @property
    def num_heads(self) -> int:
        """Number of attention heads per layer."""
        return int(self.attentions.shape[1])

    def layer_row(self, layer: int) -> int:
        """Row of ``attributions`` that holds model layer ``layer`` (negative indices count from the end)."""
        resolved = layer + self.num_layers if layer < 0 else layer
        try:
            return self.layers.index(resolved)
        except ValueError:
            raise InvalidInputError(
                f"layer {layer} was not attributed; this result holds layers {list(self.layers)}"
            ) from None

    # ------------------------------------------------------------------ reductions
    def head_scores(self) -> torch.Tensor:
        """Maximum attribution of every head, ``[len(layers), H]`` (the paper's head importance for one input)."""
        return self.attributions.flatten(2).amax(dim=-1)

    def top_interactions(self, k: int = 10) -> pd.DataFrame:
        """The k largest attribution entries over all layers and heads, largest first.

        Returns:
            A DataFrame with columns ``layer, head, from_index, from_token, to_index, to_token, score``;
            "from" is the query token (who attends), "to" the key token (who is attended to, the source of
            the information).
        """
        import pandas as pd

        if k < 1:
            raise InvalidInputError(f"k must be at least 1, got {k}")
        flat = self.attributions.flatten()
        k = min(k, flat.numel())
        scores, idx = torch.topk(flat, k)
        _, H, n, _ = self.attributions.shape
        rows = []
        for score, i in zip(scores.tolist(), idx.tolist(), strict=True):
            row, rest = divmod(i, H * n * n)
            head, rest = divmod(rest, n * n)
            q, key = divmod(rest, n)
            rows.append(
                {
                    "layer": self.layers[row],
                    "head": head,
                    "from_index": q,
                    "from_token": self.tokens[q],
                    "to_index": key,
                    "to_token": self.tokens[key],
                    "score": score,
                }
            )
        return pd.DataFrame(
            rows, columns=["layer", "head", "from_index", "from_token", "to_index", "to_token", "score"]
        )

    # ------------------------------------------------------------------ display (attrflow.viz)
    def to_html(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        token_scores: Mapping[str, TokenScores] | None = None,
        tree: AttributionTree | None = None,
        title: str | None = None,
        heatmap_heads: Literal["auto", "all", "mean"] = "auto",
    ) -> str:
        """The self-contained HTML report (no network needed); also written to ``path`` when given.

        See :func:`attrflow.viz.render_report` for the options. Returns the HTML document.
        """
        from attrflow.viz.report import render_report, write_report

        html = render_report(self, token_scores=token_scores, tree=tree, title=title, heatmap_heads=heatmap_heads)
        if path is not None:
            write_report(html, path)
        return html

    def _repr_html_(self) -> str:
        from attrflow.viz.report import render_report, report_iframe

        return report_iframe(render_report(self))

    def plot(
        self,
        *,
        kind: Literal["attribution", "attention"] = "attribution",
        layer: int = -1,
        head: int | None = None,
        ax: Axes | None = None,
    ) -> Figure:
        """Heatmap of one layer (mean over heads by default); see :func:`attrflow.viz.plot_heatmap`."""
        from attrflow.viz.plots import plot_heatmap

        return plot_heatmap(self, kind=kind, layer=layer, head=head, ax=ax)

    # ------------------------------------------------------------------ serialisation
    def to_parts(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(meta, tensors)``: what :meth:`save` stores."""
        return self._meta(), self._tensors()

    def _meta(self) -> dict[str, Any]:
        return {
            "tokens": list(self.tokens),
            "layers": list(self.layers),
            "target": self.target,
            "target_label": self.target_label,
            "predicted": self.predicted,
            "probability": self.probability,
            "input_ids": list(self.input_ids),
            "segment_ids": None if self.segment_ids is None else list(self.segment_ids),
            "special_mask": list(self.special_mask),
            "output_position": self.output_position,
            "settings": dict(self.settings),
        }

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {
            "attributions": self.attributions,
            "attentions": self.attentions,
            "baseline_probability": self.baseline_probability,
            "completeness_gap": self.completeness_gap,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the result to one ``.safetensors`` file (tensors + JSON metadata), atomically.

        Returns:
            The path written.
        """
        return write_result(path, type(self).__name__, self._meta(), self._tensors())

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON-ready Python objects (tensors become nested lists)."""
        out = self._meta()
        out.update({name: t.tolist() for name, t in self._tensors().items()})
        return out

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` as a JSON file (readable anywhere, larger than :meth:`save`)."""
        target = Path(path)
        atomic_write_bytes(target, json.dumps(self.to_dict()).encode())
        return target

    @classmethod
    def from_parts(cls, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> AttentionAttribution:
        """Rebuild a result from :meth:`to_parts` (used by :func:`attrflow.load_result`)."""
        seg = meta.get("segment_ids")
        return cls(
            tokens=tuple(meta["tokens"]),
            attributions=tensors["attributions"],
            attentions=tensors["attentions"],
            layers=tuple(int(x) for x in meta["layers"]),
            target=int(meta["target"]),
            target_label=meta.get("target_label"),
            predicted=int(meta["predicted"]),
            probability=float(meta["probability"]),
            baseline_probability=tensors["baseline_probability"],
            completeness_gap=tensors["completeness_gap"],
            input_ids=tuple(int(x) for x in meta.get("input_ids", [])),
            segment_ids=None if seg is None else tuple(int(x) for x in seg),
            special_mask=tuple(bool(x) for x in meta.get("special_mask", [])),
            output_position=int(meta.get("output_position", 0)),
            settings=dict(meta.get("settings", {})),
        )

    def __repr__(self) -> str:
        gap = float(self.completeness_gap.abs().max()) if self.completeness_gap.numel() else math.nan
        return (
            f"AttentionAttribution(tokens={len(self.tokens)}, layers={list(self.layers)}, heads={self.num_heads}, "
            f"target={self.target_label or self.target}, probability={self.probability:.4f}, "
            f"max|completeness_gap|={gap:.2e})"
        )


@dataclass(frozen=True, eq=False)
class RecordedAttention:
    """The attention probabilities of every layer on one input, with the model's prediction.

    Attributes:
        tokens: the n real tokens.
        attentions: float32 ``[L, H, n, n]`` (row = query, column = key).
        predicted: predicted class (or next-token id); ``predicted_label`` its name.
        probability: its softmax probability.
        special_mask: True for special tokens.
        output_position: the position whose output the prediction reads.
        input_ids: the n token ids (empty for images).
    """

    tokens: tuple[str, ...]
    attentions: torch.Tensor
    predicted: int
    predicted_label: str | None
    probability: float
    special_mask: tuple[bool, ...] = ()
    output_position: int = 0
    input_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.tokens)
        if self.attentions.dim() != 4 or self.attentions.shape[2:] != (n, n):
            raise InvalidInputError(f"attentions must be [layers, heads, {n}, {n}]")

    def to_html(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        token_scores: Mapping[str, TokenScores] | None = None,
        title: str | None = None,
        heatmap_heads: Literal["auto", "all", "mean"] = "auto",
    ) -> str:
        """Self-contained HTML page of the attention (see :func:`attrflow.viz.render_attention`); also written to
        ``path`` when given. Returns the HTML document."""
        from attrflow.viz.report import render_attention, write_report

        html = render_attention(self, token_scores=token_scores, title=title, heatmap_heads=heatmap_heads)
        if path is not None:
            write_report(html, path)
        return html

    def _repr_html_(self) -> str:
        from attrflow.viz.report import render_attention, report_iframe

        return report_iframe(render_attention(self), height=700)

    def __repr__(self) -> str:
        L, H = self.attentions.shape[:2]
        return f"RecordedAttention(tokens={len(self.tokens)}, layers={L}, heads={H}, predicted={self.predicted_label or self.predicted})"


register_result_type(AttentionAttribution)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Deprecated alias of :func:`attrflow.storage.atomic_write_bytes` (kept until every caller moved)."""
    atomic_write_bytes(path, data)


def _save(path: Path, kind: str, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Path:
    """Deprecated alias of :func:`attrflow.storage.write_result` (kept until every caller moved)."""
    return write_result(path, kind, meta, tensors)
