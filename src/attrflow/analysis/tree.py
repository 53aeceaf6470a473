"""Attribution tree (Hao et al., AAAI 2021, §4.3): how a Transformer aggregates information bottom-up.

Per layer, the self-attention attributions are summed over heads and divided by the layer's maximum; interactions
above a threshold τ are candidate edges. Starting from a root token at the top and going down the layers, an edge
i → j ("token i attends to token j", so information flows j → i) joins token j to the tree when i is already in the
tree and j is not; every token appears at most once. Nothing here depends on the depth of the model (the official
script hard-codes 12 layers and layer index 10).

The tree is plain data (:meth:`AttributionTree.to_dict`, :meth:`AttributionTree.to_networkx`); drawing it is the job
of :mod:`attrflow.viz`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import torch

from attrflow.errors import InvalidInputError
from attrflow.storage import register_result_type, write_result

if TYPE_CHECKING:
    import networkx as nx
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from attrflow.analysis.interactions import InteractionEffect
    from attrflow.models import Model
    from attrflow.results import AttentionAttribution

__all__ = [
    "AttributionTree",
    "TreeEdge",
    "TreeNode",
    "attribution_tree",
    "grow_tree",
    "normalized_layer_attributions",
    "top_token",
]

RootMode = Literal["cls", "top-token"]
Normalization = Literal["layer-max", "layer-max-without-output-row"]
Scan = Literal["by-layer", "sequential"]

_UNPLACED = np.iinfo(np.int64).min  # joined_at of a token not in the tree


@dataclass(frozen=True, order=True)
class TreeNode:
    """A token in the tree, placed at a layer.

    Attributes:
        layer: the token's hidden state at the *input* of model layer ``layer`` (0-based; ``layer == num_layers``
            is the output of the last layer). A token that joins through an edge of layer l sits at ``layer = l``;
            the root sits one above the first layer the tree uses.
        token: the token's position in the input.
    """

    layer: int
    token: int


@dataclass(frozen=True)
class TreeEdge:
    """One interaction of the tree: in model layer ``layer``, token ``parent`` attends to token ``child``.

    Information flows from ``child`` (lower in the tree) to ``parent``.

    Attributes:
        layer: the model layer (0-based) of the interaction.
        parent: position of the query token (already in the tree when the edge was added).
        child: position of the key token (joins the tree through this edge).
        score: the normalised attribution (head-summed, divided by the layer's maximum) that passed the threshold.
        attribution: the head-summed attribution of the interaction before normalisation.
    """

    layer: int
    parent: int
    child: int
    score: float
    attribution: float


@register_result_type
@dataclass(frozen=True, eq=False)
class AttributionTree:
    """An attribution tree: the interactions that carry information from the input up to the root.

    Attributes:
        tokens: the n tokens of the input.
        root: the root node.
        nodes: every token in the tree as a :class:`TreeNode`, root first, then in the order they joined.
        edges: the tree's edges (one per non-root node), in the order they were added.
        layers: the model layers the tree was grown through, top first.
        num_layers: the depth of the model.
        threshold: τ; an edge's normalised score had to exceed it.
        root_mode: how the root was chosen (``"cls"`` or ``"top-token"``).
        normalization: how each layer was normalised.
        scan: how candidate edges were visited within a layer.
    """

    tokens: tuple[str, ...]
    root: TreeNode
    nodes: tuple[TreeNode, ...]
    edges: tuple[TreeEdge, ...]
    layers: tuple[int, ...]
    num_layers: int
    threshold: float
    root_mode: str
    normalization: str
    scan: str

    kind = "AttributionTree"

    def __len__(self) -> int:
        return len(self.nodes)

    def node_of(self, token: int) -> TreeNode | None:
        """The node of token position ``token``, or None when that token is not in the tree."""
        for node in self.nodes:
            if node.token == token:
                return node
        return None

    def parent_edge(self, token: int) -> TreeEdge | None:
        """The edge through which ``token`` joined the tree (None for the root and for tokens not in the tree)."""
        for edge in self.edges:
            if edge.child == token:
                return edge
        return None

    def children(self, token: int) -> tuple[TreeEdge, ...]:
        """The edges from ``token`` down to the tokens it attends to in the tree."""
        return tuple(edge for edge in self.edges if edge.parent == token)

    def interactions(self) -> dict[int, list[tuple[int, int]]]:
        """The edges as ``{layer: [(query_index, key_index), ...]}``, the form
        :func:`attrflow.analysis.interactions.interaction_effect` masks (parent = query, child = key)."""
        grouped: dict[int, list[tuple[int, int]]] = {}
        for edge in self.edges:
            grouped.setdefault(edge.layer, []).append((edge.parent, edge.child))
        return grouped

    def edge_effect(
        self,
        model: Model,
        inputs: Any,
        *,
        target: int | None = None,
        random_draws: int = 5,
        seed: int = 0,
    ) -> InteractionEffect:
        """Check the paper's claim that the tree's edges carry the prediction (Hao et al. 2021, §4.3).

        Zeroes the tree's interactions (query = parent, key = child, every head of the edge's layer) and reports
        the drop in the target probability, next to masking as many highest-attention entries, the entries that
        carry the most attention rollout, and random entries of the same layers (mean ± std over ``random_draws``
        seeded draws). The leaderboard measures the same over a dataset, with intervals.

        Args:
            model: the :class:`attrflow.Model` the tree's result was computed with.
            inputs: the same input (text, pair, tensors or Encoding).
            target: output to read; default the model's prediction.
            random_draws: number of random maskings.
            seed: seed of the random maskings.
        """
        from attrflow.analysis.interactions import interaction_effect

        return interaction_effect(
            model, inputs, self.interactions(), target=target, random_draws=random_draws, seed=seed
        )

    def to_dict(self) -> dict[str, Any]:
        """The tree as plain JSON-ready Python objects."""
        return {
            "tokens": list(self.tokens),
            "root": {"layer": self.root.layer, "token": self.root.token},
            "nodes": [{"layer": n.layer, "token": n.token, "text": self.tokens[n.token]} for n in self.nodes],
            "edges": [
                {
                    "layer": e.layer,
                    "parent": e.parent,
                    "child": e.child,
                    "score": e.score,
                    "attribution": e.attribution,
                }
                for e in self.edges
            ],
            "layers": list(self.layers),
            "num_layers": self.num_layers,
            "threshold": self.threshold,
            "root_mode": self.root_mode,
            "normalization": self.normalization,
            "scan": self.scan,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttributionTree:
        """Rebuild a tree from :meth:`to_dict`."""
        return cls(
            tokens=tuple(str(t) for t in data["tokens"]),
            root=TreeNode(int(data["root"]["layer"]), int(data["root"]["token"])),
            nodes=tuple(TreeNode(int(n["layer"]), int(n["token"])) for n in data["nodes"]),
            edges=tuple(
                TreeEdge(int(e["layer"]), int(e["parent"]), int(e["child"]), float(e["score"]), float(e["attribution"]))
                for e in data["edges"]
            ),
            layers=tuple(int(layer) for layer in data["layers"]),
            num_layers=int(data["num_layers"]),
            threshold=float(data["threshold"]),
            root_mode=str(data["root_mode"]),
            normalization=str(data["normalization"]),
            scan=str(data["scan"]),
        )

    def to_parts(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(meta, tensors)``: what :meth:`save` stores (everything is metadata; no tensors)."""
        return self.to_dict(), {}

    @classmethod
    def from_parts(cls, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> AttributionTree:
        """Rebuild from :meth:`to_parts` (used by :func:`attrflow.load_result`)."""
        return cls.from_dict(meta)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the tree to one file (reload with :func:`attrflow.load_result`). Returns the path."""
        meta, tensors = self.to_parts()
        return write_result(path, self.kind, meta, tensors)

    def to_frame(self) -> pd.DataFrame:
        """One row per edge: ``layer, parent, parent_token, child, child_token, score, attribution``."""
        import pandas as pd

        rows = [
            {
                "layer": e.layer,
                "parent": e.parent,
                "parent_token": self.tokens[e.parent],
                "child": e.child,
                "child_token": self.tokens[e.child],
                "score": e.score,
                "attribution": e.attribution,
            }
            for e in self.edges
        ]
        columns = ["layer", "parent", "parent_token", "child", "child_token", "score", "attribution"]
        return pd.DataFrame(rows, columns=columns)

    def to_html(self, path: str | os.PathLike[str] | None = None, *, title: str | None = None) -> str:
        """A self-contained page with the drawn tree and its edges; written to ``path`` when given."""
        from attrflow.viz.page import esc, render_page, write_page
        from attrflow.viz.svg import tree_svg

        edges = "".join(
            f"<tr><td>{e.layer}</td><td>{esc(self.tokens[e.parent])} ({e.parent})</td>"
            f"<td>{esc(self.tokens[e.child])} ({e.child})</td><td>{e.score:.3f}</td><td>{e.attribution:.3g}</td></tr>"
            for e in self.edges
        )
        sections = [
            f'<section id="tree"><h2>Attribution tree</h2><div class="scroll">{tree_svg(self)}</div></section>',
            '<section id="edges"><h2>Edges</h2><table class="num"><tr><th>layer</th><th>query (parent)</th>'
            f"<th>key (child)</th><th>score</th><th>attribution</th></tr>{edges}</table></section>",
        ]
        html = render_page(title or "attrflow: attribution tree", sections)
        if path is not None:
            write_page(html, path)
        return html

    def to_networkx(self) -> nx.DiGraph:
        """The tree as a ``networkx.DiGraph`` (an arborescence rooted at :attr:`root`).

        Nodes are ``(layer, token)`` tuples with attributes ``text`` and ``token``; edges point from the parent
        (query) node to the child (key) node and carry ``layer``, ``score`` and ``attribution``.
        """
        from attrflow.dependencies import require

        networkx = require("networkx")
        graph = networkx.DiGraph(
            threshold=self.threshold, root=(self.root.layer, self.root.token), root_mode=self.root_mode
        )
        for node in self.nodes:
            graph.add_node((node.layer, node.token), token=node.token, text=self.tokens[node.token])
        for edge in self.edges:
            parent = self.node_of(edge.parent)
            child = self.node_of(edge.child)
            assert parent is not None and child is not None
            graph.add_edge(
                (parent.layer, parent.token),
                (child.layer, child.token),
                layer=edge.layer,
                score=edge.score,
                attribution=edge.attribution,
            )
        return graph

    def to_svg(self) -> str:
        """The tree drawn as a standalone SVG document (layered layout, no external tools)."""
        from attrflow.viz.svg import tree_svg

        return tree_svg(self)

    def plot(self, *, ax: Axes | None = None) -> Figure:
        """Draw the tree with matplotlib; see :func:`attrflow.viz.plot_tree`."""
        from attrflow.viz.plots import plot_tree

        return plot_tree(self, ax=ax)

    def _repr_html_(self) -> str:
        from attrflow.viz.svg import tree_svg

        return tree_svg(self)

    def __repr__(self) -> str:
        return (
            f"AttributionTree(root={self.tokens[self.root.token]!r}@{self.root.token}, nodes={len(self.nodes)}, "
            f"layers={list(self.layers)}, threshold={self.threshold})"
        )


def _check_choice(name: str, value: str, allowed: Any) -> None:
    choices = get_args(allowed)
    if value not in choices:
        raise InvalidInputError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def normalized_layer_attributions(
    attributions: torch.Tensor, *, normalization: Normalization = "layer-max", output_position: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum attributions over heads and divide each layer by its maximum (Hao et al. 2021, §4.3).

    Args:
        attributions: ``[K, H, n, n]`` attributions of K layers.
        normalization: ``"layer-max"`` (paper): divide by ``|max|`` of the whole ``n × n`` layer matrix;
            ``"layer-max-without-output-row"`` (official ``attribution_tree.py``): take the max over the query rows
            other than ``output_position`` (the ``[CLS]`` row for BERT-style classifiers; with
            ``output_position == -1`` no row is skipped).
        output_position: the row skipped by ``"layer-max-without-output-row"``.

    Returns:
        ``(normalized, summed)``, both ``[K, n, n]``: the head-summed attributions divided by ``|max|`` of their
        layer, and the head-summed attributions. A layer whose maximum is 0 normalises to zeros.
    """
    _check_choice("normalization", normalization, Normalization)
    if attributions.dim() != 4 or attributions.shape[-1] != attributions.shape[-2]:
        raise InvalidInputError(f"attributions must be [layers, heads, n, n], got {tuple(attributions.shape)}")
    summed = attributions.detach().sum(dim=1, dtype=torch.float64)
    return _normalize(summed, normalization, output_position), summed


def _normalize(summed: torch.Tensor, normalization: Normalization, output_position: int) -> torch.Tensor:
    """``[K, n, n]`` head-summed attributions → divided by ``|max|`` of their layer (zeros where the max is 0)."""
    n = summed.shape[-1]
    rows = summed
    if normalization == "layer-max-without-output-row" and 0 <= output_position < n and n > 1:
        keep = torch.ones(n, dtype=torch.bool)
        keep[output_position] = False
        rows = summed[:, keep, :]
    scale = rows.flatten(1).amax(dim=1).abs() if n else torch.zeros(summed.shape[0], dtype=summed.dtype)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.where(scale[:, None, None] > 0, summed / safe[:, None, None], torch.zeros_like(summed))


def top_token(attributions: torch.Tensor, *, exclude: int | None = 0) -> int:
    """The root of the official script: the token with the largest total outgoing attribution.

    The attributions are summed over layers and heads into ``S [n, n]``; the diagonal and negative entries are
    dropped; the token i with the largest row sum ``Σ_j S[i, j]`` (what i draws from the others) wins. Row
    ``exclude`` (the ``[CLS]`` row in the official script) is not eligible. Ties go to the lowest position.

    Args:
        attributions: ``[K, H, n, n]``.
        exclude: a position that cannot be the root, or None.
    """
    return _top_token(attributions.detach().sum(dim=(0, 1), dtype=torch.float64), exclude)


def _top_token(total: torch.Tensor, exclude: int | None) -> int:
    """``total [n, n]``: attributions summed over layers and heads."""
    n = total.shape[-1]
    if n == 0:
        raise InvalidInputError("the input has no tokens")
    positive = total.clamp(min=0) * (1 - torch.eye(n, dtype=total.dtype))
    totals = positive.sum(dim=-1)
    if exclude is not None and 0 <= exclude < n and n > 1:
        totals[exclude] = -math.inf
    return int(torch.argmax(totals))


def grow_tree(
    normalized: torch.Tensor,
    layers: Sequence[int],
    *,
    root: int,
    threshold: float,
    scan: Scan = "by-layer",
    skip_row: int | None = None,
) -> tuple[list[TreeNode], list[tuple[int, int, int, float]]]:
    """Grow the tree top-down through the layers (pure function on the normalised scores).

    Args:
        normalized: ``[K, n, n]`` normalised head-summed attributions, one matrix per entry of ``layers``.
        layers: the model layer of each matrix; the tree visits them from the highest down.
        root: the root token's position.
        threshold: τ; an interaction joins the tree only when its normalised score is strictly greater.
        scan: ``"by-layer"``: a token takes children only in layers strictly below the one it joined at (the
            hidden state at the input of layer l cannot attend within layer l); when several tree tokens pass τ
            for the same new token in one layer, the strongest edge wins (ties: lowest position).
            ``"sequential"``: the official script's loop. In the first layer only the root's row is read; below it
            query rows are visited in increasing position (``skip_row`` never) and key columns in increasing
            position, first come first served, so a token that joins in a layer may take children in that same
            layer.
        skip_row: the query row the ``"sequential"`` scan never expands below the first layer (the official
            script skips the ``[CLS]`` row, position 0).

    Returns:
        ``(nodes, edges)``: nodes root first; edges as ``(layer, parent, child, score)`` in order of addition.
    """
    _check_choice("scan", scan, Scan)
    if normalized.shape[0] != len(layers):
        raise InvalidInputError("normalized has one matrix per entry of `layers`")
    n = normalized.shape[-1]
    order = sorted(range(len(layers)), key=lambda k: layers[k], reverse=True)
    if not order:
        raise InvalidInputError("the tree needs at least one layer")
    top = layers[order[0]]
    scores = normalized.detach().to("cpu", torch.float64).numpy()
    passes = scores > threshold
    joined_at = np.full(n, _UNPLACED, dtype=np.int64)  # the layer of each token's node
    joined_at[root] = top + 1
    nodes = [TreeNode(top + 1, root)]
    edges: list[tuple[int, int, int, float]] = []

    def add(layer: int, parent: int, child: int, score: float) -> None:
        joined_at[child] = layer
        nodes.append(TreeNode(layer, child))
        edges.append((layer, parent, child, score))

    for depth, k in enumerate(order):
        layer = layers[k]
        if scan == "by-layer":
            # candidates: parent placed above this layer, child not placed yet, score above τ
            allowed = passes[k] & (joined_at > layer)[:, None] & (joined_at == _UNPLACED)[None, :]
            masked = np.where(allowed, scores[k], -np.inf)
            best = masked.argmax(axis=0)  # the first maximum: ties go to the lowest parent position
            for child in np.flatnonzero(allowed.any(axis=0)).tolist():
                parent = int(best[child])
                add(layer, parent, child, float(scores[k, parent, child]))
        else:
            rows = [root] if depth == 0 else [i for i in range(n) if i != skip_row]
            for parent in rows:
                if joined_at[parent] == _UNPLACED:
                    continue
                for child in np.flatnonzero(passes[k, parent] & (joined_at == _UNPLACED)).tolist():
                    add(layer, parent, child, float(scores[k, parent, child]))
    return nodes, edges


def attribution_tree(
    result: AttentionAttribution,
    *,
    threshold: float = 0.4,
    root: RootMode = "cls",
    layers: Sequence[int] | None = None,
    normalization: Normalization = "layer-max",
    scan: Scan = "by-layer",
) -> AttributionTree:
    """Build the attribution tree of one input (Hao et al., AAAI 2021, §4.3).

    Per layer, ``Attr`` is summed over heads (``[n, n]``), divided by ``|max|`` of the layer (see
    ``normalization``) and kept where it exceeds ``threshold``. From the root, going down the layers, an edge
    i → j (i attends to j) is added when i is already in the tree and j is not; each token appears once.

    To reproduce the official ``attribution_tree.py`` exactly, use ``root="top-token",
    normalization="layer-max-without-output-row", scan="sequential"`` on a result that holds every layer.

    Args:
        result: an :class:`~attrflow.AttentionAttribution` (``attributions`` is ``[K, H, n, n]``).
        threshold: τ (paper: 0.4); an edge's normalised score must be strictly greater. Must be ≥ 0.
        root: ``"cls"`` (paper): the root is the explained output position (``result.output_position``:
            ``[CLS]`` for BERT-style classifiers, the last token of a causal LM) at the output of the top layer,
            and the tree starts in the top layer. ``"top-token"`` (official script): the root is the token with
            the largest total attribution to other tokens (:func:`top_token`, the output position excluded), and
            the tree starts one layer lower, since only the output position's row of the last layer reaches the
            prediction.
        layers: the model layers (negative indices count from the end) to grow the tree through; they must have
            been attributed. Default: every attributed layer (for ``"top-token"``, without the model's last layer).
        normalization: ``"layer-max"`` (paper, default) or ``"layer-max-without-output-row"`` (official: the
            maximum ignores the ``[CLS]`` row); see :func:`normalized_layer_attributions`.
        scan: ``"by-layer"`` (default) or ``"sequential"`` (official loop order); see :func:`grow_tree`.

    Returns:
        An :class:`AttributionTree` whose nodes are ``(layer, token)`` and whose edges carry the layer and the
        normalised score.
    """
    _check_choice("root", root, RootMode)
    _check_choice("normalization", normalization, Normalization)
    _check_choice("scan", scan, Scan)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise InvalidInputError(f"threshold must be a finite number, got {threshold!r}")
    if threshold < 0:
        raise InvalidInputError(f"threshold must be >= 0 (the paper uses 0.4), got {threshold}")
    n = len(result.tokens)
    if n == 0:
        raise InvalidInputError("the result has no tokens")
    output = result.output_position if 0 <= result.output_position < n else None

    if layers is None:
        chosen = list(result.layers)
        if root == "top-token":
            chosen = [layer for layer in chosen if layer != result.num_layers - 1]
        if not chosen:
            raise InvalidInputError(
                f"this result holds layers {list(result.layers)}; the tree needs at least one layer "
                "(root='top-token' starts below the last layer: attribute more layers or pass `layers`)"
            )
    else:
        chosen = sorted({result.layers[result.layer_row(layer)] for layer in layers})
        if not chosen:
            raise InvalidInputError("layers is empty; pass at least one attributed layer (or None for all)")
    chosen.sort(reverse=True)
    rows = [result.layer_row(layer) for layer in chosen]

    # one pass over the [K, H, n, n] tensor: everything below works on head sums
    summed_all = result.attributions.detach().sum(dim=1, dtype=torch.float64)
    if root == "cls":
        if output is None:
            raise InvalidInputError(
                f"root='cls' needs the explained output position, but this result has output_position="
                f"{result.output_position}; use root='top-token'"
            )
        root_token = output
    else:
        root_token = _top_token(summed_all.sum(dim=0), output)

    summed = summed_all[rows]
    normalized = _normalize(summed, normalization, -1 if output is None else output)
    nodes, raw_edges = grow_tree(
        normalized, chosen, root=root_token, threshold=float(threshold), scan=scan, skip_row=output
    )
    edges = tuple(
        TreeEdge(
            layer=layer,
            parent=parent,
            child=child,
            score=score,
            attribution=float(summed[chosen.index(layer), parent, child]),
        )
        for layer, parent, child, score in raw_edges
    )
    return AttributionTree(
        tokens=tuple(result.tokens),
        root=nodes[0],
        nodes=tuple(nodes),
        edges=edges,
        layers=tuple(chosen),
        num_layers=result.num_layers,
        threshold=float(threshold),
        root_mode=root,
        normalization=normalization,
        scan=scan,
    )
