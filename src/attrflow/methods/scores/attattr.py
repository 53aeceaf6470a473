"""Self-attention attribution as token scores (Hao, Dong, Wei, Xu, AAAI 2021).

``s_l[j] = Σ_h Σ_i Attr(A_l)[h, i, j]``: the attribution of every interaction that reads from token j in layer l
(entry ``[i, j]`` is "i attends to j", so information moves from j to i), summed over heads and query rows. By
completeness ``Σ_j s_l[j] ≈ F(A_l) − F(0)``: each layer's attribution is split among the positions it reads from.
Overall scores sum the layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_STEPS, DEFAULT_TOLERANCE
from attrflow.methods.context import ExplainContext
from attrflow.methods.quadrature import Rule
from attrflow.methods.registry import Method, register_method
from attrflow.results import TokenScores


def _validate_quadrature(options: dict[str, Any]) -> None:
    from attrflow.errors import InvalidInputError
    from attrflow.methods.attribution import check_steps
    from attrflow.methods.quadrature import RULES
    from attrflow.validation import check_choice, check_optional_int

    check_steps(options.get("steps", "auto"))
    check_choice("rule", options.get("rule", DEFAULT_RULE), RULES)
    check_optional_int("batch_size", options.get("batch_size"), minimum=1)
    tolerance = options.get("tolerance", DEFAULT_TOLERANCE)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance > 0:
        raise InvalidInputError(f"tolerance must be a positive number, got {tolerance!r}")


@register_method
class AttAttr(Method):
    """Self-attention attribution, per layer, flowing out of each token."""

    name = "attattr"
    description = "self-attention attribution: integrated gradients of each layer's attention, flowing out of token j"
    paper = "Hao, Dong, Wei, Xu, Self-Attention Attribution, AAAI 2021"
    produces = frozenset({"layer_scores", "matrices", "interactions"})
    summary = "sum"
    signed = True
    needs_gradients = True
    cost = "1 branching forward + 1 backward (refined per layer)"
    in_explain = True
    reports = ("completeness_gap",)

    def validate(self, **options: Any) -> None:
        """steps ("auto" or >= 1), rule, tolerance > 0."""
        _validate_quadrature(options)

    def compute(
        self,
        context: ExplainContext,
        *,
        layers: int | Sequence[int] | None = None,
        steps: int | Literal["auto"] = DEFAULT_STEPS,
        rule: Rule = DEFAULT_RULE,
        batch_size: int | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> TokenScores:
        """AttAttr token scores ``[L, n]`` (signed); per-layer matrices are the attributions summed over heads.

        Long inputs, whose full ``[L, H, n, n]`` attributions would not fit the available memory, are attributed
        with ``keep="tokens"`` (same scores, memory that grows with n·d; no per-layer matrices)."""
        context.require_output_position(self.name)
        result = context.attribution(
            layers=layers, steps=steps, rule=rule, batch_size=batch_size, tolerance=tolerance, keep="auto"
        )
        gaps = result.completeness_gap.double()
        worst = int(gaps.abs().argmax()) if gaps.numel() else 0
        assert result.token_totals is not None
        return context.result(
            self.name,
            result.token_totals,
            "Attr summed over heads and query rows per key token j, per layer (overall: summed over layers); signed",
            layers=result.layers,
            summary="sum",
            matrices=result.attributions.double().sum(dim=1).float() if result.has_full else None,
            completeness_gap=float(gaps[worst]) if gaps.numel() else None,
            settings={
                "rule": rule,
                "steps": steps,
                "steps_per_layer": list(result.settings.get("steps_per_layer", [])),
                "tolerance": tolerance,
                "keep": result.settings.get("keep", "full"),
            },
        )
