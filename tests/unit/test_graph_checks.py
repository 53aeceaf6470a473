"""Rollout and flow take probabilities: every input that is not (a residual that is not a bool, complex values,
rows that do not sum to 1) is refused instead of silently read as something else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attrflow
from attrflow.errors import InvalidInputError

KERNELS = [attrflow.attention_rollout, attrflow.attention_flow]


def probabilities(layers: int = 2, heads: int = 2, n: int = 4, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.dirichlet(np.ones(n), size=(layers, heads, n)))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("residual", ["no", "False", 0, 1, 0.5, None])
def test_residual_must_be_a_bool(kernel, residual) -> None:
    with pytest.raises(InvalidInputError, match="residual must be True or False"):
        kernel(probabilities(), residual=residual)


@pytest.mark.parametrize("kernel", KERNELS)
def test_numpy_bools_are_bools(kernel) -> None:
    att = probabilities()
    assert torch.equal(kernel(att, residual=np.bool_(False)), kernel(att, residual=False))


@pytest.mark.parametrize("kernel", KERNELS)
def test_complex_input_is_refused_not_truncated(kernel) -> None:
    att = probabilities().to(torch.complex128)
    with pytest.raises(InvalidInputError, match="imaginary part"):
        kernel(att)
    with pytest.raises(InvalidInputError, match="real probabilities"):
        kernel(probabilities().numpy().astype(np.complex128))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("scale", [0.9, 0.5, 0.0])
def test_rows_that_do_not_sum_to_one_are_refused(kernel, scale: float) -> None:
    att = probabilities()
    att[1, 0, 2] *= scale  # one row of one head of one layer
    with pytest.raises(InvalidInputError, match=r"row 2 of head 0 in layer 1 sums to .*check_rows=False"):
        kernel(att)
    kernel(att, check_rows=False)  # the documented way to use such rows (pruned heads, masked interactions)


@pytest.mark.parametrize("kernel", KERNELS)
def test_rows_above_one_are_refused_even_without_the_row_check(kernel) -> None:
    att = probabilities() * 1.5
    with pytest.raises(InvalidInputError, match="at most 1"):
        kernel(att, check_rows=False)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_rounding_is_tolerated(kernel, dtype: torch.dtype) -> None:
    att = torch.softmax(torch.randn(2, 3, 40, 40, generator=torch.Generator().manual_seed(0)).to(dtype), dim=-1)
    assert torch.isfinite(kernel(att)).all()


def test_float32_rounding_is_tolerated_but_a_percent_is_not() -> None:
    att = torch.softmax(torch.randn(2, 3, 300, 300, generator=torch.Generator().manual_seed(0)), dim=-1)
    assert torch.isfinite(attrflow.attention_rollout(att)).all()
    with pytest.raises(InvalidInputError, match="sum to 1"):
        attrflow.attention_rollout(att * 0.99)


def test_check_rows_must_be_a_bool() -> None:
    with pytest.raises(InvalidInputError, match="check_rows must be True or False"):
        attrflow.attention_rollout(probabilities(), check_rows="no")
