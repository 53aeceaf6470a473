"""Adversarial triggers without a model: insertion plans and insertion on token lists, the strongest-entry kernel
against a brute-force search, patterns → triggers, accuracies, and the result contracts (JSON, save /
load_result, damaged files, the page on the shared skeleton, the figures)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

import attrflow
from attrflow.analysis import triggers as tr
from attrflow.analysis.triggers import insertion
from attrflow.analysis.triggers.mining import strongest_entries
from attrflow.analysis.triggers.report import accuracies
from attrflow.errors import InvalidInputError, ResultFormatError
from attrflow.models import TokenizedText


# ---------------------------------------------------------------------- insertion (pure)
def test_plan_positions_hand_computed():
    assert insertion.plan_positions([0.0], 4) == [0]
    assert insertion.plan_positions([1.0], 4) == [4]
    assert insertion.plan_positions([0.5], 4) == [2]
    assert insertion.plan_positions([0.5, 0.5], 3) == [2, 3]  # a collision moves the later token right
    assert insertion.plan_positions([1.0, 1.0], 2) == [2, 3]  # ... and the end pulls both back in
    assert insertion.plan_positions([0.0, 1.0], 0) == [0, 1]  # an empty segment
    for relative in ([0.1, 0.1, 0.1], [0.0, 0.2, 0.9, 1.0], [1.0, 1.0, 1.0]):
        for length in range(0, 6):
            plan = insertion.plan_positions(relative, length)
            assert plan == sorted(set(plan)) and plan[0] >= 0 and plan[-1] < length + len(relative)


def test_trigger_validates_its_fields():
    with pytest.raises(InvalidInputError):
        tr.Trigger((5,), ("x",), (2,), (0.0,))
    with pytest.raises(InvalidInputError):
        tr.Trigger((5,), ("x",), (0,), (1.5,))


def test_insert_on_token_lists_per_segment_with_token_types():
    # [CLS] a b [SEP] c d e [SEP]
    text = TokenizedText((1, 10, 11, 2, 12, 13, 14, 2), (0, 0, 0, 0, 1, 1, 1, 1), (-1, 0, 0, -1, 1, 1, 1, -1))
    both = tr.Trigger((90, 91, 92), ("x", "y", "z"), (0, 1, 1), (1.0, 0.0, 0.5))
    got = insertion.insert(text, both)
    # segment 0: x last of 3 -> index 2; segment 1: y first, z at round(0.5 * 4) = 2 of 5
    assert got.input_ids == (1, 10, 11, 90, 2, 91, 12, 92, 13, 14, 2)
    assert got.token_type_ids == (0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1)
    assert got.segments == (-1, 0, 0, 0, -1, 1, 1, 1, 1, 1, -1)
    assert text.input_ids == (1, 10, 11, 2, 12, 13, 14, 2)  # the input is not changed
    without_types = TokenizedText((1, 10, 2), None, (-1, 0, -1))
    assert insertion.insert(without_types, tr.Trigger((90,), ("x",), (0,), (0.0,))).token_type_ids is None
    with pytest.raises(InvalidInputError, match="text_pair"):
        insertion.insert(without_types, tr.Trigger((90,), ("x",), (1,), (0.0,)))


# ---------------------------------------------------------------------- the mining kernel (pure)
def _brute_force(attributions: torch.Tensor):
    """The largest entry by a plain loop (first wins on ties), then its head's two largest, the same way."""
    L, H, n, _ = attributions.shape
    best = None
    for layer, head, q, k in itertools.product(range(L), range(H), range(n), range(n)):
        value = float(attributions[layer, head, q, k])
        if best is None or value > best[0]:
            best = (value, layer, head)
    _, layer, head = best
    entries = sorted(
        ((float(attributions[layer, head, q, k]), q * n + k) for q in range(n) for k in range(n)),
        key=lambda entry: (-entry[0], entry[1]),
    )
    return layer, head, [divmod(index, n) for _, index in entries[:2]], [value for value, _ in entries[:2]]


def test_strongest_entries_match_a_brute_force_search():
    generator = torch.Generator().manual_seed(0)
    for shape in ((1, 1, 2, 2), (3, 2, 4, 4), (2, 4, 6, 6)):
        attributions = torch.randn(shape, generator=generator)
        found = strongest_entries(attributions)
        layer, head, pairs, values = _brute_force(attributions)
        assert (found.layer_row, found.head) == (layer, head)
        assert [tuple(p) for p in found.interactions] == pairs and list(found.scores) == values
    tied = torch.zeros(2, 2, 3, 3)
    tied[1, 0, 2, 1] = tied[1, 1, 0, 0] = tied[1, 0, 0, 2] = 1.0  # three equal maxima: the first wins
    found = strongest_entries(tied)
    assert (found.layer_row, found.head, found.interactions) == (1, 0, ((0, 2), (2, 1)))


def test_accuracies_per_gold_label_by_hand():
    labels = np.array([0, 0, 1, 1, 1])
    before = np.array([0, 1, 1, 1, 1])
    after = np.array([1, 1, 1, 0, 1])
    controls = [np.array([0, 0, 1, 1, 1]), np.array([0, 1, 0, 1, 1])]
    rows = {o.label: o for o in accuracies(2, labels, before, after, controls, ("neg", "pos", "unused"))}
    assert set(rows) == {"all", "neg", "pos"}  # a class without examples gets no row
    assert (rows["all"].count, rows["all"].accuracy_before, rows["all"].accuracy_after) == (5, 0.8, 0.4)
    assert (rows["neg"].label_index, rows["neg"].accuracy_before, rows["neg"].accuracy_after) == (0, 0.5, 0.0)
    assert rows["pos"].control_accuracies == (1.0, 2 / 3) and rows["all"].trigger == 2
    assert rows["pos"].control_std == pytest.approx(np.std([1.0, 2 / 3], ddof=1))


# ---------------------------------------------------------------------- patterns -> triggers
def _pattern(scores: tuple[float, float], interactions=((0, 2), (5, 1))) -> tr.Pattern:
    tokens = ("[CLS]", "a", "b", "[SEP]", "c", "d", "[SEP]")
    return tr.Pattern(
        example_id=7,
        tokens=tokens,
        input_ids=(2, 10, 11, 3, 12, 13, 3),
        segments=(-1, 0, 0, -1, 1, 1, -1),
        layer=1,
        head=0,
        interactions=interactions,
        scores=scores,
        predicted=1,
        label=0,
        probability=0.9,
    )


def test_second_pair_joins_only_above_the_ratio_and_specials_are_dropped():
    both = _pattern((0.1, 0.03)).trigger()
    assert both.tokens == ("a", "b", "d") and both.segments == (0, 0, 1)
    assert both.relative_positions == (0.0, 1.0, 1.0)
    assert both.token_ids == (10, 11, 13) and both.source_indices == (1, 2, 5)
    assert both.score == pytest.approx(0.13) and both.label == 1 and both.source == 7
    first_only = _pattern((0.1, 0.019)).trigger()
    assert first_only.tokens == ("b",) and first_only.relative_positions == (1.0,)
    assert _pattern((0.1, 0.019)).trigger(ratio=0.1).tokens == ("a", "b", "d")


def test_pattern_set_skips_empty_weak_and_repeated_triggers():
    only_special = _pattern((0.5, 0.4), interactions=((0, 3), (6, 0)))
    strong = _pattern((0.3, 0.01))
    repeat = _pattern((0.2, 0.01))
    weak = _pattern((0.01, 0.001), interactions=((1, 4), (1, 1)))
    patterns = tr.TriggerPatterns((only_special, strong, repeat, weak), ("neg", "pos"), {"min_score": 0.02})
    chosen = patterns.triggers()
    assert [t.tokens for t in chosen] == [("b",)]
    assert [t.tokens for t in patterns.triggers(min_score=0.0)] == [("b",), ("a", "c")]
    assert len(patterns.triggers(1, min_score=0.0)) == 1


# ---------------------------------------------------------------------- report contracts
def _report() -> tr.AttackReport:
    evil = tr.Trigger((5,), ("<script>alert(1)</script>",), (0,), (0.5,), score=0.3, label=1)
    outcomes = (
        tr.AttackOutcome(0, "all", -1, 4, 0.75, 0.5, (0.75, 0.5)),
        tr.AttackOutcome(0, "neg<1>", 0, 2, 1.0, 0.0, (1.0, 0.5)),
        tr.AttackOutcome(0, "pos", 1, 2, 0.5, 1.0, ()),
    )
    return tr.AttackReport(
        (evil,), outcomes, ("neg<1>", "pos"), {"model": "m", "control_seeds": 2}, ((("<i>",), ("x",)),)
    )


def test_report_json_has_exactly_the_cli_schema(tmp_path):
    report = _report()
    data = json.loads(report.to_json(tmp_path / "attack.json").read_text())
    assert set(data) == {"triggers", "results"}
    assert data["triggers"] == [{"tokens": ["<script>alert(1)</script>"], "score": 0.3, "label": "pos"}]
    keys = {"trigger", "label", "accuracy_before", "accuracy_after", "control_accuracy_after", "control_std"}
    assert all(set(row) == keys for row in data["results"])
    assert data["results"][0]["control_accuracy_after"] == pytest.approx(0.625)
    assert data["results"][0]["control_std"] == pytest.approx(np.std([0.75, 0.5], ddof=1))
    assert data["results"][2]["control_accuracy_after"] is None and data["results"][2]["control_std"] is None


def test_report_html_is_escaped_and_frame_and_plot_work():
    report = _report()
    page = report.to_html()
    assert "<script>" not in page and "&lt;script&gt;" in page and "neg&lt;1&gt;" in page
    assert "<i>" not in page and "&lt;i&gt; | x" in page  # the control's random draws, escaped
    assert page.startswith("<!DOCTYPE html>") and "default-src 'none'" in page
    assert not any(outside in page for outside in ("://", "src=", "href=", "<script", "<img"))  # self-contained
    frame = report.to_frame()
    assert list(frame["drop"]) == pytest.approx([0.25, 1.0, -0.5])
    assert list(frame["control_accuracies"][0]) == [0.75, 0.5]
    figure = report.plot()
    assert len(figure.axes) == 1 and len(figure.axes[0].patches) == 9  # clean, trigger, control x 3
    patterns = tr.TriggerPatterns((_pattern((0.1, 0.03)),), ("neg", "<b>pos</b>"), {"min_score": 0.02})
    assert "&lt;b&gt;pos&lt;/b&gt;" in patterns.to_html() and "<b>pos" not in patterns.to_html()
    assert len(patterns.plot().axes) == 1


def test_attack_report_round_trips_through_load_result(tmp_path):
    report = _report()
    path = report.save(tmp_path / "attack.safetensors")
    loaded = attrflow.load_result(path)
    assert isinstance(loaded, tr.AttackReport) and loaded == report
    assert loaded.to_frame().equals(report.to_frame()) and loaded.to_html() == report.to_html()
    without_control = tr.AttackReport(report.triggers, report.outcomes[2:], ("a", "b"), {}, ())
    assert attrflow.load_result(without_control.save(tmp_path / "bare.safetensors")) == without_control


def test_damaged_result_files_are_refused(tmp_path):
    path = _report().save(tmp_path / "attack.safetensors")
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # a byte of the tensor data: the header still parses, the checksum does not match
    path.write_bytes(bytes(raw))
    with pytest.raises(ResultFormatError, match="checksum"):
        attrflow.load_result(path)
    patterns = tr.TriggerPatterns((_pattern((0.1, 0.03)),), ("neg", "pos"), {"min_score": 0.02})
    meta, tensors = patterns.to_parts()
    meta["tokens"] = [["[CLS]", "a"]]  # two tokens for a seven-token pattern
    from attrflow.storage import write_result

    write_result(tmp_path / "bad.safetensors", "TriggerPatterns", meta, tensors)
    with pytest.raises(ResultFormatError, match="inconsistent"):
        attrflow.load_result(tmp_path / "bad.safetensors")


def test_pages_use_the_shared_skeleton_and_write_atomically(tmp_path):
    from attrflow.viz.triggers import render_attack

    report = _report()
    page = report.to_html(tmp_path / "attack.html", back=("index.html", "attrflow demo"))
    assert (tmp_path / "attack.html").read_text() == page == render_attack(report, back=("index.html", "attrflow demo"))
    assert 'href="index.html"' in page and "<footer>" in page and "<style>" in page
    assert page.count("<style>") == 1  # the skeleton's CSS only
    assert report._repr_html_().startswith("<iframe srcdoc=")


def test_plot_takes_the_axes_by_keyword_and_the_positional_form_warns():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    report = _report()
    axes = Figure().subplots()
    assert report.plot(ax=axes) is axes.figure
    with pytest.warns(DeprecationWarning, match="plot\\(ax=ax\\)"):
        assert report.plot(axes) is axes.figure
    patterns = tr.TriggerPatterns((_pattern((0.1, 0.03)),), ("neg", "pos"), {"min_score": 0.02})
    with pytest.warns(DeprecationWarning):
        assert patterns.plot(axes, top=3) is axes.figure
