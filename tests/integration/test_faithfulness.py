"""Spearman and AOPC against hand-computed values, and the dataset-level evaluation end to end."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy import stats

import attrflow
from attrflow.analysis.faithfulness import (
    FaithfulnessReport,
    erasure_order,
    removal_counts,
    spearman,
)
from attrflow.analysis.faithfulness import erasure_curves as _erasure_curves
from attrflow.errors import InvalidInputError
from attrflow.models import Encoding
from attrflow.testing import build, word_tokenizer

TEXTS = [
    "the movie was great",
    "it is not very good but fun",
    "a boring plot and bad acting",
    "i film",
]


@pytest.fixture(scope="module")
def bert():
    return attrflow.load_model(build("bert", init_scale=0.2).eval(), tokenizer=word_tokenizer())


# ------------------------------------------------------------------------------------------ Spearman
def test_spearman_hand_computed():
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(0.8)  # 1 − 6·2/(4·15)
    # ties take their average rank: a → ranks (1, 2.5, 2.5, 4), b → (1, 3, 2, 4);
    # centred: (−1.5, 0, 0, 1.5) and (−1.5, .5, −.5, 1.5): 4.5 / sqrt(4.5 · 5)
    assert spearman([0, 5, 5, 9], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5.0))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([1.0], [2.0]))
    assert math.isnan(spearman([1, float("nan"), 2], [1, 2, 3]))
    with pytest.raises(InvalidInputError, match="same length"):
        spearman([1, 2], [1, 2, 3])


def test_spearman_equals_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(30):
        a = rng.integers(0, 4, size=9)
        b = rng.normal(size=9).round(1)
        expected = stats.spearmanr(a, b).statistic
        if np.isnan(expected):
            assert math.isnan(spearman(a, b))
        else:
            assert spearman(torch.tensor(a), b) == pytest.approx(expected, abs=1e-12)


# ------------------------------------------------------------------------------------------ AOPC
def test_removal_counts_and_order():
    assert removal_counts(10, (0.1, 0.3, 0.5, 1.0)) == [1, 3, 5, 10]
    assert removal_counts(7, (0.1, 0.5, 1.0)) == [1, 4, 7]
    assert removal_counts(0, (0.1, 1.0)) == [0, 0]
    # specials never ranked; ties broken by position; NaN last
    order = erasure_order([9.0, 1.0, 3.0, 3.0, float("nan"), 0.5, 9.0], [True, False, False, False, False, False, True])
    assert order.tolist() == [2, 3, 1, 5, 4]


@dataclass
class _Tokenizer:
    unk_token_id: int = 1
    mask_token_id: int = 4


class _CountingModel:
    """A stand-in model whose probability of class 1 is (number of token 7 + 1) / (length + 1)."""

    tokenizer = _Tokenizer()

    def predict_batch(self, items, *, batch_size=32):
        rows = []
        for item in items:
            ids = item["input_ids"]
            p = (sum(1 for i in ids if i == 7) + 1) / (len(ids) + 1)
            rows.append([1 - p, p])
        return torch.tensor(rows, dtype=torch.float64)


def _encoding(ids, special):
    return Encoding(
        inputs={},
        tokens=tuple(str(i) for i in ids),
        positions=torch.arange(len(ids)),
        special_mask=tuple(special),
        input_ids=tuple(ids),
    )


def test_aopc_hand_computed():
    # [CLS] 7 5 7 [SEP]: p(x) = 3/6. Scores rank position 3, then 1, then 2.
    encoding = _encoding([2, 7, 5, 7, 3], [True, False, False, False, True])
    scores = {"m": torch.tensor([0.0, 2.0, 1.0, 3.0, 0.0])}
    bins = (1 / 3, 2 / 3, 1.0)
    curve = _erasure_curves(_CountingModel(), encoding, scores, 1, bins, "delete", 8)["m"]
    assert curve.counts == (1, 2, 3)
    assert curve.probability == pytest.approx(0.5)
    # comprehensiveness: remove {3} → [2 7 5 3] p = 2/5; {3, 1} → [2 5 3] 1/4; all → [2 3] 1/3
    np.testing.assert_allclose(curve.comprehensiveness, [0.5 - 2 / 5, 0.5 - 1 / 4, 0.5 - 1 / 3])
    # sufficiency: keep {3} → [2 7 3] 2/4; {3, 1} → [2 7 7 3] 3/5; all → the input, 3/6
    np.testing.assert_allclose(curve.sufficiency, [0.0, 0.5 - 3 / 5, 0.0])
    assert curve.aopc_comprehensiveness == pytest.approx(np.mean([0.1, 0.25, 1 / 6]))
    # in place: UNK keeps the length. Remove {3} → [2 7 5 1 3] p = 2/6
    unk = _erasure_curves(_CountingModel(), encoding, scores, 1, bins, "unk", 8)["m"]
    np.testing.assert_allclose(unk.comprehensiveness, [0.5 - 2 / 6, 0.5 - 1 / 6, 0.5 - 1 / 6])


def test_aopc_equals_explicit_deletion(bert):
    text = "the movie was not good"
    encoding = bert.prepare(text)
    ids = list(encoding.input_ids)
    scores = torch.tensor([9.0, 0.1, 0.5, 0.2, 0.9, 0.3, 9.0])  # specials high: must still never be removed
    curves = attrflow.aopc(bert, text, {"s": scores}, target=0, bins=(0.2, 0.6, 1.0))
    curve = curves["s"]
    p = bert.predict_proba({"input_ids": torch.tensor([ids])})[0].item()

    def prob(positions):
        return bert.predict_proba({"input_ids": torch.tensor([[ids[i] for i in positions]])})[0].item()

    # 5 content tokens ranked 4, 2, 5, 3, 1; bins remove 1, 3, 5 of them
    expected_comp = [p - prob([0, 1, 2, 3, 5, 6]), p - prob([0, 1, 3, 6]), p - prob([0, 6])]
    expected_suff = [p - prob([0, 4, 6]), p - prob([0, 2, 4, 5, 6]), 0.0]
    np.testing.assert_allclose(curve.comprehensiveness, expected_comp, atol=1e-6)
    np.testing.assert_allclose(curve.sufficiency, expected_suff, atol=1e-6)
    with pytest.raises(InvalidInputError, match="scores"):
        attrflow.aopc(bert, text, torch.ones(3))
    with pytest.raises(InvalidInputError, match="bins"):
        attrflow.aopc(bert, text, scores, bins=(0.0, 0.5))


# ------------------------------------------------------------------------------------------ end to end
@dataclass(frozen=True)
class _Example:
    text: str
    text_pair: str | None = None
    label: int = -1


DATA = [_Example(t, None, i % 3) for i, t in enumerate(TEXTS)]
FAST = ("attention", "rollout", "flow", "attattr", "gradient_x_input")


@pytest.fixture(scope="module")
def run_report(bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("faith") / "run"
    run = attrflow.RunOptions(out_dir=out, progress=False)
    report = attrflow.faithfulness(bert, DATA, methods=FAST, references=("blankout", "gradient_l2"), steps=4, run=run)
    return report, out


def test_report_matches_direct_computation(bert, run_report):
    report, _ = run_report
    assert report.num_examples == 4 and report.layers == (0, 1, 2)
    assert report.methods == ("attention", "rollout", "flow", "attattr")
    assert report.aopc_methods == (*FAST, "blankout", "gradient_l2")
    for index, example in enumerate(DATA):
        target = example.label
        blank = attrflow.blankout_scores(bert, example.text, target=target)
        for layer in report.layers:
            flow = attrflow.flow_scores(bert, example.text, layer=layer)
            assert report.spearman["blankout"]["flow"][index, layer] == pytest.approx(
                spearman(flow, blank), abs=1e-6, nan_ok=True
            )
        # the paper: layer-1 rollout equals layer-1 flow, so their correlations agree
        for reference in report.references:
            values = report.spearman[reference]
            np.testing.assert_allclose(values["rollout"][:, 0], values["flow"][:, 0], atol=1e-6)
        curves = attrflow.aopc(bert, example.text, {"f": attrflow.flow_scores(bert, example.text)}, target=target)
        np.testing.assert_allclose(report.comprehensiveness["flow"][index], curves["f"].comprehensiveness, atol=1e-6)
        np.testing.assert_allclose(report.sufficiency["flow"][index], curves["f"].sufficiency, atol=1e-6)
    assert report.completeness_gaps["attattr"].shape == (4,)


def test_report_json_layout_and_files(run_report, tmp_path):
    report, _ = run_report
    summary = report.to_dict()
    assert set(summary["spearman"]) == {"blankout", "gradient_l2"}
    entry = summary["spearman"]["blankout"]["flow"]
    assert len(entry["mean"]) == len(entry["std"]) == 3
    mean = np.nanmean(report.spearman["blankout"]["flow"], axis=0)
    assert entry["mean"] == pytest.approx(mean.tolist())
    assert set(summary["aopc"]["comprehensiveness"]) == set(report.aopc_methods)
    flow_aopc = np.nanmean(report.comprehensiveness["flow"].mean(axis=1))
    assert summary["aopc"]["comprehensiveness"]["flow"] == pytest.approx(flow_aopc)
    table = report.table("blankout")
    assert list(table.columns) == ["L1", "L2", "L3"] and "±" in table.loc["flow", "L1"]

    report.export(tmp_path, figures=False)
    on_disk = json.loads((tmp_path / "faithfulness.json").read_text())
    assert on_disk["spearman"]["blankout"]["flow"]["mean"] == pytest.approx(entry["mean"])
    assert (tmp_path / "spearman_blankout.csv").read_text().startswith("method,L1,L2,L3")
    html = (tmp_path / "faithfulness.html").read_text()
    assert "<html" in html and "Spearman with blankout" in html and "http" not in html.split("<body>")[1][:2000]
    loaded = FaithfulnessReport.load(tmp_path)
    single = attrflow.load_result(report.save(tmp_path / "one.safetensors"))
    np.testing.assert_array_equal(single.comprehensiveness["flow"], report.comprehensiveness["flow"])
    np.testing.assert_array_equal(loaded.spearman["blankout"]["flow"], report.spearman["blankout"]["flow"])
    np.testing.assert_array_equal(loaded.sufficiency["attattr"], report.sufficiency["attattr"])
    assert loaded.to_dict()["aopc"] == summary["aopc"]


def test_resume_and_batch_size_do_not_change_results(bert, run_report, tmp_path):
    report, out = run_report
    again = attrflow.faithfulness(
        bert,
        DATA,
        methods=FAST,
        references=("blankout", "gradient_l2"),
        steps=4,
        run=attrflow.RunOptions(out_dir=out, progress=False),
    )
    assert attrflow.open_run(out).num_done == 4
    np.testing.assert_array_equal(again.spearman["gradient_l2"]["attattr"], report.spearman["gradient_l2"]["attattr"])
    one_by_one = attrflow.faithfulness(
        bert,
        DATA,
        methods=FAST,
        references=("blankout", "gradient_l2"),
        steps=4,
        batch_size=1,
        run=attrflow.RunOptions(out_dir=tmp_path / "run", examples_per_batch=1, progress=False),
    )
    for method in report.aopc_methods:
        np.testing.assert_allclose(one_by_one.comprehensiveness[method], report.comprehensiveness[method], atol=1e-6)


def test_report_options_exclude_special_and_nan_policy(bert, run_report):
    _, out = run_report
    excluded = FaithfulnessReport.from_run(out, exclude_special=True)
    example = DATA[1]
    flow = attrflow.flow_scores(bert, example.text, layer=2)[1:-1]
    blank = attrflow.blankout_scores(bert, example.text, target=example.label)[1:-1]
    assert excluded.spearman["blankout"]["flow"][1, 2] == pytest.approx(spearman(flow, blank), abs=1e-6)
    # signed methods are correlated on their magnitudes by default, like the references
    attattr = attrflow.attattr_scores(bert, example.text, target=example.label, steps=4, layer=1)
    blank_all = attrflow.blankout_scores(bert, example.text, target=example.label)
    signed = FaithfulnessReport.from_run(out, magnitude=False)
    magnitude = FaithfulnessReport.from_run(out)
    assert signed.spearman["blankout"]["attattr"][1, 1] == pytest.approx(spearman(attattr, blank_all), abs=1e-6)
    assert magnitude.spearman["blankout"]["attattr"][1, 1] == pytest.approx(
        spearman(attattr.abs(), blank_all), abs=1e-6
    )
    zero = FaithfulnessReport.from_run(out, exclude_special=True, nan_policy="zero")
    # "i film" has two content tokens: their correlations are ±1 or undefined; zero counts the undefined ones
    values = excluded.spearman["blankout"]["attention"]
    np.testing.assert_array_equal(zero.spearman["blankout"]["attention"], np.nan_to_num(values, nan=0.0))


def test_examples_selection_and_bad_options(bert):
    quiet = attrflow.RunOptions(progress=False)
    report = attrflow.faithfulness(
        bert, TEXTS, methods=("rollout",), references=("blankout",), examples=[3, 0], layers=[-1], run=quiet
    )
    assert report.example_ids.tolist() == [0, 3] and report.layers == (2,)
    assert report.aopc_methods == ("rollout", "blankout")
    with pytest.raises(InvalidInputError, match="unknown method 'saliency'"):
        attrflow.faithfulness(bert, TEXTS, methods=("saliency",))
    with pytest.raises(InvalidInputError, match="references"):
        attrflow.faithfulness(bert, TEXTS, references=("flow",))
    with pytest.raises(InvalidInputError, match="ray"):
        attrflow.faithfulness(bert, TEXTS, run=attrflow.RunOptions(engine="ray"))
    with pytest.raises(InvalidInputError, match="integrated_gradients.*steps"):
        attrflow.faithfulness(bert, TEXTS, method_options={"integrated_gradients": {"steps": 0}})
    with pytest.raises(InvalidInputError, match="no chosen method has the option 'stepz'"):
        attrflow.faithfulness(bert, TEXTS, stepz=4)
    with pytest.warns(DeprecationWarning, match="RunOptions"), pytest.raises(InvalidInputError, match="ray"):
        attrflow.faithfulness(bert, TEXTS, engine="ray")
    with pytest.raises(InvalidInputError, match="outside"):
        attrflow.faithfulness(bert, TEXTS, examples=[7])
    with pytest.raises(InvalidInputError, match="out of range"):
        attrflow.faithfulness(bert, TEXTS, layers=[5], methods=("attention",), run=quiet)


def test_gradient_reference_noise_is_reported(bert):
    from attrflow.methods.gradients import CANCELLATION_THRESHOLD

    report = attrflow.faithfulness(
        bert,
        TEXTS[:2],
        methods=("attention",),
        references=("gradient",),
        layers=0,
        run=attrflow.RunOptions(progress=False),
    )
    assert (report.reports["gradient"]["cancellation"] < CANCELLATION_THRESHOLD).all()
    assert any("rounding noise" in note for note in report.notes())
    assert "rounding noise" in report.summary()


def test_figures(run_report, tmp_path):
    pytest.importorskip("matplotlib")
    report, _ = run_report
    figure = report.plot("blankout")
    assert len(figure.axes[0].lines) >= 4
    report.export(tmp_path)
    assert (tmp_path / "spearman_blankout.png").stat().st_size > 1000
    html = (tmp_path / "faithfulness.html").read_text()
    assert "<svg" in html and "Spearman with blankout per layer" in html


# ------------------------------------------------------------------------------------------ CLI
def test_cli_evaluate_writes_the_report(tmp_path, capsys):
    from attrflow.cli import main

    model_dir = tmp_path / "model"
    build("bert", init_scale=0.2).save_pretrained(model_dir)
    word_tokenizer().save_pretrained(model_dir)
    data = tmp_path / "data.csv"
    data.write_text("text,label\n" + "".join(f"{t},{i % 3}\n" for i, t in enumerate(TEXTS)))
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(model_dir), "--data", str(data), "--examples", "3", "--out", str(out)]
    argv += ["--methods", "attention", "flow", "--references", "blankout", "gradient_l2"]
    argv += ["--no-figures", "--no-progress", "--threads", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Spearman with blankout" in printed and "AOPC" in printed
    summary = json.loads((out / "faithfulness.json").read_text())
    assert set(summary["spearman"]) == {"blankout", "gradient_l2"}
    assert set(summary["spearman"]["blankout"]) == {"attention", "flow"}
    assert len(summary["spearman"]["blankout"]["flow"]["mean"]) == 3
    assert set(summary["aopc"]["sufficiency"]) == {"attention", "flow", "blankout", "gradient_l2"}
    assert summary["num_examples"] == 3
    assert (out / "faithfulness.html").is_file() and (out / "aopc.csv").is_file()
    # the run directory resumes: a second call computes nothing new and writes the same numbers
    assert main(argv) == 0
    assert json.loads((out / "faithfulness.json").read_text())["spearman"] == summary["spearman"]
    assert attrflow.open_run(out / "run").num_done == 3


def test_quick_faithfulness_for_the_demo(bert):
    from attrflow.analysis.faithfulness import QUICK_METHODS, quick_faithfulness

    report = quick_faithfulness(bert, TEXTS, examples=2)
    assert report.num_examples == 2 and report.references == ("blankout", "gradient_l2")
    assert report.aopc_methods == (*QUICK_METHODS, "blankout", "gradient_l2")
    assert "Spearman with blankout" in report.summary()


@pytest.mark.slow
def test_ray_engine_gives_the_local_numbers(tmp_path):
    pytest.importorskip("ray", reason="the Ray engine needs the extra: pip install 'attrflow[ray]'")
    model_dir = tmp_path / "model"
    build("bert", init_scale=0.2).save_pretrained(model_dir)
    word_tokenizer().save_pretrained(model_dir)
    options = {"methods": ("rollout", "flow", "gradient_x_input"), "references": ("blankout",)}
    local = attrflow.faithfulness(
        str(model_dir), DATA, run=attrflow.RunOptions(out_dir=tmp_path / "local", progress=False), **options
    )
    remote = attrflow.faithfulness(
        str(model_dir),
        DATA,
        run=attrflow.RunOptions(out_dir=tmp_path / "ray", engine="ray", num_workers=2, progress=False),
        **options,
    )
    for method in local.aopc_methods:
        np.testing.assert_allclose(remote.comprehensiveness[method], local.comprehensiveness[method], atol=1e-6)
    np.testing.assert_allclose(remote.spearman["blankout"]["flow"], local.spearman["blankout"]["flow"], atol=1e-6)
