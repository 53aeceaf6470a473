"""An independent, literal implementation of self-attention attribution for tests and benchmarks to compare against.

The paper's algorithm one quadrature point at a time, on transformers' own SDPA attention everywhere except the
attributed layer, whose probabilities become the leaf ``α·A``. It shares nothing with attrflow's engine but the
quadrature nodes. The attention function it needs is registered on first use.
"""

from __future__ import annotations

from collections.abc import Callable
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
    model: Any,
    inputs: dict[str, torch.Tensor],
    layer: int,
    target: int,
    steps: int,
    rule: str = "riemann-left",
    *,
    value: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Self-attention attribution of one layer, literally: one full forward + backward per quadrature point.

    Args:
        model: a transformers model (left in SDPA attention afterwards).
        inputs: batch-1 model inputs.
        layer: the attention call (site) whose probabilities are attributed, in call order.
        target: the output whose probability is F.
        steps: quadrature points; ``rule="riemann-left"`` is the official code (α = k/m, k = 0..m−1).
        value: F as a function of the model's whole logits (``[1, N, V]`` for causal LMs, ``[1, C]`` otherwise),
            instead of the probability of ``target`` at the last position (e.g. a continuation's log-probability).

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
            if value is not None:
                prob = value(logits)
            else:
                logits = logits[:, -1] if logits.dim() == 3 else logits
                prob = torch.softmax(logits, -1)[0, target]
            (grad,) = torch.autograd.grad(prob, _ORACLE["leaf"])
            total += grad if weights is None else float(weights[k]) * grad
    finally:
        model.set_attn_implementation("sdpa")
    result = (total * (A / steps))[0] if weights is None else (total * A)[0]
    detached: torch.Tensor = result.detach()
    return detached


def naive_attattr_layers(
    model: Any,
    inputs: dict[str, torch.Tensor],
    *,
    target: int | None = None,
    steps: int = 20,
    completeness: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The official code's algorithm for every layer: per layer, one forward + backward of all m left-Riemann points
    batched together (α = k/m, k = 0..m−1), the layer's probabilities replaced by α·A; every other layer runs
    transformers' own SDPA. This is what the benchmarks time attrflow against.

    Args:
        model: a transformers model (left in SDPA attention afterwards).
        inputs: batch-1 model inputs.
        target: the explained class (default: the prediction).
        steps: m.
        completeness: also run F(0) per layer for the completeness gap (one more forward per layer).

    Returns:
        ``(attributions [L, H, n, n], gaps [L])`` (gaps are NaN without ``completeness``).
    """
    _register()
    model.eval()
    model.set_attn_implementation("eager")
    with torch.no_grad():
        out = model(**inputs, output_attentions=True)
    logits = out.logits[:, -1] if out.logits.dim() == 3 else out.logits
    probs = torch.softmax(logits, -1)[0]
    chosen = int(probs.argmax()) if target is None else int(target)
    # encoder-decoders: the encoder's self-attention sites, which run first
    attentions = [a.detach() for a in (getattr(out, "encoder_attentions", None) or out.attentions)]
    model.set_attn_implementation(_NAME)
    batch = {k: v.expand(steps, *v.shape[1:]) for k, v in inputs.items()}
    alphas = torch.arange(steps, dtype=attentions[0].dtype).view(-1, 1, 1, 1) / steps
    attributions, gaps = [], []
    try:
        for layer, A in enumerate(attentions):
            _ORACLE.update(count=0, layer=layer, alpha=alphas, A=A)
            batch_logits = model(**batch).logits
            batch_logits = batch_logits[:, -1] if batch_logits.dim() == 3 else batch_logits
            prob = torch.softmax(batch_logits, -1)[:, chosen]
            (grad,) = torch.autograd.grad(prob.sum(), _ORACLE["leaf"])
            attribution = grad.sum(0) * (A[0] / steps)
            gap = torch.tensor(float("nan"))
            if completeness:
                with torch.no_grad():
                    _ORACLE.update(count=0, layer=layer, alpha=0.0, A=A)
                    zero_logits = model(**inputs).logits
                    zero_logits = zero_logits[:, -1] if zero_logits.dim() == 3 else zero_logits
                    f0 = torch.softmax(zero_logits, -1)[0, chosen]
                gap = attribution.sum() - (probs[chosen] - f0)
            attributions.append(attribution.detach())
            gaps.append(gap.detach())
    finally:
        model.set_attn_implementation("sdpa")
    return torch.stack(attributions), torch.stack(gaps)
