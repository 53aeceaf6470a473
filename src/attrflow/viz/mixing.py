"""The page of one :class:`~attrflow.ContextMixing` result: the output position's row as highlighted tokens, the
aggregated matrix and every layer's matrix as tables of shaded cells (no script needed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from attrflow.viz._html import diverging, esc, fmt
from attrflow.viz.page import render_page
from attrflow.viz.report import _special, _tokens_html

if TYPE_CHECKING:
    from attrflow.methods.mixing import ContextMixing

__all__ = ["matrix_table", "render_mixing_page"]


def matrix_table(matrix: torch.Tensor, tokens: Sequence[str], *, caption: str) -> str:
    """An n×n matrix as a table of cells shaded relative to its largest value (rows: output tokens)."""
    values = matrix.detach().to("cpu", torch.float64)
    scale = float(values.abs().max()) if values.numel() else 0.0
    header = "".join(f'<th title="{esc(t)}">{esc(t[:6])}</th>' for t in tokens)
    rows = []
    for i, token in enumerate(tokens):
        cells = "".join(
            f'<td style="background:{diverging(float(v), scale)}" title="{esc(token)} ← {esc(tokens[j])}: '
            f'{fmt(float(v), 4)}"></td>'
            for j, v in enumerate(values[i].tolist())
        )
        rows.append(f'<tr><th title="{esc(token)}">{esc(token[:10])}</th>{cells}</tr>')
    return (
        f'<figure class="mixing"><figcaption>{esc(caption)}</figcaption>'
        f'<table class="grid"><tr><th></th>{header}</tr>{"".join(rows)}</table></figure>'
    )


def render_mixing_page(mixing: ContextMixing, *, title: str | None = None) -> str:
    """A self-contained page of one context-mixing result (data only: the result's own matrices and rollout)."""
    tokens = mixing.tokens
    special = _special(mixing.special_mask, len(tokens))
    position = mixing.output_position
    row = [float(v) for v in mixing.token_scores().tolist()]
    aggregated = matrix_table(
        mixing.rollout(),
        tokens,
        caption=f"aggregated over layers {mixing.layers[0]}–{mixing.layers[-1]} (A_l = C_l·A_(l−1), no identity)",
    )
    layers = "".join(
        matrix_table(mixing.matrices[k], tokens, caption=f"layer {layer}") for k, layer in enumerate(mixing.layers)
    )
    facts = [("method", mixing.method), *((str(k), str(v)) for k, v in sorted(mixing.settings.items()))]
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    sections = [
        '<section id="row"><h2>Token scores</h2>'
        f'<p class="note">Row of {esc(tokens[position])} (position {position}) of the aggregated matrix: how much '
        "each input token contributes to it after the top layer. Hover a token for its value.</p>"
        f'<p class="tokens">{_tokens_html(tokens, special, row)}</p></section>',
        '<section id="aggregated"><h2>Aggregated</h2><p class="note">Row i: output token i; column j: input token j. '
        "Hover a cell for its value.</p>"
        f"{aggregated}</section>",
        f'<section id="layers"><h2>Per layer</h2>{layers}</section>',
        f'<section id="settings"><h2>Settings</h2><table class="kv">{table}</table></section>',
    ]
    return render_page(title or f"attrflow: {mixing.method} context mixing", sections)
