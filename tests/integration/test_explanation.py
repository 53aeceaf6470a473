"""attrflow.explain bundles the attribution, the tree and token rows computed by the pure flow functions."""

from __future__ import annotations

import torch

import attrflow
from attrflow.testing import build, example_inputs


def test_token_rows_are_the_flow_functions_at_the_output_position():
    for arch, position in (("bert", 0), ("llama", -1)):
        model = attrflow.load_model(build(arch, init_scale=0.2))
        inputs = example_inputs(arch)
        explanation = attrflow.explain(model, inputs, steps=2)
        result = explanation.result
        assert result.output_position == position % len(result.tokens)
        rollout = attrflow.attention_rollout(result.attentions)[-1, result.output_position]
        flow = attrflow.attention_flow(result.attentions, layer=-1, positions=[result.output_position])[0]
        torch.testing.assert_close(
            torch.tensor(explanation.token_scores["rollout"].values, dtype=torch.float64),
            rollout.double(),
            rtol=1e-6,
            atol=1e-7,
        )
        torch.testing.assert_close(
            torch.tensor(explanation.token_scores["flow"].values, dtype=torch.float64),
            flow.double(),
            rtol=1e-6,
            atol=1e-7,
        )
        assert explanation.tree is not None
        assert "<html" in explanation.to_html().lower()


def test_attention_only_explanation_skips_attribution():
    model = attrflow.load_model(build("bert"))
    explanation = attrflow.explain(model, example_inputs("bert"), methods=["flow"])
    assert isinstance(explanation.result, attrflow.RecordedAttention)
    assert explanation.tree is None and set(explanation.token_scores) == {"flow"}
