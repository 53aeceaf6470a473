"""Targets without a model: the ``target=`` shorthand, F from logits, the memory counters."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from attrflow.errors import InvalidInputError
from attrflow.memory import available_memory, format_bytes
from attrflow.methods.targets import Target


def test_shorthand_parses_to_the_three_kinds():
    assert Target.parse(None) == Target("output")
    assert Target.parse(7) == Target("output", (7,))
    assert Target.parse(" Paris, a city") == Target("span", (), (" Paris, a city",))
    assert Target.parse([4, 5, 6]) == Target("span", (4, 5, 6))
    assert Target.parse((" Paris", " London")) == Target("contrast", (), (" Paris", " London"))
    assert Target.parse((3, 9)) == Target("contrast", (3, 9))
    given = Target.span([1])
    assert Target.parse(given) is given


@pytest.mark.parametrize("bad", [-1, 1.5, True, "", [], (1, 2, 3), (" a", 2), {"a": 1}])
def test_bad_targets_are_refused_with_a_message(bad):
    with pytest.raises(InvalidInputError, match="target|continuation|alternatives"):
        Target.parse(bad)


def test_quantities_and_positions():
    assert Target.output(3).quantity == "probability"
    assert Target.contrast(1, 2).quantity == "log-probability"
    span = Target("span", (4, 5, 6), start=10)
    assert span.quantity == "log-probability"
    # the logits at position t - 1 predict token t: the prompt's last position predicts the first span token
    assert span.positions == (9, 10, 11)
    assert Target.output(3).positions is None
    with pytest.raises(InvalidInputError, match="not resolved"):
        _ = Target.output().index
    assert Target.output().resolved(4).index == 4 and Target.output(2).resolved(4).index == 2


def test_values_from_logits_equal_the_definitions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 11, generator=g, dtype=torch.float64)
    span = Target("span", (4, 0, 7), start=1)
    expected = [
        sum(math.log(torch.softmax(logits[r, t], -1)[i].item()) for t, i in enumerate((4, 0, 7))) for r in (0, 1)
    ]
    torch.testing.assert_close(span.values(logits), torch.tensor(expected, dtype=torch.float64))
    last = logits[:, -1]
    contrast = Target.contrast(2, 5).values(last)
    torch.testing.assert_close(contrast, (last.log_softmax(-1)[:, 2] - last.log_softmax(-1)[:, 5]))
    torch.testing.assert_close(Target.output(5).values(last), last.softmax(-1)[:, 5])


def test_half_precision_logits_give_float32_values():
    logits = torch.randn(1, 11).to(torch.bfloat16)
    assert Target.output(1).values(logits).dtype == torch.float32
    assert Target.contrast(1, 2).values(logits).dtype == torch.float32


_MEASURE = """
import json, torch
from attrflow.memory import PeakMemory
with PeakMemory() as first:
    big = torch.ones(40_000_000)
    big += 1
del big
with PeakMemory() as second:
    small = torch.ones(10_000_000)
    small += 1
print(json.dumps([first.peak, second.peak, first.source, second.source]))
"""


def test_peak_memory_measures_a_block_after_a_larger_one():
    # a fresh process: in a long-lived one, freed memory that stays resident hides new allocations from RSS
    done = subprocess.run([sys.executable, "-c", _MEASURE], capture_output=True, text=True, check=True, timeout=120)
    first, second, source, _ = json.loads(done.stdout.strip().splitlines()[-1])
    assert source.startswith("rss") and first > 100e6
    # the high-water mark is reset on Linux: a block below an earlier peak still measures its own growth
    if source == "rss high-water (VmHWM)":
        assert 25e6 < second < 100e6
    available = available_memory()
    assert available is None or available > 0
    assert format_bytes(1536) == "1.5 KB" and format_bytes(3 * 1024**3) == "3.0 GB"
