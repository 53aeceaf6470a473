"""The context-mixing kernels of attrflow.flow.mixing and attrflow.flow.relevance on random tensors: the shortcuts
(per-token Gram matrices, row chunks) against the formulas written out on the full ``[n, n, d]`` summands."""

from __future__ import annotations

import pytest
import torch

from attrflow.flow import mixing
from attrflow.flow.mixing import LayerTensors, Norm
from attrflow.flow.relevance import gradient_weighted_attention, relevance_rollout


def _layer(layout: str, *, heads: int = 4, kv_heads: int = 2, n: int = 7, d: int = 12, seed: int = 0) -> LayerTensors:
    g = torch.Generator().manual_seed(seed)
    head_dim = d // heads

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def norm(centered: bool) -> Norm:
        return Norm(weight=1 + 0.1 * r(d), bias=r(d) if centered else None, eps=1e-5, centered=centered, inputs=r(n, d))

    return LayerTensors(
        inputs=r(n, d),
        attention=torch.softmax(r(heads, n, n), dim=-1),
        values=r(kv_heads, n, head_dim),
        out_weight=r(heads * head_dim, d),
        out_bias=r(d),
        layout=layout,  # type: ignore[arg-type]
        norm1=norm(True) if layout == "post-norm" else None,
        norm2=norm(True),
    )


def _explicit(layer: LayerTensors) -> tuple[torch.Tensor, torch.Tensor]:
    heads, kv = layer.attention.shape[0], layer.values.shape[0]
    values = layer.values.repeat_interleave(heads // kv, dim=0)
    weight = layer.out_weight.reshape(heads, values.shape[-1], -1)
    f = torch.einsum("hjk,hkd->hjd", values, weight)
    Z = torch.einsum("hij,hjd->ijd", layer.attention, f)
    R = Z.clone()
    R[range(layer.n), range(layer.n)] += layer.inputs
    return Z, R


def _centre(v: torch.Tensor) -> torch.Tensor:
    return v - v.mean(-1, keepdim=True)


@pytest.mark.parametrize("layout", ["post-norm", "pre-norm"])
def test_attention_norm_and_globenc_from_gram_matrices_equal_the_explicit_norms(layout):
    layer = _layer(layout)
    Z, R = _explicit(layer)
    torch.testing.assert_close(mixing.attention_norm(layer), Z.norm(dim=-1))
    if layout == "pre-norm":
        expected = R.norm(dim=-1)
    else:
        n1, n2 = layer.norm1, layer.norm2
        assert n1 is not None and n2 is not None
        var1 = n1.inputs.var(-1, unbiased=False)
        var2 = n2.inputs.var(-1, unbiased=False)
        P = n1.weight * _centre(R) / torch.sqrt(var1 + n1.eps)[:, None, None]
        expected = (n2.weight * _centre(P) / torch.sqrt(var2 + n2.eps)[:, None, None]).norm(dim=-1)
    torch.testing.assert_close(mixing.globenc(layer), expected)


@pytest.mark.parametrize("layout", ["post-norm", "pre-norm"])
def test_alti_in_row_chunks_equals_alti_at_once(layout, monkeypatch):
    layer = _layer(layout, n=9)
    whole = mixing.alti(layer)
    monkeypatch.setattr(mixing, "_CHUNK_ELEMENTS", 2 * 9 * 12)  # two rows at a time
    torch.testing.assert_close(mixing.alti(layer), whole, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(whole.sum(-1), torch.ones(9, dtype=torch.float64))
    assert bool((whole >= 0).all())


def test_an_rms_norm_is_not_centred():
    norm = Norm(weight=torch.ones(3), bias=None, eps=0.0, centered=False, inputs=torch.tensor([[1.0, 2.0, 2.0]]))
    torch.testing.assert_close(norm.variance(), torch.tensor([3.0], dtype=torch.float64))
    torch.testing.assert_close(norm.center(torch.tensor([1.0, 2.0])), torch.tensor([1.0, 2.0]))


def test_cosine_distances_are_sklearns_diagonal():
    sklearn = pytest.importorskip("sklearn.metrics.pairwise")
    g = torch.Generator().manual_seed(1)
    clean = torch.randn(5, 8, generator=g, dtype=torch.float64)
    changed = torch.randn(3, 5, 8, generator=g, dtype=torch.float64)
    ours = mixing.cosine_distances(changed, clean)
    for r in range(3):
        expected = sklearn.cosine_distances(changed[r].numpy(), clean.numpy()).diagonal()
        torch.testing.assert_close(ours[r], torch.from_numpy(expected.copy()))


def test_rollout_is_the_plain_product_without_identity():
    g = torch.Generator().manual_seed(2)
    C = torch.rand(3, 4, 4, generator=g, dtype=torch.float64)
    rolled = mixing.mixing_rollout(C)
    torch.testing.assert_close(rolled[0], C[0])
    torch.testing.assert_close(rolled[2], C[2] @ C[1] @ C[0])


def test_rows_summing_to_zero_stay_zero():
    out = mixing.normalise_rows(torch.tensor([[1.0, 3.0], [0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor([[0.25, 0.75], [0.0, 0.0]], dtype=torch.float64))


def test_norm_methods_only():
    with pytest.raises(ValueError, match="not computed from the block's algebra"):
        mixing.mixing_matrix(_layer("pre-norm"), "value-zeroing")
    with pytest.raises(ValueError, match="method must be one of"):
        mixing.check_method("rollout")


def test_relevance_rollout_adds_each_layer_to_the_identity():
    g = torch.Generator().manual_seed(3)
    attentions = torch.softmax(torch.randn(2, 3, 4, 4, generator=g), dim=-1)
    gradients = torch.randn(2, 3, 4, 4, generator=g)
    weighted = gradient_weighted_attention(attentions, gradients)
    expected = (gradients.double() * attentions.double()).clamp(min=0).mean(dim=1)
    torch.testing.assert_close(weighted, expected)
    relevance = relevance_rollout(weighted)
    first = torch.eye(4, dtype=torch.float64) + weighted[0]
    torch.testing.assert_close(relevance[0], first)
    torch.testing.assert_close(relevance[1], first + weighted[1] @ first)
