"""Quadrature rules on [0, 1] for integrated gradients: pure functions returning points and weights.

The integrand of self-attention attribution, α ↦ ∂F(α·A)/∂A, is smooth, so Gauss–Legendre reaches a far
smaller completeness gap than a Riemann sum with the same number of points. The Riemann rules exist to reproduce
the paper (right sum, m = 20) and the official code (left sum, α = k/m for k = 0..m−1) exactly.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from attrflow.errors import InvalidInputError

Rule = Literal["riemann-left", "riemann-right", "riemann-middle", "gauss-legendre", "gauss-lobatto"]
RULES: tuple[str, ...] = get_args(Rule)


def quadrature(rule: Rule, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points α_k ∈ [0, 1] and weights w_k with ∫₀¹ f(α) dα ≈ Σ_k w_k f(α_k).

    Args:
        rule: ``"riemann-left"`` (α = k/m, k = 0..m−1; official AttAttr code), ``"riemann-right"`` (k = 1..m;
            the paper), ``"riemann-middle"`` (α = (k + ½)/m), ``"gauss-legendre"`` (exact for polynomials of
            degree ≤ 2m − 1), ``"gauss-lobatto"`` (includes both ends α = 0 and α = 1; exact to degree 2m − 3;
            attrflow gets the two end points almost for free, see :mod:`attrflow.methods.attribution`).
        steps: the number of points m ≥ 1 (≥ 2 for gauss-lobatto).

    Returns:
        ``(alphas, weights)``, float64 arrays of length ``steps``; the weights sum to 1.

    Raises:
        InvalidInputError: unknown rule, or steps < 1.
    """
    if rule not in RULES:
        raise InvalidInputError(f"rule must be one of {', '.join(RULES)}; got {rule!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InvalidInputError(f"steps must be a whole number >= 1, got {steps!r}")
    m = int(steps)
    k = np.arange(m, dtype=np.float64)
    if rule == "gauss-legendre":
        nodes, weights = np.polynomial.legendre.leggauss(m)
        return (nodes + 1.0) / 2.0, weights / 2.0
    if rule == "gauss-lobatto":
        if m < 2:
            raise InvalidInputError("gauss-lobatto needs steps >= 2 (it always includes both end points)")
        legendre = np.polynomial.legendre.Legendre.basis(m - 1)
        inner = np.sort(legendre.deriv().roots().real) if m > 2 else np.empty(0)
        nodes = np.concatenate([[-1.0], inner, [1.0]])
        weights = 2.0 / (m * (m - 1) * legendre(nodes) ** 2)
        return (nodes + 1.0) / 2.0, weights / 2.0
    offset = {"riemann-left": 0.0, "riemann-right": 1.0, "riemann-middle": 0.5}[rule]
    return (k + offset) / m, np.full(m, 1.0 / m)
