"""A result file is verified on load: garbage of the right length in the tensor body, an unknown or nonsensical
schema version, metadata of the wrong types are refused, never loaded as numbers."""

from __future__ import annotations

import json
import struct

import pytest
import torch

import attrflow
from attrflow.errors import ResultFormatError
from attrflow.results import AttentionAttribution, RecordedAttention, TokenScores
from attrflow.storage import CHECKSUM_KEY, KIND_KEY, META_KEY


def _attribution() -> AttentionAttribution:
    g = torch.Generator().manual_seed(0)
    attentions = torch.softmax(torch.randn(2, 2, 4, 4, generator=g), dim=-1)
    return AttentionAttribution(
        tokens=("[CLS]", "a", "b", "[SEP]"),
        attributions=torch.randn(2, 2, 4, 4, generator=g),
        attentions=attentions,
        layers=(0, 1),
        target=1,
        target_label="positive",
        predicted=1,
        probability=0.8,
        baseline_probability=torch.tensor([0.5, 0.4]),
        completeness_gap=torch.zeros(2),
        special_mask=(True, False, False, True),
    )


def _results():
    attribution = _attribution()
    recorded = RecordedAttention(
        tokens=attribution.tokens,
        attentions=attribution.attentions,
        predicted=1,
        predicted_label="positive",
        probability=0.8,
        special_mask=attribution.special_mask,
    )
    scores = TokenScores.from_values("rollout", torch.tensor([0.1, 0.5, 0.3, 0.1]), "a test", tokens=attribution.tokens)
    return {"attribution": attribution, "recorded": recorded, "scores": scores}


def _body_offset(raw: bytes) -> int:
    return 8 + int.from_bytes(raw[:8], "little")


@pytest.mark.parametrize("name", ["attribution", "recorded", "scores"])
@pytest.mark.parametrize("garbage", ["nan", "huge", "negative", "zeros"])
def test_a_body_of_garbage_with_the_right_length_is_refused(tmp_path, name: str, garbage: str) -> None:
    path = _results()[name].save(tmp_path / f"{name}.safetensors")
    raw = path.read_bytes()
    start = _body_offset(raw)
    count = (len(raw) - start) // 4
    value = {"nan": float("nan"), "huge": 3e38, "negative": -0.5, "zeros": 0.0}[garbage]
    path.write_bytes(raw[:start] + struct.pack(f"<{count}f", *([value] * count)) + raw[start + 4 * count :])
    with pytest.raises(ResultFormatError, match="checksum"):
        attrflow.load_result(path)


def _rewrite_metadata(path, change) -> None:
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + length])
    change(header["__metadata__"])
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + raw[8 + length :])


@pytest.mark.parametrize("version", [0, -1, -2, 99, "2", 2.0, True, None])
def test_schema_versions_other_than_the_known_ones_are_refused(tmp_path, version) -> None:
    path = _attribution().save(tmp_path / "r.safetensors")

    def change(metadata) -> None:
        meta = json.loads(metadata[META_KEY])
        meta["schema_version"] = version
        metadata[META_KEY] = json.dumps(meta)

    _rewrite_metadata(path, change)
    with pytest.raises(ResultFormatError, match="schema version"):
        attrflow.load_result(path)


@pytest.mark.parametrize(
    ("key", "value"),
    [("tokens", 5), ("tokens", ["[CLS]", "a"]), ("layers", "all"), ("probability", "high"), ("target", [1])],
)
def test_metadata_of_the_wrong_type_is_refused(tmp_path, key, value) -> None:
    path = _attribution().save(tmp_path / "r.safetensors")

    def change(metadata) -> None:
        meta = json.loads(metadata[META_KEY])
        assert key in meta, sorted(meta)
        meta[key] = value
        metadata[META_KEY] = json.dumps(meta)

    _rewrite_metadata(path, change)
    with pytest.raises(ResultFormatError):
        attrflow.load_result(path)


@pytest.mark.parametrize("key", [KIND_KEY, META_KEY, CHECKSUM_KEY])
def test_missing_metadata_is_refused(tmp_path, key) -> None:
    path = _attribution().save(tmp_path / "r.safetensors")
    _rewrite_metadata(path, lambda metadata: metadata.pop(key))
    with pytest.raises(ResultFormatError):
        attrflow.load_result(path)
