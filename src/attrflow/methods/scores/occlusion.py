"""Blank-out (occlusion) token scores (Abnar & Zuidema, ACL 2020, §5): ``|p_y(x) − p_y(x with token i := UNK)|``."""

from __future__ import annotations

from attrflow.methods.context import ExplainContext
from attrflow.methods.occlusion import Replacement
from attrflow.methods.registry import Method, register_method
from attrflow.models import Model
from attrflow.results import TokenScores
from attrflow.validation import check_choice, check_int


@register_method
class Blankout(Method):
    """Occlusion of one token at a time, in place."""

    name = "blankout"
    description = "blank-out: drop of the target's probability when token j alone is replaced by [UNK]"
    paper = "Abnar & Zuidema, ACL 2020 (§5, the ground truth of Tables 1-3)"
    cost = "n + 1 forwards (batched)"

    def unsupported(self, model: Model) -> str | None:
        """Blank-out needs token ids and a tokenizer with an UNK or MASK token."""
        if model.task == "image-classification" or model.tokenizer is None:
            return "blank-out replaces token ids; the model has no tokenizer (image models are not supported)"
        return None

    def compute(
        self, context: ExplainContext, *, replacement: Replacement = "unk", batch_size: int = 32
    ) -> TokenScores:
        """Blank-out scores ``[n]`` (non-negative): all n variants run batched (``batch_size`` rows per pass)."""
        check_choice("replacement", replacement, Replacement)
        check_int("batch_size", batch_size, minimum=1)
        context.require_output_position(self.name)
        values = context.blankout_values(replacement=replacement, batch_size=batch_size)
        scores = (values[0] - values[1:]).abs()
        return context.result(
            self.name,
            scores.float(),
            f"|p(target) − p(target with the token replaced by {replacement.upper()})|, one token at a time",
            settings={"replacement": replacement},
        )
