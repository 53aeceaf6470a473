"""The explorer's data and pages: one explanation as JSON-ready data, drawn by ``static/explore.js``.

The same page serves two places. ``attrflow explore`` (:mod:`attrflow.explore`) serves it with a JSON API behind it
(type a sentence, pick methods, what-if edits); ``Explanation.explore()`` and the ``explore()`` of the result types
inline it with one already-computed result, so it works offline in Jupyter and in a notebook's exported HTML (no
server: what-if is off there). The page draws from :func:`explanation_data` only and never names a method: every
registered method's token scores, per-layer rows and per-layer matrices are shown the same way.

Matrices travel compactly: ``"exact"`` (base64, little-endian, at the tensor's own precision: float32, or float64
for float64 results), ``"float16"`` (each ``n × n`` matrix divided
by its largest magnitude, as the report embeds them: three significant digits) or ``"lists"`` (nested lists, exactly
as :meth:`Explanation.to_dict` gives them). :func:`decode_array` reads any of them back.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from attrflow.errors import InvalidInputError
from attrflow.results import AttentionAttribution
from attrflow.viz.page import Page, iframe, static_text, write_page

if TYPE_CHECKING:
    import os

    from attrflow.analysis.explanation import Explanation
    from attrflow.analysis.tree import AttributionTree
    from attrflow.results import RecordedAttention, TokenScores

__all__ = [
    "ExploreView",
    "MatrixEncoding",
    "app_page",
    "decode_array",
    "encode_array",
    "explanation_data",
    "explore_view",
    "head_block",
    "render_explorer",
]

MatrixEncoding = Literal["exact", "float16", "lists", "auto"]
"""How matrices travel: ``exact`` base64 (float32 or float64, as the tensor is), ``float16`` base64 scaled per
matrix, nested ``lists``, or ``auto`` (exact while every matrix of the result fits in 4 MB, else float16)."""
Encoding = Literal["exact", "float16", "lists"]

HeadsChoice = bool | Literal["auto"]

ENCODINGS: tuple[str, ...] = ("exact", "float16", "lists", "auto")
_AUTO_EXACT_BYTES = 4_000_000
_AUTO_HEADS_BYTES = 8_000_000  # the report's rule: per-head matrices while they stay under 8 MB at float16
DATA_VERSION = 1


# ---------------------------------------------------------------------------------------------- arrays
def encode_array(tensor: torch.Tensor, encoding: Encoding) -> Any:
    """A tensor as JSON-ready data.

    ``exact``: ``{"dtype": "float32" | "float64", "shape", "data"}`` (base64 of the little-endian values at the
    tensor's own precision: float64 tensors stay float64, every other dtype is float32). ``float16``: ``{"dtype": "float16", "shape", "scales", "data"}``, each trailing ``[n, n]`` matrix (or
    the whole vector for 1-D input) divided by its largest magnitude, one scale per matrix. ``lists``: nested lists of
    floats (``tensor.double().tolist()``). Non-finite entries become 0 in the binary forms.
    """
    values = tensor.detach().to("cpu")
    if encoding == "lists":
        return values.double().tolist()
    shape = [int(s) for s in values.shape]
    finite = torch.nan_to_num(values.to(torch.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if encoding == "exact":
        wide = values.dtype == torch.float64
        exact = torch.nan_to_num(values.to(torch.float64 if wide else torch.float32), nan=0.0, posinf=0.0, neginf=0.0)
        raw = exact.contiguous().numpy().astype("<f8" if wide else "<f4").tobytes()
        dtype = "float64" if wide else "float32"
        return {"dtype": dtype, "shape": shape, "data": base64.b64encode(raw).decode("ascii")}
    if encoding != "float16":
        raise InvalidInputError(f"encoding must be 'exact', 'float16' or 'lists', got {encoding!r}")
    per = shape[-2] * shape[-1] if len(shape) >= 2 else max(shape[-1] if shape else 1, 1)
    flat = finite.reshape(-1, per) if finite.numel() else finite.reshape(0, max(per, 1))
    scales = flat.abs().amax(dim=1) if flat.numel() else torch.zeros(flat.shape[0])
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    half = (flat / safe[:, None]).to(torch.float16).numpy().astype("<f2").tobytes()
    return {
        "dtype": "float16",
        "shape": shape,
        "scales": [float(s) for s in scales.tolist()],
        "data": base64.b64encode(half).decode("ascii"),
    }


def decode_array(block: Any) -> np.ndarray:
    """The array of a block from :func:`encode_array` (float32; float64 for float64 blocks), of nested lists
    (float32), or of None (empty)."""
    if block is None:
        return np.zeros(0, dtype=np.float32)
    if isinstance(block, list):
        return np.asarray(block, dtype=np.float32)
    if not isinstance(block, Mapping) or "dtype" not in block:
        raise InvalidInputError("not an encoded array: expected a list or a mapping with 'dtype', 'shape', 'data'")
    shape = tuple(int(s) for s in block["shape"])
    raw = base64.b64decode(block["data"])
    if block["dtype"] == "float32":
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
    if block["dtype"] == "float64":
        return np.frombuffer(raw, dtype="<f8").astype(np.float64).reshape(shape)
    if block["dtype"] == "float16":
        values = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        scales = np.asarray(block["scales"], dtype=np.float32)
        count = max(len(scales), 1)
        return (values.reshape(count, -1) * scales.reshape(-1, 1)).reshape(shape)
    raise InvalidInputError(f"unknown dtype {block['dtype']!r} of an encoded array")


def _plain(value: Any) -> Any:
    """JSON-ready: non-finite floats become None, tuples lists, anything unknown its ``str``."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (np.floating, np.integer)):
        return _plain(value.item())
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _plain(value.tolist())
    return str(value)


def _floats(values: Sequence[float] | torch.Tensor) -> list[float | None]:
    items = values.double().tolist() if isinstance(values, torch.Tensor) else list(values)
    return [float(v) if math.isfinite(v) else None for v in items]


# ---------------------------------------------------------------------------------------------- the data
def _method_entry(scores: TokenScores, encoding: Encoding) -> dict[str, Any]:
    """One method's entry: the keys of ``Explanation.to_dict()["methods"][name]`` (matrices encoded) and more."""
    return {
        "description": scores.description,
        "overall": _floats(scores.overall),
        "scores": _plain(scores.scores.double().tolist()),
        "layers": list(scores.layers),
        "summary": scores.summary,
        "position": scores.position,
        "completeness_gap": _plain(scores.completeness_gap),
        "diagnostics": _plain(dict(scores.diagnostics)),
        "settings": _plain(dict(scores.settings)),
        "matrices": None if scores.matrices is None else encode_array(scores.matrices, encoding),
        "overall_description": scores.overall_description,
        "per_layer": scores.per_layer,
        "target": scores.target,
        "target_label": scores.target_label,
    }


def _matrix_bytes(
    result: AttentionAttribution | RecordedAttention | None, scores: Mapping[str, TokenScores], heads: bool
) -> int:
    total = sum(s.matrices.numel() * s.matrices.element_size() for s in scores.values() if s.matrices is not None)
    if result is not None:
        per = result.attentions[0, 0].numel() * (result.num_heads if heads else 1)
        rows = result.num_layers + (len(result.layers) if isinstance(result, AttentionAttribution) else 0)
        total += 4 * per * rows
    return total


def _is_attribution(result: object) -> bool:
    return isinstance(result, AttentionAttribution)


def choose_heads(result: AttentionAttribution | RecordedAttention | None, heads: HeadsChoice) -> bool:
    """Whether per-head matrices go into the data (``"auto"``: while they stay under 8 MB at float16)."""
    if result is None:
        return False
    if heads == "auto":
        n = len(result.tokens)
        rows = result.num_layers + (len(result.layers) if isinstance(result, AttentionAttribution) else 0)
        return 2 * rows * result.num_heads * n * n <= _AUTO_HEADS_BYTES
    if not isinstance(heads, bool):
        raise InvalidInputError(f"heads must be true, false or 'auto', got {heads!r}")
    return heads


def _result_matrices(
    result: AttentionAttribution | RecordedAttention, heads: bool, encoding: Encoding
) -> dict[str, Any]:
    def block(tensor: torch.Tensor, layers: Sequence[int]) -> dict[str, Any]:
        values = tensor.detach().float() if heads else tensor.detach().float().mean(dim=1, keepdim=True)
        return {
            "layers": [int(layer) for layer in layers],
            "heads": int(tensor.shape[1]),
            "per_head": heads,
            "data": encode_array(values, encoding),
        }

    out = {"attention": block(result.attentions, range(result.num_layers))}
    if _is_attribution(result):
        attribution: AttentionAttribution = result  # type: ignore[assignment]
        out["attribution"] = block(attribution.attributions, attribution.layers)
    return out


def explanation_data(
    explanation: Explanation | None = None,
    *,
    result: AttentionAttribution | RecordedAttention | None = None,
    scores: Mapping[str, TokenScores] | None = None,
    tree: AttributionTree | None = None,
    skipped: Mapping[str, str] | None = None,
    encoding: MatrixEncoding = "exact",
    heads: HeadsChoice = "auto",
) -> dict[str, Any]:
    """Everything the explorer page draws for one input, JSON-ready.

    Give an :class:`~attrflow.Explanation`, or its parts (a result, token scores, a tree) — e.g. one
    :class:`~attrflow.TokenScores` alone. The keys of :meth:`Explanation.to_dict` are all there with the same values
    (per-layer matrices encoded as ``encoding`` says; ``"lists"`` gives exactly ``to_dict``'s); besides them:
    ``matrices`` (the result's attention and attribution per layer, per head when ``heads``, else the mean over
    heads), ``head_scores`` (AttAttr's per-head maximum), ``num_layers``, ``num_heads``, ``settings``,
    ``baseline_probability``, ``encoding``.

    Args:
        explanation: what :func:`attrflow.explain` returned.
        result, scores, tree, skipped: the parts, when there is no explanation.
        encoding: how matrices travel (:data:`MatrixEncoding`).
        heads: embed per-head attention and attribution (``"auto"``: while under 8 MB at float16).
    """
    if encoding not in ENCODINGS:
        raise InvalidInputError(f"encoding must be one of {', '.join(ENCODINGS)}; got {encoding!r}")
    if explanation is not None:
        result, scores, tree, skipped = explanation.result, explanation.scores, explanation.tree, explanation.skipped
    rows = dict(scores or {})
    if result is None and not rows:
        raise InvalidInputError("nothing to explore: give an explanation, a result or token scores")
    per_head = choose_heads(result, heads)
    chosen: Encoding
    if encoding == "auto":
        chosen = "exact" if _matrix_bytes(result, rows, per_head) <= _AUTO_EXACT_BYTES else "float16"
    else:
        chosen = encoding
    data = _facts(result, rows)
    data["methods"] = {name: _method_entry(s, chosen) for name, s in rows.items()}
    data["skipped"] = dict(skipped or {})
    if tree is not None:
        data["tree"] = _plain(tree.to_dict())
    data["matrices"] = {} if result is None else _result_matrices(result, per_head, chosen)
    data["head_scores"] = None
    if result is not None and _is_attribution(result):
        attribution: AttentionAttribution = result  # type: ignore[assignment]
        data["head_scores"] = {"layers": list(attribution.layers), "values": _plain(attribution.head_scores().tolist())}
    data["encoding"] = chosen
    data["per_head"] = per_head
    data["version"] = DATA_VERSION
    return data


def _facts(result: AttentionAttribution | RecordedAttention | None, rows: Mapping[str, TokenScores]) -> dict[str, Any]:
    """Tokens, prediction and settings: from the result, else from the first token scores."""
    if result is None:
        first = next(iter(rows.values()))
        return {
            "tokens": list(first.tokens),
            "special_mask": list(first.special_mask),
            "output_position": first.position,
            "predicted": first.predicted,
            "probability": _plain(first.probability),
            "target": first.target,
            "target_label": first.target_label,
            "num_layers": max((len(s.layers) for s in rows.values()), default=0),
            "num_heads": 0,
            "settings": _plain(dict(first.settings)),
            "kind": None,
        }
    facts: dict[str, Any] = {
        "tokens": list(result.tokens),
        "special_mask": list(result.special_mask),
        "output_position": result.output_position,
        "predicted": result.predicted,
        "probability": float(result.probability),
        "num_layers": result.num_layers,
        "num_heads": result.num_heads,
        "kind": type(result).__name__,
    }
    if _is_attribution(result):
        attribution: AttentionAttribution = result  # type: ignore[assignment]
        facts["target"] = attribution.target
        facts["target_label"] = attribution.target_label
        facts["completeness_gap"] = _floats(attribution.completeness_gap)
        facts["baseline_probability"] = _floats(attribution.baseline_probability)
        facts["settings"] = _plain(dict(attribution.settings))
    else:
        recorded: RecordedAttention = result  # type: ignore[assignment]
        facts["predicted_label"] = recorded.predicted_label
        facts["settings"] = {}
    return facts


def head_block(
    result: AttentionAttribution | RecordedAttention,
    kind: str,
    *,
    layer: int | None = None,
    head: int | None = None,
    encoding: Encoding = "float16",
) -> dict[str, Any]:
    """Per-head matrices of ``kind`` (``"attention"`` or ``"attribution"``), for the explorer's on-demand views.

    Args:
        layer: a row of the kind's layers (0-based index into ``layers``), or None for all rows.
        head: one head, or None for every head.

    Returns:
        ``{"kind", "layers", "heads", "data"}``; ``data`` has shape ``[rows, heads, n, n]``.
    """
    if kind == "attention":
        tensor, layers = result.attentions, tuple(range(result.num_layers))
    elif kind == "attribution" and _is_attribution(result):
        attribution: AttentionAttribution = result  # type: ignore[assignment]
        tensor, layers = attribution.attributions, attribution.layers
    else:
        available = "attention, attribution" if _is_attribution(result) else "attention"
        raise InvalidInputError(f"no per-head matrices of kind {kind!r} in this result; available: {available}")
    rows = list(range(len(layers)))
    heads = list(range(int(tensor.shape[1])))
    if layer is not None:
        if not 0 <= layer < len(layers):
            raise InvalidInputError(f"layer row {layer} is out of range: this result has {len(layers)} layer rows")
        rows = [layer]
    if head is not None:
        if not 0 <= head < len(heads):
            raise InvalidInputError(f"head {head} is out of range: this result has {len(heads)} heads")
        heads = [head]
    values = tensor.detach().float()[rows][:, heads]
    return {
        "kind": kind,
        "layers": [int(layers[r]) for r in rows],
        "heads": heads,
        "data": encode_array(values, encoding),
    }


# ---------------------------------------------------------------------------------------------- pages
_APP_FOOTER = "attrflow explore — everything on this page is served by your own machine; nothing leaves it."


def _body() -> str:
    return static_text("explore.html")


def app_page(*, title: str = "attrflow explore") -> str:
    """The served explorer's document: the page skeleton's markup with ``explore.css`` and ``explore.js`` linked
    from the server (its Content-Security-Policy comes as a response header)."""
    from attrflow import __version__
    from attrflow.viz._html import esc

    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{esc(title)}</title><link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="static/page.css"><link rel="stylesheet" href="static/explore.css"></head>\n'
        f'<body class="explore-app"><header><h1>{esc(title)}</h1>'
        '<p class="subtitle">Type a sentence, choose methods, press Explain; click a token.</p></header>\n'
        f"{_body()}\n<footer>Made by attrflow {esc(__version__)}. {esc(_APP_FOOTER)}</footer>\n"
        '<script src="static/explore.js"></script>\n</body></html>\n'
    )


def render_explorer(data: Mapping[str, Any], *, title: str = "attrflow explore", subtitle: str = "") -> str:
    """The explorer as one self-contained page around one computed result (no server, no network): the same
    views as ``attrflow explore``, without what-if."""
    page = Page(title, subtitle=subtitle)
    page.add(f"<style>{static_text('explore.css')}</style>")
    page.add(_body())
    page.data.update({"mode": "inline", "result": dict(data), "methods": _registry_entries(data)})
    page.add_script("explore.js")
    return page.render()


def _registry_entries(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The registry's entries of the methods in ``data`` (what the served page reads from ``/api/methods``)."""
    from attrflow.methods.registry import get_method

    entries = []
    for name in data.get("methods", {}):
        try:
            entries.append(get_method(name).info().to_dict())
        except InvalidInputError:  # a row the report derives itself ("attribution", "raw attention")
            continue
    return entries


class ExploreView:
    """The explorer around one result, for Jupyter: displays inline (a sandboxed iframe) and saves as a file.

    Attributes:
        html: the self-contained page.
        height: the iframe's height in pixels.
    """

    def __init__(self, html: str, *, height: int = 1100) -> None:
        self.html = html
        self.height = height

    def _repr_html_(self) -> str:
        return iframe(self.html, height=self.height, title="attrflow explore", downloads=True)

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the page (UTF-8, atomically) and return its path."""
        return write_page(self.html, path)

    def __repr__(self) -> str:
        return f"<attrflow ExploreView: {len(self.html)} characters; display it in Jupyter or .write(path)>"


def _default_scores(result: AttentionAttribution | RecordedAttention) -> dict[str, TokenScores]:
    """What the report shows for a bare result: its default token scores."""
    from attrflow.viz.report import _raw_attention, default_token_scores

    if isinstance(result, AttentionAttribution):
        return default_token_scores(result)
    return {"raw attention": _raw_attention(result.attentions, result.tokens, result.output_position)}


def explore_view(
    explanation: Explanation | None = None,
    *,
    result: AttentionAttribution | RecordedAttention | None = None,
    scores: Mapping[str, TokenScores] | None = None,
    tree: AttributionTree | None = None,
    title: str | None = None,
    heads: HeadsChoice = "auto",
    height: int = 1100,
) -> ExploreView:
    """An :class:`ExploreView` of an explanation or of its parts (see :func:`explanation_data`)."""
    if explanation is None and result is not None and not scores:
        scores = _default_scores(result)
    data = explanation_data(explanation, result=result, scores=scores, tree=tree, encoding="auto", heads=heads)
    settings = data.get("settings") or {}
    model = settings.get("model") if isinstance(settings, Mapping) else None
    if model is None and data["methods"]:
        model = next(iter(data["methods"].values()))["settings"].get("model")
    heading = title or (f"attrflow explore: {model}" if model else "attrflow explore")
    return ExploreView(render_explorer(data, title=heading), height=height)
