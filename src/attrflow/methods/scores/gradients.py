"""Gradient token scores on the input embeddings: the input gradient (sum, the paper's; L2 norm), gradient × input
and integrated gradients (Sundararajan et al., ICML 2017). See :mod:`attrflow.methods.gradients` for why the summed
gradient is rounding noise for LayerNorm models (its ``cancellation`` diagnostic says so per input)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_TOLERANCE
from attrflow.methods.context import ExplainContext
from attrflow.methods.gradients import CANCELLATION_THRESHOLD
from attrflow.methods.quadrature import Rule
from attrflow.methods.registry import Method, register_method
from attrflow.models import Model
from attrflow.results import TokenScores

_PAPER = "Abnar & Zuidema, ACL 2020 (§5, input gradients as ground truth)"


class _EmbeddingGradient(Method):
    needs_gradients = True
    cost = "1 forward + 1 backward"

    def unsupported(self, model: Model) -> str | None:
        """Gradients on the input embeddings need token ids."""
        if model.task == "image-classification":
            return "gradient token scores act on word embeddings; image models are not supported"
        return None


@register_method
class InputGradient(_EmbeddingGradient):
    """``|Σ_d ∂F/∂e_{j,d}|`` (the paper's definition)."""

    name = "gradient"
    reports = ("cancellation",)
    description = "input gradient |Σ_d ∂F/∂e_j,d| (the paper's; rounding noise for LayerNorm models, see cancellation)"
    paper = _PAPER

    def caveat(self, values: Mapping[str, Any]) -> str | None:
        """Say on how many examples the summed gradient is rounding noise."""
        cancellation = np.asarray(values.get("cancellation", []), dtype=np.float64)
        noise = float(np.mean(cancellation < CANCELLATION_THRESHOLD)) if cancellation.size else 0.0
        if noise == 0.0:
            return None
        return (
            f"'gradient' (|Σ_d ∂F/∂e|, the paper's definition) is floating-point rounding noise on {noise:.0%} of the "
            "examples: a LayerNorm makes the model invariant to shifting an embedding along (1, …, 1), so the sum "
            "vanishes exactly. Read 'gradient_l2' (‖∂F/∂e‖₂) instead."
        )

    def compute(self, context: ExplainContext) -> TokenScores:
        """Summed input gradient ``[n]``; ``diagnostics["cancellation"]`` below 1e-5 means rounding noise."""
        context.require_output_position(self.name)
        grads = context.gradients()
        return context.result(
            self.name,
            grads.gradient,
            "|Σ_d ∂p(target)/∂e_j,d| at the input embedding"
            + (
                " — rounding noise for this model (LayerNorm cancels the sum)"
                if grads.cancellation < CANCELLATION_THRESHOLD
                else ""
            ),
            diagnostics={"cancellation": grads.cancellation},
        )


@register_method
class GradientL2(_EmbeddingGradient):
    """``‖∂F/∂e_j‖₂``."""

    name = "gradient_l2"
    description = "input gradient L2 norm ‖∂F/∂e_j‖₂"
    paper = _PAPER + ", as the L2 norm"

    def compute(self, context: ExplainContext) -> TokenScores:
        """L2 norm of the gradient at each token's embedding ``[n]``."""
        context.require_output_position(self.name)
        return context.result(self.name, context.gradients().gradient_l2, "‖∂p(target)/∂e_j‖₂ at the input embedding")


@register_method
class GradientTimesInput(_EmbeddingGradient):
    """``|Σ_d e_{j,d} ∂F/∂e_{j,d}|``."""

    name = "gradient_x_input"
    description = "gradient × input |Σ_d e_j,d ∂F/∂e_j,d|"
    paper = _PAPER

    def compute(self, context: ExplainContext) -> TokenScores:
        """Gradient × input ``[n]``."""
        context.require_output_position(self.name)
        return context.result(
            self.name, context.gradients().gradient_x_input, "|Σ_d e_j,d ∂p(target)/∂e_j,d| at the input"
        )


@register_method
class IntegratedGradients(_EmbeddingGradient):
    """Integrated gradients from the zero embedding."""

    name = "integrated_gradients"
    description = "integrated gradients on the embeddings, zero baseline (signed)"
    paper = "Sundararajan, Taly, Yan, Axiomatic Attribution for Deep Networks, ICML 2017"
    signed = True
    reports = ("completeness_gap",)
    cost = "1 forward-backward per quadrature point (adaptive)"

    def validate(self, **options: Any) -> None:
        """steps ("auto" or >= 1), rule, tolerance > 0."""
        from attrflow.methods.scores.attattr import _validate_quadrature

        _validate_quadrature(options)

    def prepare(self, context: ExplainContext, **options: Any) -> None:
        """The plain gradients of the other gradient methods come from this method's pass."""
        settings = {k: v for k, v in options.items() if k in ("steps", "rule", "batch_size", "tolerance")}
        context.plan_gradients(**{"steps": "auto", "rule": DEFAULT_RULE, **settings})

    def compute(
        self,
        context: ExplainContext,
        *,
        steps: int | Literal["auto"] = "auto",
        rule: Rule = DEFAULT_RULE,
        batch_size: int | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> TokenScores:
        """Integrated gradients ``[n]`` with their completeness gap."""
        context.require_output_position(self.name)
        grads = context.gradients(steps=steps, rule=rule, batch_size=batch_size, tolerance=tolerance)
        assert grads.integrated_gradients is not None
        return context.result(
            self.name,
            grads.integrated_gradients,
            "Σ_d e_j,d ∫₀¹ ∂p(target)(α·e)/∂e_j,d dα, zero-embedding baseline (signed)",
            completeness_gap=float(grads.completeness_gap),
            settings={"steps": steps, "rule": rule, "steps_used": grads.steps},
        )
