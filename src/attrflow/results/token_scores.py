"""Token scores: one score per token (and per layer for per-layer methods), from any registered method."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
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
