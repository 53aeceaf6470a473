"""Self-attention attribution (Hao et al.): the scores of every (layer, head, query, key) interaction, or what was
kept of them."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import torch

from attrflow.errors import InvalidInputError
from attrflow.storage import (
    atomic_write_bytes,
    write_result,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from attrflow.analysis.tree import AttributionTree
    from attrflow.results.token_scores import TokenScores


class _Kept:
    """A tensor field that a result may lack (``attrflow.attribute(..., keep=...)``): reading it then raises an
    error that says how to get it, instead of giving None to code that needs the tensor."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: Any = None) -> _Kept: ...
    @overload
    def __get__(self, obj: object, owner: Any = None) -> torch.Tensor: ...
    def __get__(self, obj: object | None, owner: Any = None) -> torch.Tensor | _Kept:
        if obj is None:
            raise AttributeError(self.name)  # no class-level default: the dataclass field stays required
        value: torch.Tensor | None = obj.__dict__[self.name]
        if value is None:
            keep = getattr(obj, "settings", {}).get("keep")
            raise InvalidInputError(
                f"this attribution kept {keep!r}, not the full {self.name} tensor [layers, heads, n, n]; run "
                f"attrflow.attribute(..., keep='full') for it (it needs memory in L·H·n²), or read token_totals, "
                "head_totals and top_interactions()"
            )
        return value

    def __set__(self, obj: object, value: torch.Tensor | None) -> None:
        obj.__dict__[self.name] = value


@dataclass(frozen=True, eq=False, kw_only=True)
class AttentionAttribution:
    """Self-attention attribution of one input (Hao et al., AAAI 2021).

    A result of ``keep="full"`` holds the ``[L, H, n, n]`` tensors; one of ``keep="tokens"`` or
    ``keep=Keep(...)`` (long inputs) holds only the reductions (:attr:`token_totals`, :attr:`head_totals`, the top
    interactions of each head): reading :attr:`attributions` or :attr:`attentions` then raises
    :class:`~attrflow.errors.InvalidInputError` saying so (:attr:`has_full` tells beforehand).

    Attributes:
        tokens: the n real tokens of the input (no padding), as the tokenizer spells them.
        attributions: float32 ``[len(layers), H, n, n]``; entry ``[l, h, i, j]`` is the attribution of the
            interaction "query token i attends to key token j" in head h of layer ``layers[l]``:
            ``A ⊙ ∫₀¹ ∂F(α·A)/∂A dα``, signed. Absent (None given) when only reductions were kept.
        attentions: float32 ``[num_layers, H, n, n]``: the attention probabilities of every layer on the clean
            input (all layers, also when ``layers`` selects fewer). Absent when only reductions were kept.
        layers: the model layers (0-based) that the rows of ``attributions`` belong to.
        target: the explained output: a class index, or for causal LMs a vocabulary id of the next token (for a
            continuation span its first token, for a contrast the first alternative; ``settings["objective"]``
            holds the whole target and what F is).
        target_label: a readable name for ``target`` (``id2label`` or the decoded token; a span's text), if known.
        predicted: the model's prediction on the clean input (class index or next-token id).
        probability: F on the clean input: the softmax probability of ``target`` (a log-probability for span and
            contrastive targets: ``settings["objective"]["quantity"]``).
        baseline_probability: float32 ``[len(layers)]``: F with that layer's attention set to zero (α = 0).
        completeness_gap: float32 ``[len(layers)]``: ``Σ attributions[l] − (probability − baseline[l])``, the
            quadrature error of the integrated-gradients identity for each layer.
        input_ids: the n token ids (empty for image models).
        segment_ids: the segment (token type) of each token, when the model has segments.
        special_mask: True for special tokens ([CLS], [SEP], BOS, ...).
        output_position: the token position whose output is explained (0 for [CLS]-pooled classifiers, the last
            position for causal LMs; -1 when the classifier pools in another way).
        settings: the options the result was computed with (rule, steps, model, task, keep, peak_memory, ...).
        token_totals: float32 ``[len(layers), n]``: ``Σ_h Σ_i attributions[l, h, i, j]``, the attribution of
            everything read from token j in layer l (computed from the full tensor when it is kept).
        head_totals: float32 ``[len(layers), H]``: ``Σ_i Σ_j attributions[l, h, i, j]`` per head.
        top_values: float32 ``[len(layers), H, k]``: each head's k largest attributions, largest first (kept with
            ``Keep(top_k=k)``), else None.
        top_indices: int64 ``[len(layers), H, k, 2]``: the ``(query i, key j)`` of each of ``top_values``.
        top_rest: float32 ``[len(layers), H]``: the exact sum of each head's attributions left out of the top k
            (``head_totals − Σ top_values``).
    """

    tokens: tuple[str, ...]
    attributions: _Kept = _Kept()
    attentions: _Kept = _Kept()
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
    token_totals: torch.Tensor | None = None
    head_totals: torch.Tensor | None = None
    top_values: torch.Tensor | None = None
    top_indices: torch.Tensor | None = None
    top_rest: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n, rows = len(self.tokens), len(self.layers)
        if self.has_full:
            if self.attributions.dim() != 4 or self.attributions.shape[2:] != (n, n):
                raise InvalidInputError(
                    f"attributions must be [layers, heads, {n}, {n}], got {tuple(self.attributions.shape)}"
                )
            if self.attributions.shape[0] != rows:
                raise InvalidInputError("attributions has one row per entry of `layers`")
            if self.attentions.dim() != 4 or self.attentions.shape[2:] != (n, n):
                raise InvalidInputError(f"attentions must be [num_layers, heads, {n}, {n}]")
            full = self.attributions.double()
            object.__setattr__(self, "token_totals", full.sum(dim=(1, 2)).float())
            object.__setattr__(self, "head_totals", full.sum(dim=(2, 3)).float())
        if self.token_totals is None or self.head_totals is None:
            raise InvalidInputError("an attribution needs the full tensors or token_totals and head_totals")
        if self.token_totals.shape != (rows, n):
            raise InvalidInputError(f"token_totals must be [{rows}, {n}], got {tuple(self.token_totals.shape)}")
        if self.head_totals.dim() != 2 or self.head_totals.shape[0] != rows:
            raise InvalidInputError(f"head_totals must be [{rows}, heads], got {tuple(self.head_totals.shape)}")
        top = (self.top_values, self.top_indices, self.top_rest)
        if any(t is not None for t in top) and not (
            self.top_values is not None
            and self.top_indices is not None
            and self.top_rest is not None
            and self.top_values.shape[:2] == self.head_totals.shape
            and self.top_indices.shape == (*self.top_values.shape, 2)
            and self.top_rest.shape == self.head_totals.shape
        ):
            raise InvalidInputError("top_values [layers, H, k], top_indices [layers, H, k, 2] and top_rest go together")

    # ------------------------------------------------------------------ shapes
    @property
    def has_full(self) -> bool:
        """Whether the full ``[L, H, n, n]`` tensors were kept (``keep="full"``)."""
        return self.__dict__.get("attributions") is not None and self.__dict__.get("attentions") is not None

    @property
    def num_layers(self) -> int:
        """Number of layers of the model (rows of ``attentions``)."""
        if not self.has_full:
            return int(self.settings.get("num_layers", max(self.layers, default=-1) + 1))
        return int(self.attentions.shape[0])

    @property
    def num_heads(self) -> int:
        """Number of attention heads per layer."""
        assert self.head_totals is not None
        return int(self.head_totals.shape[1])

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
        if not self.has_full and self.top_values is not None and self.top_values.shape[-1] > 0:
            return self.top_values[..., 0]
        return self.attributions.flatten(2).amax(dim=-1)

    def _top(self, k: int) -> tuple[list[float], list[tuple[int, int, int, int]]]:
        """The k largest entries as scores and ``(row, head, query, key)``, from the full tensor or the kept top-k."""
        if self.has_full:
            flat = self.attributions.flatten()
            scores, idx = torch.topk(flat, min(k, flat.numel()))
            _, H, n, _ = self.attributions.shape
            where = []
            for i in idx.tolist():
                row, rest = divmod(i, H * n * n)
                head, rest = divmod(rest, n * n)
                where.append((row, head, *divmod(rest, n)))
            return scores.tolist(), where
        if self.top_values is None or self.top_indices is None or self.top_values.shape[-1] < k:
            kept = 0 if self.top_values is None else int(self.top_values.shape[-1])
            raise InvalidInputError(
                f"this attribution kept the top {kept} interactions of each head; ask for at most {kept}, or run "
                f"attrflow.attribute(..., keep=attrflow.Keep(top_k={k}))"
            )
        L, H, kept = self.top_values.shape
        scores, idx = torch.topk(self.top_values.flatten(), min(k, L * H * kept))
        where = []
        for i in idx.tolist():
            row, rest = divmod(i, H * kept)
            head, rank = divmod(rest, kept)
            q, key = self.top_indices[row, head, rank].tolist()
            where.append((row, head, int(q), int(key)))
        return scores.tolist(), where

    def top_interactions(self, k: int = 10) -> pd.DataFrame:
        """The k largest attribution entries over all layers and heads, largest first.

        Exact also for a result that kept the top-k of each head (``keep=Keep(top_k=K)``, k ≤ K): the k largest
        entries overall are among every head's K largest.

        Returns:
            A DataFrame with columns ``layer, head, from_index, from_token, to_index, to_token, score``;
            "from" is the query token (who attends), "to" the key token (who is attended to, the source of
            the information).
        """
        import pandas as pd

        if k < 1:
            raise InvalidInputError(f"k must be at least 1, got {k}")
        rows = []
        for score, (row, head, q, key) in zip(*self._top(k), strict=True):
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
        defaults: bool = True,
        back: tuple[str, str] | None = None,
    ) -> str:
        """The self-contained HTML report (no network needed); also written to ``path`` when given.

        See :func:`attrflow.viz.render_report` for the options; without ``tree`` the default attribution tree
        (:func:`attrflow.attribution_tree`, root [CLS] or the top token) is drawn. Returns the HTML document.
        """
        from attrflow.viz.report import render_report, write_report

        html = render_report(
            self,
            token_scores=token_scores,
            tree=tree if tree is not None else self._default_tree(),
            title=title,
            heatmap_heads=heatmap_heads,
            defaults=defaults,
            back=back,
        )
        if path is not None:
            write_report(html, path)
        return html

    def _default_tree(self) -> AttributionTree | None:
        from attrflow.analysis.tree import attribution_tree

        try:
            root = "cls" if 0 <= self.output_position < len(self.tokens) else "top-token"
            return attribution_tree(self, root=root)  # type: ignore[arg-type]
        except InvalidInputError:
            return None

    def _repr_html_(self) -> str:
        from attrflow.viz.report import report_iframe

        return report_iframe(self.to_html())

    def explore(self, *, title: str | None = None, heads: bool | Literal["auto"] = "auto", height: int = 1100) -> Any:
        """The explorer's views of this attribution, inline (see :meth:`attrflow.Explanation.explore`): the
        report's token scores, the flow graph, heatmaps per layer and head, head scores and the attribution tree."""
        from attrflow.viz.explore import explore_view

        return explore_view(result=self, tree=self._default_tree(), title=title, heads=heads, height=height)

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
        tensors = {
            "baseline_probability": self.baseline_probability,
            "completeness_gap": self.completeness_gap,
        }
        if self.has_full:
            tensors.update(attributions=self.attributions, attentions=self.attentions)
            return tensors
        for name in ("token_totals", "head_totals", "top_values", "top_indices", "top_rest"):
            value = getattr(self, name)
            if value is not None:
                tensors[name] = value
        return tensors

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
            attributions=tensors.get("attributions"),
            attentions=tensors.get("attentions"),
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
            token_totals=tensors.get("token_totals"),
            head_totals=tensors.get("head_totals"),
            top_values=tensors.get("top_values"),
            top_indices=tensors.get("top_indices"),
            top_rest=tensors.get("top_rest"),
        )

    def __repr__(self) -> str:
        gap = float(self.completeness_gap.abs().max()) if self.completeness_gap.numel() else math.nan
        return (
            f"AttentionAttribution(tokens={len(self.tokens)}, layers={list(self.layers)}, heads={self.num_heads}, "
            f"target={self.target_label or self.target}, probability={self.probability:.4f}, "
            f"max|completeness_gap|={gap:.2e})"
        )
