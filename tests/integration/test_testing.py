"""attrflow.testing: the batched official-algorithm oracle the benchmarks use agrees with the one-point oracle and
with attrflow's engine (so a benchmark ratio compares equal numbers)."""

from __future__ import annotations

import pytest
import torch

import attrflow
from attrflow.testing import build, example_inputs, naive_attattr, naive_attattr_layers


@pytest.mark.parametrize("arch", ["bert", "llama", "bart"])
def test_batched_official_loop_equals_the_engine_and_the_one_point_oracle(arch):
    hf = build(arch, init_scale=0.2)
    inputs = example_inputs(arch)
    result = attrflow.attribute(attrflow.load_model(hf), inputs, rule="riemann-left", steps=5)
    attributions, gaps = naive_attattr_layers(hf, inputs, target=result.target, steps=5)
    torch.testing.assert_close(attributions, result.attributions, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gaps.float(), result.completeness_gap, rtol=1e-3, atol=1e-6)
    one = naive_attattr(hf, inputs, layer=1, target=result.target, steps=5)
    torch.testing.assert_close(one, attributions[1], rtol=1e-4, atol=1e-6)
    _, no_gaps = naive_attattr_layers(hf, inputs, target=result.target, steps=5, completeness=False)
    assert torch.isnan(no_gaps).all()
