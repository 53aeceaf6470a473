"""Context mixing beyond attention weights as token scores: attention-norm, GlobEnc, ALTI and value zeroing.

Each is a per-layer method: row l of the scores is the explained position's row of the method's own aggregation up
to layer l (``A₁ = C₁``, ``A_l = C_l·A_{l−1}``, no identity, no renormalisation; MIXING.md), the per-layer matrices
``C_l`` are the result's ``matrices``. All positions are kept, as the official code keeps them. They read rows of
matrices that every position has, so ``position=`` picks another row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from attrflow.flow.mixing import MixingMethod
from attrflow.methods.context import ExplainContext
from attrflow.methods.mixing import PAPERS, mixing_of, mixing_unsupported
from attrflow.methods.registry import Method, Produces, register_method
from attrflow.models import Model
from attrflow.results import TokenScores
from attrflow.validation import check_optional_int


class _Mixing(Method):
    """Shared computation of the four context-mixing measures."""

    measure: ClassVar[MixingMethod]
    produces: ClassVar[frozenset[Produces]] = frozenset({"layer_scores", "matrices"})
    reads_output = False
    summary = "last"
    words: ClassVar[str]

    def unsupported(self, model: Model) -> str | None:
        """Why the model's blocks cannot be decomposed (or, for value zeroing, run alone)."""
        return mixing_unsupported(model, self.measure)

    def _compute(
        self, context: ExplainContext, layers: int | Sequence[int] | None, batch_size: int | None
    ) -> TokenScores:
        chosen = context.layers(layers)
        mixing = mixing_of(context, self.measure, range(max(chosen) + 1), batch_size=batch_size)
        rolled = mixing.rollouts()[list(chosen)]
        return context.result(
            self.name,
            rolled[:, context.position, :].float(),
            f"{self.words}; aggregated up to each layer (A_l = C_l·A_(l−1), no identity, no renormalisation), "
            f"row of {context.where()}",
            layers=chosen,
            summary="last",
            matrices=mixing.matrices[list(chosen)],
            reads_output=False,
            settings={"layout": mixing.settings["layout"]},
        )


@register_method
class AttentionNorm(_Mixing):
    """Kobayashi et al. 2020."""

    name = "attention-norm"
    measure = "attention-norm"
    description = "attention norm ‖Σ_h α_ij f(x_j)‖: size of token j's attention-weighted transformed value, rolled out"
    paper = PAPERS["attention-norm"]
    cost = "1 forward + L·n²·H² (per-token Gram matrices)"
    words = "‖Σ_h α^h_ij f^h(x_j)‖₂ per layer (raw norms; value bias in f, no b_O)"

    def compute(self, context: ExplainContext, *, layers: int | Sequence[int] | None = None) -> TokenScores:
        """Attention-norm rollout ``[L, n]`` (raw products of raw norms, GlobEnc's roll-out of "N")."""
        return self._compute(context, layers, None)


@register_method
class GlobEnc(_Mixing):
    """Modarressi et al. 2022."""

    name = "globenc"
    measure = "globenc"
    description = "GlobEnc: norm of token j's summand after the residual and both LayerNorms' scaling, rolled out"
    paper = PAPERS["globenc"]
    cost = "1 forward + L·n²·H² (per-token Gram matrices)"
    words = "‖LN2-scale(LN1-scale(α f(x_j) + residual))‖₂ per layer (N_Enc, raw; FFN left out)"

    def compute(self, context: ExplainContext, *, layers: int | Sequence[int] | None = None) -> TokenScores:
        """GlobEnc rollout ``[L, n]`` (raw)."""
        return self._compute(context, layers, None)


@register_method
class Alti(_Mixing):
    """Ferrando et al. 2022."""

    name = "alti"
    measure = "alti"
    description = (
        "ALTI: L1 proximity of token j's summand to the attention block's output, rows summing to 1, rolled out"
    )
    paper = PAPERS["alti"]
    cost = "1 forward + L·n²·d"
    words = "max(0, ‖y_i‖₁ − ‖T_ij − y_i‖₁) normalised per row, per layer"

    def compute(self, context: ExplainContext, *, layers: int | Sequence[int] | None = None) -> TokenScores:
        """ALTI rollout ``[L, n]``."""
        return self._compute(context, layers, None)


@register_method
class ValueZeroing(_Mixing):
    """Mohebbi et al. 2023."""

    name = "value-zeroing"
    measure = "value-zeroing"
    description = "value zeroing: cosine distance of each layer's output when token j's values are zeroed, rolled out"
    paper = PAPERS["value-zeroing"]
    cost = "1 forward + L block calls of n rows (n forwards' arithmetic)"
    words = "1 − cos(layer output, layer output with token j's values zeroed), rows normalised, per layer"

    def validate(self, **options: Any) -> None:
        """batch_size: None or >= 1."""
        check_optional_int("batch_size", options.get("batch_size"), minimum=1)

    def compute(
        self,
        context: ExplainContext,
        *,
        layers: int | Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> TokenScores:
        """Value-zeroing rollout ``[L, n]``; ``batch_size`` (zeroed tokens per block call) never changes it."""
        return self._compute(context, layers, batch_size)
