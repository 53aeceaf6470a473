"""An independent, literal implementation of self-attention attribution for the tests to compare against.

One module (imported as ``tests.oracle``) so that the attention function it registers and the state it keeps exist
once, whichever test file imports it first.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

from attrflow.methods.quadrature import quadrature

_ORACLE: dict = {}


def _oracle_attention(module, query, key, value, attention_mask, **kwargs):
    """transformers' own SDPA everywhere, except the target site: its probabilities become the leaf α·A."""
    site = _ORACLE["count"]
    _ORACLE["count"] += 1
    if site != _ORACLE["layer"]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    leaf = (_ORACLE["alpha"] * _ORACLE["A"]).detach().requires_grad_(True)
    _ORACLE["leaf"] = leaf
    value = repeat_kv(value, query.shape[1] // value.shape[1])
    return torch.matmul(leaf, value).transpose(1, 2).contiguous(), leaf


AttentionInterface.register("oracle_test", _oracle_attention)


def naive_attattr(model, inputs, layer, target, steps, rule="riemann-left"):
    """The paper's algorithm, literally: one full forward+backward per quadrature point (left Riemann: official code)."""
    model.eval()
    model.set_attn_implementation("eager")
    with torch.no_grad():
        out = model(**inputs, output_attentions=True)
    attentions = getattr(out, "encoder_attentions", None) or out.attentions  # encoder-decoders: encoder sites first
    A = attentions[layer]
    model.set_attn_implementation("oracle_test")
    total = torch.zeros_like(A)
    alphas, weights = quadrature(rule, steps) if rule != "riemann-left" else ([k / steps for k in range(steps)], None)
    try:
        for k, alpha in enumerate(alphas):
            _ORACLE.update(count=0, layer=layer, alpha=float(alpha), A=A)
            logits = model(**inputs).logits
            logits = logits[:, -1] if logits.dim() == 3 else logits
            prob = torch.softmax(logits, -1)[0, target]
            (grad,) = torch.autograd.grad(prob, _ORACLE["leaf"])
            total += grad if weights is None else float(weights[k]) * grad
    finally:
        model.set_attn_implementation("sdpa")
    return (total * (A / steps))[0] if weights is None else (total * A)[0]
