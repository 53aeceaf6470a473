"""SVG drawing of an attribution tree, in pure Python (no Graphviz, no browser, no matplotlib).

Layered layout: tokens left to right in input order, layers bottom to top. A node ``(layer, token)`` sits in the
token's column at the height of its layer; every edge is drawn as an arrow from the child up to the parent, the
direction in which information flows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrflow.viz._html import esc, fmt

if TYPE_CHECKING:
    from attrflow.analysis.tree import AttributionTree

__all__ = ["tree_svg"]

_COL = 56  # width of one token column
_ROW = 46  # height of one layer row
_NODE_W = 50
_NODE_H = 20
_LEFT = 70  # room for the layer labels
_TOP = 24
_AXIS = 110  # room for the rotated token labels under the rows


def _short(text: str, limit: int = 8) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tree_svg(tree: AttributionTree, *, title: str | None = None) -> str:
    """Draw ``tree`` as a standalone SVG document (also valid inline in HTML).

    Args:
        tree: the tree to draw.
        title: an optional caption drawn above the tree.

    Returns:
        The SVG markup. All token text is escaped.
    """
    n = len(tree.tokens)
    top_level = tree.root.layer
    low_level = min(node.layer for node in tree.nodes)  # rows below the lowest node would stay empty
    levels = list(range(top_level, low_level - 1, -1))
    head = _TOP + (18 if title else 0)
    width = _LEFT + n * _COL + 20
    height = head + len(levels) * _ROW + _AXIS

    def x_of(token: int) -> float:
        return _LEFT + (token + 0.5) * _COL

    def y_of(level: int) -> float:
        return head + (top_level - level + 0.5) * _ROW

    placed = {node.token: node for node in tree.nodes}
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="attrflow-tree" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11" role="img">',
        "<title>attribution tree</title>",
        '<defs><marker id="attrflow-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" '
        'markerHeight="8" markerUnits="userSpaceOnUse" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    if title:
        out.append(f'<text x="{_LEFT}" y="{_TOP}" font-size="13" font-weight="bold">{esc(title)}</text>')

    # layer rows and their labels
    for level in levels:
        y = y_of(level)
        label = "output" if level == tree.num_layers else f"layer {level}"
        out.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{width - 20}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end" fill="#777">{esc(label)}</text>')

    # token axis: every token, tree tokens in bold, with a guide up to their node
    axis_y = head + len(levels) * _ROW + 8
    for token, text in enumerate(tree.tokens):
        x = x_of(token)
        node = placed.get(token)
        weight = "bold" if node else "normal"
        colour = "#222" if node else "#999"
        if node is not None:
            out.append(
                f'<line x1="{x:.1f}" y1="{y_of(node.layer) + _NODE_H / 2:.1f}" x2="{x:.1f}" y2="{axis_y - 4:.1f}" '
                'stroke="#ddd" stroke-dasharray="2,3"/>'
            )
        out.append(
            f'<text x="{x:.1f}" y="{axis_y:.1f}" transform="rotate(-55 {x:.1f} {axis_y:.1f})" text-anchor="end" '
            f'dominant-baseline="middle" fill="{colour}" font-weight="{weight}"><title>{token}: {esc(text)}</title>'
            f"{esc(_short(text, 14))}</text>"
        )

    # edges: from the child up to the parent, width by score
    for edge in tree.edges:
        parent, child = placed[edge.parent], placed[edge.child]
        xc, yc = x_of(child.token), y_of(child.layer)
        xp, yp = x_of(parent.token), y_of(parent.layer)
        if parent.layer == child.layer:  # "sequential" scan: both joined in this layer; arc over the row
            path = f"M{xc:.1f},{yc - _NODE_H / 2:.1f} Q{(xc + xp) / 2:.1f},{yc - _ROW * 0.9:.1f} {xp:.1f},{yp - _NODE_H / 2:.1f}"
        else:
            y0, y1 = yc - _NODE_H / 2, yp + _NODE_H / 2
            mid = (y0 + y1) / 2
            path = f"M{xc:.1f},{y0:.1f} C{xc:.1f},{mid:.1f} {xp:.1f},{mid:.1f} {xp:.1f},{y1:.1f}"
        stroke = 1.0 + 2.0 * min(max(edge.score, 0.0), 1.5)
        tip = (
            f"layer {edge.layer}: {esc(tree.tokens[edge.parent])} ({edge.parent}) attends to "
            f"{esc(tree.tokens[edge.child])} ({edge.child}); normalised attribution {fmt(edge.score)}"
        )
        out.append(
            f'<path class="attrflow-edge" d="{path}" fill="none" stroke="#555" stroke-opacity="0.75" '
            f'stroke-width="{stroke:.2f}" marker-end="url(#attrflow-arrow)"><title>{tip}</title></path>'
        )

    # nodes on top of the edges
    for node in tree.nodes:
        x, y = x_of(node.token), y_of(node.layer)
        is_root = node == tree.root
        fill = "#f4a261" if is_root else "#e9f1fb"
        text = tree.tokens[node.token]
        out.append(
            f'<g class="attrflow-node" data-layer="{node.layer}" data-token="{node.token}">'
            f"<title>{esc(text)} (position {node.token}, {'root' if is_root else f'joined in layer {node.layer}'})</title>"
            f'<rect x="{x - _NODE_W / 2:.1f}" y="{y - _NODE_H / 2:.1f}" width="{_NODE_W}" height="{_NODE_H}" rx="4" '
            f'fill="{fill}" stroke="#4a6fa5"/>'
            f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle">{esc(_short(text))}</text></g>'
        )
    out.append("</svg>")
    return "\n".join(out)
