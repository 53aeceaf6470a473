"""Result objects: frozen dataclasses that save, load, tabulate and render themselves.

Tensors are stored with safetensors and everything else as JSON in the same file's metadata, under a schema
version; nothing is ever pickled.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

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

__all__ = ["SCHEMA_VERSION", "AttentionAttribution", "RecordedAttention", "Summary", "TokenScores", "load_result"]

Summary = Literal["last", "sum"]
"""How per-layer scores ``[L, n]`` become one vector: the top layer's row (cumulative methods such as rollout) or
the sum over layers (per-layer contributions such as AttAttr)."""


def _floats(values: Any) -> torch.Tensor:
    """Scores as a CPU tensor: float64 stays float64, every other real dtype becomes float32."""
    if isinstance(values, torch.Tensor):
        tensor = values.detach().to("cpu")
    else:
        try:
            raw = values.tolist() if hasattr(values, "tolist") else list(values)
            if any(isinstance(v, (str, bytes, bool)) for v in raw):
                raise TypeError("non-numeric entries")
            tensor = torch.as_tensor(raw, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InvalidInputError(f"token scores must be numbers, one per token ({exc})") from exc
    if tensor.is_complex() or not (tensor.is_floating_point() or tensor.dtype in (torch.int32, torch.int64)):
        raise InvalidInputError(f"token scores must be real numbers, got dtype {tensor.dtype}")
    return tensor if tensor.dtype == torch.float64 else tensor.to(torch.float32)


@dataclass(frozen=True, eq=False)
class TokenScores:
    """One importance score per input token from one explanation method (the result of
    :func:`attrflow.token_scores`).

    Attributes:
        method: the registered method's name (``"rollout"``, ``"attattr"``, ...).
        tokens: the n real tokens.
        scores: float32 ``[n]``, or ``[L, n]`` for per-layer methods (row k belongs to model layer ``layers[k]``,
            bottom to top).
        description: how the scores were obtained, in words (layer, output position, head fusion, ...): "the
            attention to token j" means nothing without it.
        position: the output position explained (its row, or the model output read there); -1 when the method
            reduces over all rows.
        layers: the model layer of each row of ``scores`` (per-layer methods), else ``()``.
        summary: how per-layer scores become one vector (:attr:`overall`): ``"last"`` or ``"sum"``.
        matrices: float32 ``[len(layers), n, n]``: the per-layer token-to-token matrices the method works on (row =
            output token of layer l, column = input token of layer l), or None.
        target: the explained output (class index or vocabulary id), when the method reads the model's output.
        target_label: a readable name of ``target``.
        predicted: the model's prediction on the input.
        probability: the probability of ``target`` on the input.
        special_mask: True for special tokens.
        completeness_gap: the quadrature error of integral methods (``Σ scores − (F(x) − F(baseline))``), else None.
        diagnostics: further numbers the method reports about its own trustworthiness (e.g. gradient cancellation).
        settings: the options used (and the model's name).
        bounds: float32 ``[2, *scores.shape]``: certified lower (``[0]``) and upper (``[1]``) bounds on each score,
            for methods that bound a value they do not compute exactly (``flow_bounds``); else None.
    """

    method: str
    tokens: tuple[str, ...]
    scores: torch.Tensor
    description: str = ""
    position: int = 0
    layers: tuple[int, ...] = ()
    summary: Summary = "last"
    matrices: torch.Tensor | None = None
    target: int | None = None
    target_label: str | None = None
    predicted: int | None = None
    probability: float | None = None
    special_mask: tuple[bool, ...] = ()
    completeness_gap: float | None = None
    diagnostics: Mapping[str, float] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    bounds: torch.Tensor | None = None

    kind = "TokenScores"

    def __post_init__(self) -> None:
        if isinstance(self.scores, str):  # the report's TokenScores(method, values, reduction) before the registry
            warnings.warn(
                "TokenScores(method, values, reduction) is deprecated; use TokenScores.from_values(method, values, "
                "reduction) or TokenScores(method=..., tokens=..., scores=..., description=...)",
                DeprecationWarning,
                stacklevel=3,
            )
            values, reduction = self.tokens, self.scores
            object.__setattr__(self, "tokens", ())
            object.__setattr__(self, "scores", values)
            object.__setattr__(self, "description", reduction)
        scores = _floats(self.scores)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "tokens", tuple(str(t) for t in self.tokens))
        object.__setattr__(self, "layers", tuple(int(layer) for layer in self.layers))
        n = scores.shape[-1] if scores.dim() else 0
        if scores.dim() not in (1, 2):
            raise InvalidInputError(f"scores must be [n] or [layers, n], got shape {tuple(scores.shape)}")
        if self.tokens and n != len(self.tokens):
            raise InvalidInputError(f"{self.method}: {n} scores for {len(self.tokens)} tokens")
        if scores.dim() == 2 and len(self.layers) != scores.shape[0]:
            raise InvalidInputError(f"{self.method}: scores have {scores.shape[0]} layer rows but layers={self.layers}")
        if self.summary not in ("last", "sum"):
            raise InvalidInputError(f"summary must be 'last' or 'sum', got {self.summary!r}")
        if self.matrices is not None:
            matrices = _floats(self.matrices)
            if matrices.dim() != 3 or matrices.shape[1:] != (n, n):
                raise InvalidInputError(f"matrices must be [layers, {n}, {n}], got {tuple(matrices.shape)}")
            object.__setattr__(self, "matrices", matrices)
        if self.bounds is not None:
            bounds = _floats(self.bounds)
            if bounds.shape != (2, *scores.shape):
                raise InvalidInputError(
                    f"bounds must be [2, {', '.join(map(str, scores.shape))}], got {tuple(bounds.shape)}"
                )
            object.__setattr__(self, "bounds", bounds)

    # ------------------------------------------------------------------ reading
    @property
    def per_layer(self) -> bool:
        """Whether :attr:`scores` holds one row per layer."""
        return self.scores.dim() == 2

    @property
    def overall(self) -> torch.Tensor:
        """One score per token ``[n]``: the scores, or for per-layer methods the top layer's row
        (``summary="last"``) or the sum over layers (``"sum"``)."""
        if not self.per_layer:
            return self.scores
        if self.summary == "sum":
            return self.scores.double().sum(dim=0).float()
        return self.scores[-1]

    def at(self, layer: int) -> torch.Tensor:
        """The scores ``[n]`` at model layer ``layer`` (negatives count from the top layer computed)."""
        if not self.per_layer:
            raise InvalidInputError(f"{self.method} gives one score vector, not one per layer")
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise InvalidInputError(f"layer must be a whole number, got {layer!r}")
        if layer < 0:
            if not -len(self.layers) <= layer:
                raise InvalidInputError(f"layer {layer} is out of range for {len(self.layers)} layers")
            return self.scores[layer]
        if layer not in self.layers:
            raise InvalidInputError(f"layer {layer} was not computed; this result holds layers {list(self.layers)}")
        return self.scores[self.layers.index(layer)]

    @property
    def overall_description(self) -> str:
        """:attr:`description`, and for per-layer methods which layer(s) :attr:`overall` shows."""
        if not self.per_layer:
            return self.description
        shown = f"last layer ({self.layers[-1]})" if self.summary == "last" else "sum over layers"
        return f"{self.description}; shown: {shown}"

    @property
    def values(self) -> tuple[float, ...]:
        """:attr:`overall` as a tuple of floats."""
        return tuple(float(v) for v in self.overall.double().tolist())

    @property
    def reduction(self) -> str:
        """Alias of :attr:`description` (the name the report used before the method registry)."""
        return self.description

    @classmethod
    def from_values(cls, method: str, values: Any, reduction: str, *, tokens: tuple[str, ...] = ()) -> TokenScores:
        """Scores ``[n]`` from a tensor, an array or a sequence, with the words that say how they were obtained."""
        return cls(method=method, tokens=tokens, scores=_floats(values), description=reduction)

    def top(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The k highest :attr:`overall` scores as ``(position, token, score)``, highest first."""
        order = sorted(range(self.overall.numel()), key=lambda i: -float(self.overall[i]))[:k]
        return [(i, self.tokens[i] if self.tokens else str(i), float(self.overall[i])) for i in order]

    def to_frame(self) -> pd.DataFrame:
        """One row per token (``position``, ``token``, ``special``, ``score``), plus one ``layer_<l>`` column per
        layer for per-layer methods."""
        import pandas as pd

        n = self.overall.numel()
        frame = pd.DataFrame(
            {
                "position": range(n),
                "token": list(self.tokens) if self.tokens else [str(i) for i in range(n)],
                "special": list(self.special_mask) if len(self.special_mask) == n else [False] * n,
                "score": self.overall.double().numpy(),
            }
        )
        if self.per_layer:
            for row, layer in enumerate(self.layers):
                frame[f"layer_{layer}"] = self.scores[row].double().numpy()
        return frame

    # ------------------------------------------------------------------ display (attrflow.viz)
    def to_html(self, path: str | os.PathLike[str] | None = None, *, title: str | None = None) -> str:
        """A self-contained HTML page of the scores (per layer for per-layer methods); written to ``path`` if given."""
        from attrflow.viz.page import write_page
        from attrflow.viz.scores import render_token_scores_page

        html = render_token_scores_page(self, title=title)
        if path is not None:
            write_page(html, path)
        return html

    def _repr_html_(self) -> str:
        from attrflow.viz.page import iframe

        return iframe(self.to_html(), height=320 + (30 * len(self.layers)))

    def explore(self, *, title: str | None = None, height: int = 700) -> Any:
        """The explorer's views of these scores, inline (see :meth:`attrflow.Explanation.explore`): the token
        scores and, when the method has per-layer matrices, the flow graph and heatmaps."""
        from attrflow.viz.explore import explore_view

        return explore_view(scores={self.method: self}, title=title, height=height)

    def plot(self, *, ax: Axes | None = None, layer: int | None = None) -> Figure:
        """Bar chart of the scores (:attr:`overall`, or one ``layer``); see :func:`attrflow.viz.plot_token_scores`."""
        from attrflow.viz.plots import plot_token_scores

        shown = self
        if layer is not None:
            where = f"layer {self.layers[layer] if layer < 0 else layer}"
            shown = TokenScores(self.method, self.tokens, self.at(layer), description=f"{self.description}; {where}")
        return plot_token_scores(self.tokens, shown, special_mask=self.special_mask, ax=ax)

    # ------------------------------------------------------------------ serialisation
    def to_parts(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(meta, tensors)``: what :meth:`save` stores."""
        meta = {
            "method": self.method,
            "tokens": list(self.tokens),
            "description": self.description,
            "position": self.position,
            "layers": list(self.layers),
            "summary": self.summary,
            "target": self.target,
            "target_label": self.target_label,
            "predicted": self.predicted,
            "probability": self.probability,
            "special_mask": list(self.special_mask),
            "completeness_gap": self.completeness_gap,
            "diagnostics": dict(self.diagnostics),
            "settings": dict(self.settings),
        }
        tensors = {"scores": self.scores}
        if self.matrices is not None:
            tensors["matrices"] = self.matrices
        if self.bounds is not None:
            tensors["bounds"] = self.bounds
        return meta, tensors

    @classmethod
    def from_parts(cls, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> TokenScores:
        """Rebuild from :meth:`to_parts` (used by :func:`attrflow.load_result`)."""

        def optional(key: str, kind: type) -> Any:
            value = meta.get(key)
            if value is not None and not isinstance(value, kind):
                raise TypeError(f"{key} must be {kind.__name__}, got {type(value).__name__}")
            return value

        return cls(
            method=str(meta["method"]),
            tokens=tuple(meta["tokens"]),
            scores=tensors["scores"],
            description=str(meta.get("description", "")),
            position=int(meta.get("position", 0)),
            layers=tuple(int(x) for x in meta.get("layers", [])),
            summary=meta.get("summary", "last"),
            matrices=tensors.get("matrices"),
            target=optional("target", int),
            target_label=optional("target_label", str),
            predicted=optional("predicted", int),
            probability=optional("probability", (int, float)),  # type: ignore[arg-type]
            special_mask=tuple(bool(x) for x in meta.get("special_mask", [])),
            completeness_gap=optional("completeness_gap", (int, float)),  # type: ignore[arg-type]
            diagnostics={str(k): float(v) for k, v in dict(meta.get("diagnostics", {})).items()},
            settings=dict(meta.get("settings", {})),
            bounds=tensors.get("bounds"),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to one ``.safetensors`` file (tensors + JSON metadata + checksum), atomically. Returns the path."""
        meta, tensors = self.to_parts()
        return write_result(path, self.kind, meta, tensors)

    def __repr__(self) -> str:
        shape = "x".join(str(d) for d in self.scores.shape)
        top = ", ".join(f"{token} {score:.3g}" for _, token, score in self.top(3))
        return f"TokenScores(method={self.method!r}, scores[{shape}], top: {top})"


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


register_result_type(AttentionAttribution)
register_result_type(RecordedAttention)
register_result_type(TokenScores)
