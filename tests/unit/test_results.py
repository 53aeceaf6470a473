from __future__ import annotations

import pytest
import torch

from attrflow.errors import InvalidInputError, ResultFormatError
from attrflow.results import AttentionAttribution, load_result


def _result(n: int = 4, L: int = 2, H: int = 3) -> AttentionAttribution:
    g = torch.Generator().manual_seed(0)
    return AttentionAttribution(
        tokens=tuple(f"t{i}" for i in range(n)),
        attributions=torch.randn(L, H, n, n, generator=g),
        attentions=torch.rand(L, H, n, n, generator=g).softmax(-1),
        layers=tuple(range(L)),
        target=1,
        target_label="positive",
        predicted=1,
        probability=0.9,
        baseline_probability=torch.tensor([0.5, 0.4]),
        completeness_gap=torch.tensor([1e-3, -2e-3]),
        input_ids=tuple(range(n)),
        special_mask=(True, False, False, True),
        settings={"rule": "gauss-legendre", "steps": 8},
    )


def test_save_load_roundtrip(tmp_path):
    r = _result()
    path = r.save(tmp_path / "r.safetensors")
    back = load_result(path)
    assert back.tokens == r.tokens
    assert torch.equal(back.attributions, r.attributions)
    assert torch.equal(back.attentions, r.attentions)
    assert back.settings == {"rule": "gauss-legendre", "steps": 8}
    assert back.special_mask == r.special_mask
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_top_interactions_are_sorted_and_point_at_the_right_entries():
    r = _result()
    table = r.top_interactions(5)
    assert list(table["score"]) == sorted(table["score"], reverse=True)
    for row in table.itertuples():
        layer_row = r.layers.index(row.layer)
        assert r.attributions[layer_row, row.head, row.from_index, row.to_index].item() == pytest.approx(row.score)
    assert table["score"].iloc[0] == pytest.approx(r.attributions.max().item())


def test_head_scores_is_max_per_head():
    r = _result()
    assert torch.equal(r.head_scores(), r.attributions.amax(dim=(2, 3)))


@pytest.mark.parametrize(
    "content", [b"", b"garbage bytes that are not safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{}"]
)
def test_corrupt_file_raises_clear_error(tmp_path, content):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(content)
    with pytest.raises(ResultFormatError, match="bad.safetensors"):
        load_result(bad)


def test_missing_file_raises(tmp_path):
    with pytest.raises(ResultFormatError, match="no such"):
        load_result(tmp_path / "nope.safetensors")


def test_inconsistent_shapes_rejected():
    r = _result()
    with pytest.raises(InvalidInputError):
        AttentionAttribution(**{**r.__dict__, "tokens": ("a", "b")})
