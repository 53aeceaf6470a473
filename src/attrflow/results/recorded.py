"""Recorded attention: every layer's attention probabilities on one input, with the prediction."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from attrflow.errors import InvalidInputError
from attrflow.storage import (
    write_result,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from attrflow.results.token_scores import TokenScores


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

    kind = "RecordedAttention"

    @property
    def num_layers(self) -> int:
        """Number of layers."""
        return int(self.attentions.shape[0])

    @property
    def num_heads(self) -> int:
        """Number of heads per layer."""
        return int(self.attentions.shape[1])

    def to_frame(self) -> pd.DataFrame:
        """Long format: one row per (layer, head, query, key) with the attention probability."""
        import pandas as pd

        L, H, n, _ = self.attentions.shape
        index = pd.MultiIndex.from_product(
            [range(L), range(H), range(n), range(n)], names=["layer", "head", "query", "key"]
        )
        frame = pd.DataFrame({"attention": self.attentions.double().flatten().numpy()}, index=index).reset_index()
        frame["query_token"] = [self.tokens[i] for i in frame["query"]]
        frame["key_token"] = [self.tokens[j] for j in frame["key"]]
        return frame

    def plot(self, *, layer: int = -1, head: int | None = None, ax: Axes | None = None) -> Figure:
        """Heatmap of one layer's attention (mean over heads by default); see :func:`attrflow.viz.plot_heatmap`."""
        from attrflow.viz.plots import plot_heatmap

        return plot_heatmap(self, kind="attention", layer=layer, head=head, ax=ax)  # type: ignore[arg-type]

    def to_parts(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(meta, tensors)``: what :meth:`save` stores."""
        meta = {
            "tokens": list(self.tokens),
            "predicted": self.predicted,
            "predicted_label": self.predicted_label,
            "probability": self.probability,
            "special_mask": list(self.special_mask),
            "output_position": self.output_position,
            "input_ids": list(self.input_ids),
        }
        return meta, {"attentions": self.attentions}

    @classmethod
    def from_parts(cls, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> RecordedAttention:
        """Rebuild from :meth:`to_parts` (used by :func:`attrflow.load_result`)."""
        return cls(
            tokens=tuple(str(t) for t in meta["tokens"]),
            attentions=tensors["attentions"],
            predicted=int(meta["predicted"]),
            predicted_label=meta.get("predicted_label"),
            probability=float(meta["probability"]),
            special_mask=tuple(bool(x) for x in meta.get("special_mask", [])),
            output_position=int(meta.get("output_position", 0)),
            input_ids=tuple(int(x) for x in meta.get("input_ids", [])),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to one ``.safetensors`` file (tensors + JSON metadata + checksum), atomically. Returns the path."""
        meta, tensors = self.to_parts()
        return write_result(path, self.kind, meta, tensors)

    def to_html(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        token_scores: Mapping[str, TokenScores] | None = None,
        title: str | None = None,
        heatmap_heads: Literal["auto", "all", "mean"] = "auto",
        defaults: bool = True,
        back: tuple[str, str] | None = None,
    ) -> str:
        """Self-contained HTML page of the attention (see :func:`attrflow.viz.render_attention`); also written to
        ``path`` when given. Returns the HTML document."""
        from attrflow.viz.report import render_attention, write_report

        html = render_attention(
            self, token_scores=token_scores, title=title, heatmap_heads=heatmap_heads, defaults=defaults, back=back
        )
        if path is not None:
            write_report(html, path)
        return html

    def _repr_html_(self) -> str:
        from attrflow.viz.report import render_attention, report_iframe

        return report_iframe(render_attention(self), height=700)

    def explore(self, *, title: str | None = None, heads: bool | Literal["auto"] = "auto", height: int = 1000) -> Any:
        """The explorer's views of this attention, inline (see :meth:`attrflow.Explanation.explore`)."""
        from attrflow.viz.explore import explore_view

        return explore_view(result=self, title=title, heads=heads, height=height)

    def __repr__(self) -> str:
        L, H = self.attentions.shape[:2]
        return f"RecordedAttention(tokens={len(self.tokens)}, layers={L}, heads={H}, predicted={self.predicted_label or self.predicted})"
