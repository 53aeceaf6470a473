"""An independent, literal implementation of self-attention attribution for tests and benchmarks to compare against.

The paper's algorithm one quadrature point at a time, on transformers' own SDPA attention everywhere except the
attributed layer, whose probabilities become the leaf ``α·A``. It shares nothing with attrflow's engine but the
quadrature nodes. The attention function it needs is registered on first use.
"""

from __future__ import annotations

from typing import Any

import torch

from attrflow.methods.quadrature import quadrature

_ORACLE: dict[str, Any] = {}
_NAME = "attrflow_testing_oracle"


def _oracle_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' own SDPA everywhere, except the target site: its probabilities become the leaf α·A."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    site = _ORACLE["count"]
    _ORACLE["count"] += 1
    if site != _ORACLE["layer"]:
        result: tuple[torch.Tensor, torch.Tensor] = sdpa_attention_forward(
            module, query, key, value, attention_mask, **kwargs
        )
        return result
    leaf = (_ORACLE["alpha"] * _ORACLE["A"]).detach().requires_grad_(True)
    _ORACLE["leaf"] = leaf
    value = repeat_kv(value, query.shape[1] // value.shape[1])
    return torch.matmul(leaf, value).transpose(1, 2).contiguous(), leaf


def _register() -> None:
    if not _ORACLE.get("registered"):
        from transformers import AttentionInterface

        AttentionInterface.register(_NAME, _oracle_attention)
        _ORACLE["registered"] = True


def naive_attattr(
    model: Any, inputs: dict[str, torch.Tensor], layer: int, target: int, steps: int, rule: str = "riemann-left"
) -> torch.Tensor:
    """Self-attention attribution of one layer, literally: one full forward + backward per quadrature point.

    Args:
        model: a transformers model (left in SDPA attention afterwards).
        inputs: batch-1 model inputs.
        layer: the attention call (site) whose probabilities are attributed, in call order.
        target: the output whose probability is F.
        steps: quadrature points; ``rule="riemann-left"`` is the official code (α = k/m, k = 0..m−1).

    Returns:
        ``[H, N, N]``: ``A ⊙ Σ_k w_k ∂F(α_k·A)/∂A``.
    """
    _register()
    model.eval()
    model.set_attn_implementation("eager")
    with torch.no_grad():
        out = model(**inputs, output_attentions=True)
    attentions = getattr(out, "encoder_attentions", None) or out.attentions  # encoder-decoders: encoder sites first
    A = attentions[layer]
    model.set_attn_implementation(_NAME)
    total = torch.zeros_like(A)
    if rule == "riemann-left":
        alphas, weights = [k / steps for k in range(steps)], None
    else:
        nodes, node_weights = quadrature(rule, steps)  # type: ignore[arg-type]
        alphas, weights = [float(a) for a in nodes], [float(w) for w in node_weights]
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
    result = (total * (A / steps))[0] if weights is None else (total * A)[0]
    return result.detach()
