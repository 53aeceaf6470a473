"""The HTML report, the SVG tree and the matplotlib figures (no browser: see test_browser.py)."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

import attrflow
from attrflow.analysis.tree import attribution_tree
from attrflow.errors import InvalidInputError, MissingDependencyError
from attrflow.results import AttentionAttribution, RecordedAttention
from attrflow.viz import (
    TokenScores,
    default_token_scores,
    plot_head_scores,
    plot_heatmap,
    plot_token_scores,
    plot_tree,
    render_attention,
    render_report,
    tree_svg,
)

XSS = "<img src=x onerror=alert(1)>"
HOSTILE = ("[CLS]", "good", XSS, "</script>", "a&b", '"q"', "[SEP]")


def make_result(
    tokens: tuple[str, ...] = HOSTILE, *, L: int = 3, H: int = 2, seed: int = 0, output_position: int = 0
) -> AttentionAttribution:
    n = len(tokens)
    g = torch.Generator().manual_seed(seed)
    attributions = torch.randn(L, H, n, n, generator=g) * 0.01
    gaps = torch.tensor([1e-4 * (k + 1) for k in range(L)])
    probability = 0.875
    # consistent with completeness: Σ Attr_l = p − baseline_l + gap_l
    baseline = probability - (attributions.sum(dim=(1, 2, 3)) - gaps)
    return AttentionAttribution(
        tokens=tokens,
        attributions=attributions,
        attentions=torch.rand(L, H, n, n, generator=g).softmax(-1),
        layers=tuple(range(L)),
        target=1,
        target_label="pos<itive>",
        predicted=1,
        probability=probability,
        baseline_probability=baseline,
        completeness_gap=gaps,
        input_ids=tuple(range(n)),
        special_mask=(True,) + (False,) * (n - 2) + (True,),
        output_position=output_position,
        settings={"model": "tiny<script>alert(2)</script>", "rule": "gauss-legendre", "steps": 8},
    )


class Tags(HTMLParser):
    """Collects the element and attribute names that the browser's parser would see."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.names.add(tag)
        self.attributes.update(name for name, _ in attrs)


def data_block(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="attrflow-data">(.*?)</script>', page, re.S)
    assert match is not None
    return json.loads(match.group(1))


def decode(spec: dict, shape: tuple[int, ...]) -> np.ndarray:
    raw = np.frombuffer(base64.b64decode(spec["data"]), dtype="<f2").astype(np.float32)
    scales = np.asarray(spec["scales"], dtype=np.float32)
    return (raw.reshape(len(scales), -1) * scales[:, None]).reshape(shape)


# ---------------------------------------------------------------------------------------------------- escaping


def test_input_text_is_escaped_everywhere():
    page = render_report(make_result())
    assert XSS not in page
    assert "<img" not in page
    assert html.escape(XSS) in page
    # our own two script blocks are the only ones that close
    assert page.count("</script>") == 2
    assert page.count("<script") == 2
    assert "tiny&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert "pos&lt;itive&gt;" in page
    tags = Tags()
    tags.feed(page)
    assert "img" not in tags.names and "onerror" not in tags.attributes
    # the hostile tokens survive as data, intact
    assert data_block(page)["tokens"] == list(HOSTILE)


def test_report_needs_no_network():
    page = make_result().to_html()  # with the default tree (an SVG)
    tags = Tags()
    tags.feed(page)
    assert {"img", "link", "iframe", "object", "embed"}.isdisjoint(tags.names)
    assert {"src", "href", "xlink:href", "action", "onerror", "onload"}.isdisjoint(tags.attributes)
    assert set(re.findall(r"url\(([^)]*)\)", page)) == {"#attrflow-arrow"}  # only in-document references
    assert "<link" not in page and "@import" not in page
    # the only absolute URL is the SVG namespace (a name, never fetched)
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {"http://www.w3.org/2000/svg"}
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in csp
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp  # the inline script is the only one allowed to run


def test_sections_are_present():
    page = make_result().to_html(title="My <title>")
    for section in ("input", "token-scores", "head-scores", "heatmaps", "tree", "settings"):
        assert f'<section id="{section}">' in page
    assert "<title>My &lt;title&gt;</title>" in page
    assert 'id="hm-canvas"' in page and 'id="hm-layer"' in page and 'id="hm-head"' in page
    assert 'class="attrflow-tree"' in page


# ---------------------------------------------------------------------------------------------------- content


def test_embedded_matrices_decode_to_the_result():
    result = make_result()
    data = data_block(render_report(result))
    L, H, n, _ = result.attentions.shape
    attention = decode(data["matrices"]["attention"], (L, H, n, n))
    attribution = decode(data["matrices"]["attribution"], tuple(result.attributions.shape))
    # float16 per matrix scaled by its max |value|: 3 significant digits of the matrix maximum
    np.testing.assert_allclose(attention, result.attentions.numpy(), atol=1e-3 * float(result.attentions.max()))
    bound = float(result.attributions.abs().max())
    np.testing.assert_allclose(attribution, result.attributions.numpy(), atol=1e-3 * bound)
    assert data["matrices"]["attribution"]["layers"] == list(result.layers)
    assert data["heads"] == H


def test_heatmap_heads_mean_embeds_the_mean_and_auto_switches_by_size():
    result = make_result()
    L, _, n, _ = result.attentions.shape
    data = data_block(render_report(result, heatmap_heads="mean"))
    assert data["perHead"] is False and data["matrices"]["attention"]["heads"] == 1
    mean = decode(data["matrices"]["attention"], (L, 1, n, n))[:, 0]
    expected = result.attentions.mean(dim=1).numpy()
    np.testing.assert_allclose(mean, expected, atol=1e-3 * float(expected.max()))
    assert data_block(render_report(result))["perHead"] is True  # small: every head
    big = make_result(tokens=tuple(f"t{i}" for i in range(120)), L=12, H=12)
    auto = data_block(render_report(big))
    assert auto["perHead"] is False
    assert data_block(render_report(big, heatmap_heads="all"))["matrices"]["attention"]["heads"] == 12
    with pytest.raises(InvalidInputError, match="heatmap_heads"):
        render_report(result, heatmap_heads="some")  # type: ignore[arg-type]


def test_default_token_scores_match_a_loop_oracle():
    result = make_result(output_position=0)
    scores = default_token_scores(result)
    K, H, n, _ = result.attributions.shape
    a = result.attributions.double()
    expected = [sum(float(a[k, h, i, j]) for k in range(K) for h in range(H) for i in range(n)) for j in range(n)]
    assert scores["attribution"].values == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # completeness: the token scores add up to Σ_l (F(A) − F(0·A_l)) + Σ_l gap_l
    total = sum(result.probability - float(b) for b in result.baseline_probability.double()) + float(
        result.completeness_gap.double().sum()
    )
    assert sum(scores["attribution"].values) == pytest.approx(total, abs=1e-6)
    last = result.attentions[-1].double()
    raw = [sum(float(last[h, 0, j]) for h in range(H)) / H for j in range(n)]
    assert scores["raw attention"].values == pytest.approx(raw)
    assert "row of the output position 0" in scores["raw attention"].reduction


def test_raw_attention_without_output_position_averages_rows():
    result = make_result(output_position=-1)
    row = default_token_scores(result)["raw attention"]
    assert row.values == pytest.approx(result.attentions[-1].double().mean(dim=(0, 1)).tolist())
    assert "mean over all query rows" in row.reduction


def test_extra_token_score_rows_order_and_replacement():
    result = make_result()
    n = len(result.tokens)
    rollout = TokenScores.from_values("rollout", torch.linspace(0, 1, n), "rollout, last layer, [CLS] row")
    flow = TokenScores.from_values("flow", tuple(float(i) for i in range(n)), "flow <b>max-flow</b>")
    page = render_report(result, token_scores={"rollout": rollout, "flow": flow})
    order = re.findall(r'<div class="score-row" data-method="([^"]+)">', page)
    assert order == ["attribution", "rollout", "flow", "raw attention"]
    assert "flow &lt;b&gt;max-flow&lt;/b&gt;" in page
    replaced = TokenScores.from_values("attribution", (0.0,) * n, "my own reduction")
    page = render_report(result, token_scores={"attribution": replaced})
    assert re.findall(r'data-method="([^"]+)"', page) == ["attribution", "raw attention"]
    assert "my own reduction" in page


def test_token_scores_validation():
    result = make_result()
    with pytest.raises(InvalidInputError, match="3 values but the input has 7 tokens"):
        render_report(result, token_scores={"x": TokenScores.from_values("x", (1.0, 2.0, 3.0), "r")})
    with pytest.raises(InvalidInputError, match="must be a TokenScores"):
        render_report(result, token_scores={"x": [1.0] * 7})  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError, match="must be numbers"):
        TokenScores.from_values("x", ("a", "b"), "r")
    with pytest.warns(DeprecationWarning, match="from_values"):
        old_style = TokenScores("x", (1.0, 2.0), "r")  # type: ignore[arg-type]
    assert old_style.values == (1.0, 2.0) and old_style.reduction == "r"
    assert TokenScores.from_values("x", np.arange(3.0), "r").values == (0.0, 1.0, 2.0)


def test_highlight_colour_follows_sign_and_magnitude():
    result = make_result(tokens=("[CLS]", "up", "down", "half", "[SEP]"))
    scores = TokenScores.from_values("s", (100.0, 2.0, -2.0, 1.0, 0.0), "r")
    page = render_report(result, token_scores={"s": scores})
    row = re.search(r'data-method="s">.*?<p class="tokens">(.*?)</p>', page, re.S).group(1)
    colours = {text: colour for colour, text in re.findall(r'style="background:([^"]+)"[^>]*>([^<]*)</span>', row)}
    # the special [CLS] (100) does not set the scale: "up" is the strongest non-special token
    assert colours["up"] == "rgba(214,39,40,0.850)"
    assert colours["down"] == "rgba(31,119,180,0.850)"
    assert colours["half"] == "rgba(214,39,40,0.425)"


def test_head_grid_and_completeness_table():
    result = make_result()
    page = render_report(result)
    cells = re.findall(r'<td data-layer="(\d+)" data-head="(\d+)"[^>]*title="[^"]*max attribution ([^"]+)"', page)
    assert len(cells) == len(result.layers) * result.num_heads
    best = result.head_scores()
    for layer, head, value in cells:
        assert float(value) == pytest.approx(float(best[int(layer), int(head)]), rel=1e-3)
    for gap in result.completeness_gap.tolist():
        assert f"<td>{gap:.3g}</td>" in page


def test_tree_argument_and_fallback():
    result = make_result()
    tree = attribution_tree(result, root="top-token", threshold=0.2)
    page = render_report(result, tree=tree)
    assert "top-token" in page and "τ = 0.2" in page
    lonely = make_result(L=1, output_position=-1)  # no output position and a single layer: no tree possible
    assert "No attribution tree for this result" in lonely.to_html()
    # the renderer draws what it is given and never computes a tree itself
    assert "No attribution tree for this result" in render_report(result)
    assert "Root:" in result.to_html()


def test_to_html_writes_the_same_document(tmp_path):
    result = make_result()
    target = tmp_path / "sub" / "report.html"
    page = result.to_html(target)
    assert target.read_text(encoding="utf-8") == page
    assert result.to_html() == page  # deterministic


def test_repr_html_is_a_sandboxed_iframe():
    result = make_result()
    frame = result._repr_html_()
    assert frame.startswith("<iframe srcdoc=") and 'sandbox="allow-scripts"' in frame
    assert "<script" not in frame and "<img" not in frame
    srcdoc = re.search(r'srcdoc="([^"]*)"', frame).group(1)
    assert html.unescape(srcdoc) == result.to_html()
    tree = attribution_tree(result)
    assert tree._repr_html_().startswith("<svg")


# ---------------------------------------------------------------------------------------------------- SVG tree


def test_tree_svg_is_wellformed_and_complete():
    result = make_result()
    tree = attribution_tree(result, threshold=0.1)
    svg = tree_svg(tree, title="a <tree>")
    assert XSS not in svg
    root = ET.fromstring(svg)
    ns = {"s": "http://www.w3.org/2000/svg"}
    nodes = root.findall(".//s:g[@class='attrflow-node']", ns)
    assert {(int(g.get("data-layer")), int(g.get("data-token"))) for g in nodes} == {
        (n.layer, n.token) for n in tree.nodes
    }
    assert len(root.findall(".//s:path[@class='attrflow-edge']", ns)) == len(tree.edges)
    texts = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert any(XSS[:13] in t for t in texts)  # shown as text (shortened on the axis)
    assert "a <tree>" in texts
    assert tree.to_svg() == tree_svg(tree)


def test_tree_svg_positions_follow_layers_and_tokens():
    result = make_result()
    tree = attribution_tree(result, threshold=0.1, scan="sequential")
    root = ET.fromstring(tree_svg(tree))
    positions = {}
    for g in root.iter("{http://www.w3.org/2000/svg}g"):
        rect = g.find("{http://www.w3.org/2000/svg}rect")
        positions[(int(g.get("data-layer")), int(g.get("data-token")))] = (float(rect.get("x")), float(rect.get("y")))
    for (layer_a, token_a), (x_a, y_a) in positions.items():
        for (layer_b, token_b), (x_b, y_b) in positions.items():
            if token_a < token_b:
                assert x_a < x_b  # tokens left to right
            if layer_a > layer_b:
                assert y_a < y_b  # higher layers higher up


# ---------------------------------------------------------------------------------------------------- figures


@pytest.fixture
def no_pyplot_figures():
    plt = pytest.importorskip("matplotlib.pyplot")
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before  # figures are never registered with pyplot (nothing to show or leak)


def test_plot_heatmap_shows_the_selected_matrix(no_pyplot_figures, tmp_path):
    result = make_result()
    figure = plot_heatmap(result, layer=-1)
    shown = figure.axes[0].images[0].get_array()
    np.testing.assert_allclose(shown, result.attributions[-1].mean(dim=0).numpy())
    figure = plot_heatmap(result, kind="attention", layer=1, head=1)
    np.testing.assert_allclose(figure.axes[0].images[0].get_array(), result.attentions[1, 1].numpy())
    assert figure.axes[0].get_title() == "attention, layer 1, head 1"
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == list(result.tokens)
    figure.savefig(tmp_path / "h.png")
    figure.savefig(tmp_path / "h.svg")
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (tmp_path / "h.svg").read_text()
    assert result.plot(kind="attention", layer=1, head=1).axes[0].get_title() == "attention, layer 1, head 1"
    with pytest.raises(InvalidInputError):
        plot_heatmap(result, kind="attention", layer=7)
    with pytest.raises(InvalidInputError):
        plot_heatmap(result, head=5)
    with pytest.raises(InvalidInputError):
        plot_heatmap(result, kind="keys")  # type: ignore[arg-type]


def test_plots_draw_on_a_given_axes(no_pyplot_figures):
    from matplotlib.figure import Figure

    result = make_result()
    figure = Figure()
    left, right = figure.subplots(1, 2)
    assert plot_head_scores(result, ax=left) is figure
    np.testing.assert_allclose(left.images[0].get_array(), result.head_scores().numpy())
    scores = default_token_scores(result)["attribution"]
    assert plot_token_scores(result.tokens, scores, special_mask=result.special_mask, ax=right) is figure
    heights = [bar.get_height() for bar in right.patches]
    assert heights == pytest.approx(list(scores.values))
    with pytest.raises(InvalidInputError):
        plot_token_scores(result.tokens[:3], scores)


def test_plot_tree_draws_every_node_and_edge(no_pyplot_figures, tmp_path):
    result = make_result()
    tree = attribution_tree(result, threshold=0.1)
    figure = plot_tree(tree)
    axes = figure.axes[0]
    labels = [t for t in axes.texts if t.get_text()]
    assert sorted((t.get_position(), t.get_text()) for t in labels) == sorted(
        ((float(n.token), float(n.layer)), result.tokens[n.token]) for n in tree.nodes
    )
    assert len([t for t in axes.texts if not t.get_text()]) == len(tree.edges)  # one arrow per edge
    figure.savefig(tmp_path / "tree.png")
    assert tree.plot().axes[0].get_title().startswith("attribution tree")


def test_missing_matplotlib_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match=r"attrflow\[viz\]"):
        plot_heatmap(make_result())


def test_public_names():
    assert attrflow.attribution_tree is attribution_tree
    assert attrflow.TokenScores is TokenScores
    assert attrflow.render_report is render_report


def test_root_only_tree_still_draws(no_pyplot_figures):
    tree = attribution_tree(make_result(), threshold=50.0)
    assert tree.edges == ()
    root = ET.fromstring(tree_svg(tree))
    assert len(root.findall(".//{http://www.w3.org/2000/svg}g")) == 1
    assert len([t for t in plot_tree(tree).axes[0].texts if t.get_text()]) == 1


def make_recorded(tokens: tuple[str, ...] = HOSTILE) -> RecordedAttention:
    n = len(tokens)
    g = torch.Generator().manual_seed(4)
    return RecordedAttention(
        tokens=tokens,
        attentions=torch.rand(4, 3, n, n, generator=g).softmax(-1),
        predicted=2,
        predicted_label="<neg>",
        probability=0.6,
        special_mask=(True,) + (False,) * (n - 2) + (True,),
    )


def test_recorded_attention_page(tmp_path):
    recorded = make_recorded()
    n = len(recorded.tokens)
    rollout = TokenScores.from_values("rollout", tuple(float(i) for i in range(n)), "rollout, last layer")
    page = render_attention(recorded, token_scores={"rollout": rollout})
    assert XSS not in page and html.escape(XSS) in page and "&lt;neg&gt; (2)" in page
    tags = Tags()
    tags.feed(page)
    assert "img" not in tags.names
    assert re.findall(r'data-method="([^"]+)"', page) == ["rollout", "raw attention"]
    for section in ("input", "token-scores", "heatmaps"):
        assert f'<section id="{section}">' in page
    data = data_block(page)
    assert list(data["matrices"]) == ["attention"]
    np.testing.assert_allclose(
        decode(data["matrices"]["attention"], tuple(recorded.attentions.shape)),
        recorded.attentions.numpy(),
        atol=1e-3,
    )
    written = recorded.to_html(tmp_path / "r.html")
    assert written == (tmp_path / "r.html").read_text(encoding="utf-8") == render_attention(recorded)
    frame = recorded._repr_html_()
    assert frame.startswith("<iframe srcdoc=") and "<script" not in frame


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_report_of_a_real_attribution(arch, no_pyplot_figures):
    from attrflow.testing import build, example_inputs

    model = attrflow.load_model(build(arch, init_scale=0.2))
    result = attrflow.attribute(model, example_inputs(arch), steps=2)
    page = result.to_html()
    tree = attribution_tree(result)
    assert tree.root.token == result.output_position  # [CLS] for bert, the last token for gpt2
    assert tree_svg(tree) in page
    data = data_block(page)
    assert data["tokens"] == list(result.tokens)
    assert data["matrices"]["attention"]["layers"] == list(range(result.num_layers))
    for kind in ("attribution", "attention"):
        assert plot_heatmap(result, kind=kind).axes
