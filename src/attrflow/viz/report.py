"""The self-contained HTML report of an :class:`~attrflow.AttentionAttribution`.

One file, no CDN, no network: the stylesheet, the script and the data are inline, and a Content-Security-Policy
forbids every fetch and every script but the report's own. Sections: the input with the prediction; token-level
scores of each method as highlighted text, each with the reduction that produced it; a layer × head grid of head
scores; attention and attribution heatmaps with a layer/head selector; the attribution tree; the settings and the
completeness gaps.
"""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from attrflow.errors import InvalidInputError
from attrflow.results import TokenScores
from attrflow.viz._html import diverging, esc, fmt
from attrflow.viz.page import iframe, render_page, write_page

if TYPE_CHECKING:
    from attrflow.analysis.tree import AttributionTree
    from attrflow.results import AttentionAttribution, RecordedAttention

HeatmapHeads = Literal["auto", "all", "mean"]
_AUTO_HEADS_BYTES = 8_000_000

__all__ = [
    "TokenScores",
    "default_token_scores",
    "render_attention",
    "render_report",
    "report_iframe",
    "write_report",
]


def default_token_scores(result: AttentionAttribution) -> dict[str, TokenScores]:
    """The token scores derivable from a result alone.

    - ``"attribution"``: for each token j, ``Σ_l Σ_h Σ_i Attr[l, h, i, j]`` over the attributed layers, all heads
      and all query rows i: the total (signed) attribution of every interaction that reads from j. Its sum over
      tokens is ``Σ_l (F(A) − F(0·A_l)) + Σ_l completeness_gap[l]`` (integrated-gradients completeness, Hao et
      al. 2021).
    - ``"raw attention"``: the attention probabilities of the last layer in the row of the explained output
      position (``result.output_position``), mean over heads; when there is no single output position
      (``output_position == -1``), the mean over all query rows.

    Returns:
        ``{"attribution": ..., "raw attention": ...}``.
    """
    layers = ", ".join(str(layer) for layer in result.layers)
    incoming = result.attributions.detach().to(torch.float64).sum(dim=(0, 1, 2))
    scores = {
        "attribution": TokenScores.from_values(
            "attribution",
            incoming,
            f"Attr summed over the attributed layers ({layers}), all heads and all query rows i, per key token j: "
            "the total attribution of the interactions that read from the token (signed)",
        )
    }
    scores["raw attention"] = _raw_attention(result.attentions, result.tokens, result.output_position)
    return scores


def _raw_attention(attentions: torch.Tensor, tokens: Sequence[str], position: int) -> TokenScores:
    last = attentions[-1].detach().to(torch.float64).mean(dim=0)
    if 0 <= position < len(tokens):
        row = last[position]
        where = f"row of the output position {position} ({tokens[position]})"
    else:
        row = last.mean(dim=0)
        where = "mean over all query rows"
    return TokenScores.from_values(
        "raw attention",
        row,
        f"attention probabilities, last layer ({attentions.shape[0] - 1}), {where}, mean over heads",
    )


def _encode_matrices(tensor: torch.Tensor, layers: Sequence[int], *, per_head: bool) -> dict[str, Any]:
    """``[K, H, n, n]`` → base64 float16 of each (layer, head) matrix divided by its max |value|, plus the scales.

    Per-matrix scaling keeps three significant digits for every matrix whatever its magnitude. Without
    ``per_head`` only the mean over heads is kept (``heads`` is then 1).
    """
    values = torch.nan_to_num(tensor.detach().to("cpu", torch.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if not per_head:
        values = values.mean(dim=1, keepdim=True)
    K, H = values.shape[:2]
    flat = values.reshape(K * H, -1)
    scales = flat.abs().amax(dim=1) if flat.shape[1] else torch.zeros(K * H)
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    half = (flat / safe[:, None]).to(torch.float16).numpy().astype("<f2").tobytes()
    return {
        "layers": [int(layer) for layer in layers],
        "heads": int(H),
        "scales": [float(s) for s in scales.tolist()],
        "data": base64.b64encode(half).decode("ascii"),
    }


def _tokens_html(tokens: Sequence[str], special: Sequence[bool], values: Sequence[float] | None = None) -> str:
    spans = []
    if values is not None:
        plain = [abs(v) for v, s in zip(values, special, strict=False) if not s and math.isfinite(v)]
        pool = plain or [abs(v) for v in values if math.isfinite(v)]
        scale = max(pool, default=0.0)
    for i, token in enumerate(tokens):
        is_special = i < len(special) and special[i]
        cls = "tok special" if is_special else "tok"
        if values is None:
            spans.append(f'<span class="{cls}" title="{i}">{esc(token)}</span>')
        else:
            value = values[i]
            spans.append(
                f'<span class="{cls}" style="background:{diverging(value, scale)}" '
                f'title="{i}: {esc(token)} = {fmt(value, 4)}">{esc(token)}</span>'
            )
    return " ".join(spans)


def _special(mask: Sequence[bool], n: int) -> list[bool]:
    return list(mask) if len(mask) == n else [False] * n


def _token_scores_section(tokens: Sequence[str], special_mask: Sequence[bool], rows: Mapping[str, TokenScores]) -> str:
    n = len(tokens)
    special = _special(special_mask, n)
    parts = [
        '<section id="token-scores"><h2>Token scores</h2>',
        '<p class="note">Red: positive, blue: negative. Each row is coloured relative to its largest |score| among '
        "the non-special tokens (special tokens are dotted); hover a token for its value.</p>",
    ]
    for name, scores in rows.items():
        if len(scores.values) != n:
            raise InvalidInputError(
                f"token scores {name!r} have {len(scores.values)} values but the input has {n} tokens"
            )
        parts.append(
            f'<div class="score-row" data-method="{esc(name)}"><div class="method">{esc(name)}</div>'
            f'<div class="reduction">{esc(scores.overall_description)}</div>'
            f'<p class="tokens">{_tokens_html(tokens, special, scores.values)}</p></div>'
        )
    parts.append("</section>")
    return "\n".join(parts)


def _head_grid(result: AttentionAttribution) -> str:
    scores = result.head_scores().detach().to(torch.float64)
    scale = float(scores.abs().max()) if scores.numel() else 0.0
    header = "".join(f"<th>{h}</th>" for h in range(result.num_heads))
    rows = []
    for row, layer in enumerate(result.layers):
        cells = "".join(
            f'<td data-layer="{layer}" data-head="{h}" style="background:{diverging(float(v), scale)}" '
            f'title="layer {layer}, head {h}: max attribution {fmt(float(v), 4)}">{fmt(float(v), 2)}</td>'
            for h, v in enumerate(scores[row].tolist())
        )
        rows.append(f"<tr><th>layer {layer}</th>{cells}</tr>")
    return (
        '<section id="head-scores"><h2>Head scores</h2>'
        '<p class="note">Maximum attribution of each head, max<sub>i,j</sub> Attr<sub>h</sub>[i, j] (head importance '
        "for this input, Hao et al. 2021 §4.1). Click a cell to show that head's attribution below.</p>"
        f'<table class="grid"><tr><th></th>{header}</tr>{"".join(rows)}</table></section>'
    )


def _heatmap_section() -> str:
    return (
        '<section id="heatmaps"><h2>Attention and attribution heatmaps</h2>'
        '<div class="controls"><label>matrix <select id="hm-kind"></select></label>'
        '<label>layer <select id="hm-layer"></select></label>'
        '<label>head <select id="hm-head"></select></label></div>'
        '<div id="hm-caption"></div><canvas id="hm-canvas" width="10" height="10"></canvas>'
        '<div id="hm-readout"></div>'
        "<noscript><p>The heatmaps need JavaScript.</p></noscript></section>"
    )


def _tree_section(result: AttentionAttribution, tree: AttributionTree | None) -> str:
    from attrflow.viz.svg import tree_svg

    if tree is None:
        return (
            '<section id="tree"><h2>Attribution tree</h2>'
            '<p class="note">No attribution tree for this result (see attrflow.attribution_tree).</p></section>'
        )
    note = (
        f"Root: {esc(tree.tokens[tree.root.token])} (position {tree.root.token}, {esc(tree.root_mode)}); "
        f"threshold τ = {fmt(tree.threshold)}; layers {esc(', '.join(map(str, tree.layers)))}; "
        f"normalisation {esc(tree.normalization)}; scan {esc(tree.scan)}. An arrow j → i means token i attends to "
        "token j in the layer where j sits: information flows up (Hao et al. 2021 §4.3)."
    )
    return (
        f'<section id="tree"><h2>Attribution tree</h2><p class="note">{note}</p>'
        f'<div class="scroll">{tree_svg(tree)}</div></section>'
    )


def _settings_section(result: AttentionAttribution) -> str:
    settings = "".join(
        f"<tr><th>{esc(key)}</th><td>{esc(value)}</td></tr>" for key, value in sorted(result.settings.items())
    )
    rows = []
    for row, layer in enumerate(result.layers):
        baseline = float(result.baseline_probability[row]) if row < result.baseline_probability.numel() else math.nan
        gap = float(result.completeness_gap[row]) if row < result.completeness_gap.numel() else math.nan
        total = float(result.attributions[row].sum())
        delta = result.probability - baseline
        relative = abs(gap) / abs(delta) if delta else math.nan
        rows.append(
            f"<tr><td>{layer}</td><td>{fmt(baseline, 4)}</td><td>{fmt(delta, 4)}</td><td>{fmt(total, 4)}</td>"
            f"<td>{fmt(gap, 3)}</td><td>{fmt(relative, 3)}</td></tr>"
        )
    return (
        '<section id="settings"><h2>Settings and completeness</h2>'
        f'<table class="kv">{settings or "<tr><td>(none recorded)</td></tr>"}</table>'
        "<h3>Completeness per layer</h3>"
        '<p class="note">Integrated gradients: Σ Attr(A<sub>l</sub>) = F(A) − F(0·A<sub>l</sub>); the gap is the '
        "quadrature error of the integral.</p>"
        '<table class="num"><tr><th>layer</th><th>F(0·A<sub>l</sub>)</th><th>F(A) − F(0·A<sub>l</sub>)</th>'
        "<th>Σ Attr</th><th>gap</th><th>|gap| / |F(A) − F(0·A<sub>l</sub>)|</th></tr>"
        f"{''.join(rows)}</table></section>"
    )


def _input_section(result: AttentionAttribution) -> str:
    special = _special(result.special_mask, len(result.tokens))
    label = result.target_label
    predicted = (
        f"{esc(label)} ({result.predicted})" if label and result.predicted == result.target else str(result.predicted)
    )
    target = f"{esc(label)} ({result.target})" if label else str(result.target)
    return (
        '<section id="input"><h2>Input and prediction</h2>'
        f'<p class="tokens">{_tokens_html(result.tokens, special)}</p>'
        '<table class="kv">'
        f"<tr><th>prediction</th><td>{predicted}</td></tr>"
        f"<tr><th>explained target</th><td>{target}</td></tr>"
        f"<tr><th>F = p(target)</th><td>{fmt(result.probability, 4)}</td></tr>"
        f"<tr><th>tokens</th><td>{len(result.tokens)}</td></tr>"
        f"<tr><th>layers × heads</th><td>{result.num_layers} × {result.num_heads} "
        f"(attributed: {esc(', '.join(map(str, result.layers)))})</td></tr></table></section>"
    )


def render_report(
    result: AttentionAttribution,
    *,
    token_scores: Mapping[str, TokenScores] | None = None,
    tree: AttributionTree | None = None,
    title: str | None = None,
    heatmap_heads: HeatmapHeads = "auto",
    defaults: bool = True,
    back: tuple[str, str] | None = None,
) -> str:
    """Render the self-contained HTML report of one attribution result.

    Args:
        result: the attribution result.
        token_scores: extra token-score rows (e.g. rollout and flow), by display name. They are shown after the
            default ``"attribution"`` row and before ``"raw attention"`` (see :func:`default_token_scores`); a row
            named like a default replaces it.
        tree: the attribution tree to draw (the renderer draws, it never computes one; without a tree the section
            says so — ``AttentionAttribution.to_html`` builds the default tree).
        title: the page title; default names the model from ``result.settings``.
        heatmap_heads: which matrices the heatmap embeds: ``"all"`` (every head, float16: about
            ``2·(L + K)·H·n²`` bytes), ``"mean"`` (the mean over heads only, H times smaller), or ``"auto"``: every
            head while that stays under 8 MB (up to ~115 tokens for 12 layers × 12 heads), else the mean.
        defaults: add the rows derivable from the result alone (``"attribution"``, ``"raw attention"``); False
            shows exactly ``token_scores`` (what :func:`attrflow.explain` passes: one row per method run).
        back: ``(href, text)`` of a link back to an index page.

    Returns:
        A complete HTML document (one string) that needs no network: inline CSS, JS and data, every input string
        escaped.
    """
    per_head = _use_per_head(
        heatmap_heads, result.num_layers + len(result.layers), result.num_heads, len(result.tokens)
    )
    rows: dict[str, TokenScores] = {}
    if defaults:
        default_rows = default_token_scores(result)
        rows["attribution"] = default_rows["attribution"]
    rows.update(_extra_rows(token_scores))
    if defaults:
        rows.setdefault("raw attention", default_rows["raw attention"])

    model = result.settings.get("model")
    heading = title or (f"attrflow report: {model}" if model else "attrflow report")
    subtitle = " · ".join(
        esc(part)
        for part in (
            f"model {model}" if model else None,
            f"task {result.settings['task']}" if "task" in result.settings else None,
            f"rule {result.settings['rule']}" if "rule" in result.settings else None,
            f"steps {result.settings['steps']}" if "steps" in result.settings else None,
        )
        if part
    )
    data = {
        "tokens": list(result.tokens),
        "outputPosition": int(result.output_position),
        "heads": result.num_heads,
        "perHead": per_head,
        "matrices": {
            "attribution": _encode_matrices(result.attributions, result.layers, per_head=per_head),
            "attention": _encode_matrices(result.attentions, range(result.num_layers), per_head=per_head),
        },
    }
    sections = [
        _input_section(result),
        _token_scores_section(result.tokens, result.special_mask, rows),
        _head_grid(result),
        _heatmap_section(),
        _tree_section(result, tree),
        _settings_section(result),
    ]
    return _page(heading, subtitle, sections, data, back)


def _extra_rows(token_scores: Mapping[str, TokenScores] | None) -> dict[str, TokenScores]:
    rows: dict[str, TokenScores] = {}
    for name, scores in (token_scores or {}).items():
        if not isinstance(scores, TokenScores):
            raise InvalidInputError(f"token_scores[{name!r}] must be a TokenScores, got {type(scores).__name__}")
        rows[name] = scores
    return rows


def _use_per_head(heatmap_heads: str, matrices: int, heads: int, n: int) -> bool:
    if heatmap_heads not in ("auto", "all", "mean"):
        raise InvalidInputError(f"heatmap_heads must be 'auto', 'all' or 'mean', got {heatmap_heads!r}")
    per_head_bytes = 2 * matrices * heads * n * n
    return heatmap_heads == "all" or (heatmap_heads == "auto" and per_head_bytes <= _AUTO_HEADS_BYTES)


def _page(
    heading: str,
    subtitle: str,
    sections: Sequence[str],
    data: Mapping[str, Any],
    back: tuple[str, str] | None = None,
) -> str:
    """The full document on the common page skeleton, with the report's script and data."""
    return render_page(heading, sections, subtitle=subtitle, data=data, scripts=("report.js",), back=back)


def render_attention(
    recorded: RecordedAttention,
    *,
    token_scores: Mapping[str, TokenScores] | None = None,
    title: str | None = None,
    heatmap_heads: HeatmapHeads = "auto",
    defaults: bool = True,
    back: tuple[str, str] | None = None,
) -> str:
    """Render the self-contained HTML page of recorded attention (no attributions): the input with the
    prediction, token scores (``"raw attention"`` and any rows given, e.g. rollout), and the attention heatmaps.

    Args:
        recorded: a :class:`~attrflow.RecordedAttention`.
        token_scores: extra token-score rows by display name, shown before ``"raw attention"``.
        title: the page title.
        heatmap_heads: as in :func:`render_report`.
        defaults: add the ``"raw attention"`` row when ``token_scores`` has none of that name.
        back: ``(href, text)`` of a link back to an index page.
    """
    L, H, n, _ = recorded.attentions.shape
    per_head = _use_per_head(heatmap_heads, L, H, n)
    rows = _extra_rows(token_scores)
    if defaults:
        rows.setdefault("raw attention", _raw_attention(recorded.attentions, recorded.tokens, recorded.output_position))
    label = recorded.predicted_label
    predicted = f"{esc(label)} ({recorded.predicted})" if label else str(recorded.predicted)
    inputs = (
        '<section id="input"><h2>Input and prediction</h2>'
        f'<p class="tokens">{_tokens_html(recorded.tokens, _special(recorded.special_mask, n))}</p>'
        '<table class="kv">'
        f"<tr><th>prediction</th><td>{predicted}</td></tr>"
        f"<tr><th>probability</th><td>{fmt(recorded.probability, 4)}</td></tr>"
        f"<tr><th>tokens</th><td>{n}</td></tr>"
        f"<tr><th>layers × heads</th><td>{L} × {H}</td></tr></table></section>"
    )
    data = {
        "tokens": list(recorded.tokens),
        "outputPosition": int(recorded.output_position),
        "heads": H,
        "perHead": per_head,
        "matrices": {"attention": _encode_matrices(recorded.attentions, range(L), per_head=per_head)},
    }
    sections = [
        inputs,
        _token_scores_section(recorded.tokens, recorded.special_mask, rows),
        _heatmap_section(),
    ]
    return _page(title or "attrflow: recorded attention", "", sections, data, back)


def write_report(html: str, path: str | os.PathLike[str]) -> Path:
    """Write a rendered report to ``path`` (UTF-8, atomically). Returns the path."""
    return write_page(html, path)


def report_iframe(html: str, *, height: int = 900) -> str:
    """Wrap a full report in a sandboxed ``<iframe srcdoc>`` so it renders, scripts included, inside Jupyter."""
    return iframe(html, height=height, title="attrflow report")
