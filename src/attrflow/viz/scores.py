"""The page of one :class:`~attrflow.TokenScores` result: the scores as highlighted text, one row per layer for
per-layer methods, with the method's description and settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrflow.viz._html import esc, fmt
from attrflow.viz.page import render_page
from attrflow.viz.report import _special, _tokens_html

if TYPE_CHECKING:
    from attrflow.results import TokenScores

__all__ = ["render_token_scores_page", "token_scores_rows"]


def token_scores_rows(scores: TokenScores) -> str:
    """The highlighted token rows of one result: the overall scores, then each layer's (bottom to top)."""
    special = _special(scores.special_mask, len(scores.tokens))
    rows = [
        f'<div class="score-row" data-method="{esc(scores.method)}"><div class="method">{esc(scores.method)}</div>'
        f'<div class="reduction">{esc(scores.description)}</div>'
        f'<p class="tokens">{_tokens_html(scores.tokens, special, scores.values)}</p></div>'
    ]
    if scores.per_layer:
        for row, layer in enumerate(scores.layers):
            values = [float(v) for v in scores.scores[row].double().tolist()]
            rows.append(
                f'<div class="score-row" data-layer="{layer}"><div class="reduction">layer {layer}</div>'
                f'<p class="tokens">{_tokens_html(scores.tokens, special, values)}</p></div>'
            )
    return "\n".join(rows)


def render_token_scores_page(scores: TokenScores, *, title: str | None = None) -> str:
    """A self-contained page of one token-score result."""
    facts = [("method", scores.method), ("position explained", str(scores.position))]
    if scores.target is not None:
        label = f"{scores.target_label} ({scores.target})" if scores.target_label else str(scores.target)
        facts.append(("target", label))
    if scores.probability is not None:
        facts.append(("p(target)", fmt(scores.probability, 4)))
    if scores.completeness_gap is not None:
        facts.append(("completeness gap", fmt(scores.completeness_gap, 3)))
    facts.extend((name, fmt(value, 3)) for name, value in scores.diagnostics.items())
    facts.extend((str(key), str(value)) for key, value in sorted(scores.settings.items()))
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    sections = [
        '<section id="token-scores"><h2>Token scores</h2>'
        '<p class="note">Red: positive, blue: negative; each row is coloured relative to its largest |score| among '
        "the non-special tokens (special tokens are dotted). Hover a token for its value.</p>"
        f"{token_scores_rows(scores)}</section>",
        f'<section id="settings"><h2>Settings</h2><table class="kv">{table}</table></section>',
    ]
    return render_page(title or f"attrflow: {scores.method} token scores", sections)
