"""Head importance and pruning curves: each score against an independent oracle, the curve against a one-example-
at-a-time evaluation, the runner table (local and Ray), results, the page and ``attrflow heads``."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import attrflow
from attrflow.analysis.heads import (
    DATA_METHODS,
    METHODS,
    HeadImportance,
    HeadsAnalysis,
    HeadScoresTask,
    PruningCurve,
    aggregate,
    analyze_heads,
    prune_curve,
    pruned_count,
    random_importance,
)
from attrflow.data import sample
from attrflow.errors import InvalidInputError, UnsupportedModelError
from attrflow.runner import RunOptions, run_dataset
from attrflow.testing import build, word_tokenizer
from runner_tasks import Example, make_dataset

SRC = Path(attrflow.__file__).resolve().parent.parent
QUIET = RunOptions(progress=False)


def _inputs(example: Example) -> str | tuple[str, str]:
    return example.text if example.text_pair is None else (example.text, example.text_pair)


@pytest.fixture(scope="module")
def model() -> attrflow.Model:
    # init_scale 0.2: predictions vary across inputs and pruning changes them (0.02 predicts one class everywhere)
    return attrflow.load_model(build("bert", init_scale=0.2), tokenizer=word_tokenizer())


@pytest.fixture(scope="module")
def labelled(model) -> list[Example]:
    """Examples labelled with the unpruned model's own predictions: accuracy before pruning is exactly 1."""
    data = make_dataset(16)
    predictions = model.predict_batch([_inputs(e) for e in data]).argmax(-1).tolist()
    return [dataclasses.replace(e, label=int(p)) for e, p in zip(data, predictions, strict=True)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-bert")
    build("bert", init_scale=0.2).save_pretrained(directory)
    word_tokenizer().save_pretrained(directory)
    return directory


def _run_table(model, data, tmp_path, **options):
    task = HeadScoresTask(model, **options)
    return run_dataset(task, data, out_dir=tmp_path / "run", progress=False, examples_per_batch=3)


# ---------------------------------------------------------------------- scores against oracles
def test_taylor_equals_the_per_layer_gradient_oracle(model, tmp_path):
    data = make_dataset(4)  # gold labels 0/1 that the model mostly gets wrong: a non-trivial loss
    run = _run_table(model, data, tmp_path, methods=("taylor",))
    importance = HeadImportance.from_run(run, "taylor")
    for row, example in enumerate(data):
        encoding = model.prepare(_inputs(example))
        expected = torch.zeros(model.num_layers, model.num_heads, dtype=torch.float64)
        for layer in range(model.num_layers):
            # one branch row whose layer probabilities are a grad-requiring leaf (α = 1 leaves them unchanged)
            with torch.enable_grad():
                branched = model.run_branches(encoding, {layer: torch.ones(1)}, require_grad=True)
                logits = branched.logits[branched.row_starts[layer] :].float()
                loss = torch.nn.functional.cross_entropy(logits, torch.tensor([example.label]))
                leaf = branched.leaves[layer]
                (grad,) = torch.autograd.grad(loss, leaf)
            expected[layer] = (leaf.detach() * grad).double()[0].sum(dim=(-1, -2))
        torch.testing.assert_close(importance.per_example[row].double(), expected, rtol=1e-4, atol=1e-7)
    # aggregation: mean of |.|, each layer scaled to unit L2 norm
    mean = importance.per_example.double().abs().mean(0)
    torch.testing.assert_close(importance.scores.double(), mean / mean.norm(dim=1, keepdim=True), rtol=1e-5, atol=0)
    torch.testing.assert_close(
        importance.scores.double().norm(dim=1), torch.ones(model.num_layers, dtype=torch.float64)
    )


def test_taylor_logit_sum_objective(model, tmp_path):
    example = make_dataset(1)[0]
    run = _run_table(model, [example], tmp_path, methods=("taylor",), taylor_objective="logit-sum")
    encoding = model.prepare(_inputs(example))
    gate = torch.ones(model.num_layers, model.num_heads, requires_grad=True)
    with torch.enable_grad():
        logits = model.forward_pass(encoding, gate=gate).logits
        (grad,) = torch.autograd.grad(logits.sum(), gate)
    stored = HeadImportance.from_run(run, "taylor").per_example[0]
    torch.testing.assert_close(stored, grad.float(), rtol=1e-5, atol=1e-7)
    assert run.settings["taylor_objective"] == "logit-sum"


@pytest.mark.parametrize("target", ["label", "predicted"])
def test_attattr_rows_equal_single_example_attribution(model, tmp_path, target):
    data = make_dataset(3)
    run = _run_table(model, data, tmp_path, methods=("attattr",), target=target, steps=3, rule="riemann-left", top_k=4)
    table = run.read_table().to_pylist()
    importance = HeadImportance.from_run(run, "attattr")
    for row, example in zip(table, data, strict=True):
        wanted_target = example.label if target == "label" else None
        reference = attrflow.attribute(model, _inputs(example), target=wanted_target, steps=3, rule="riemann-left")
        assert row["target"] == reference.target
        assert row["label"] == example.label and row["prediction"] == reference.predicted
        np.testing.assert_allclose(np.array(row["attattr"]), reference.head_scores().numpy(), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(row["completeness_gap"], reference.completeness_gap.numpy(), rtol=1e-5, atol=1e-8)
        top = reference.top_interactions(4)
        assert [(t["layer"], t["head"], t["from_index"], t["to_index"]) for t in row["top_interactions"]] == list(
            zip(top["layer"], top["head"], top["from_index"], top["to_index"], strict=True)
        )
        assert row["tokens"] == list(reference.tokens)
    np.testing.assert_allclose(importance.scores.numpy(), importance.per_example.numpy().mean(0), rtol=1e-6)
    assert importance.settings["steps"] == 3 and importance.settings["target"] == target


def test_attention_is_the_max_probability_of_each_head(model, tmp_path):
    data = make_dataset(5)
    importance = attrflow.head_importance(model, data, method="attention", examples=4, selection="first", run=QUIET)
    assert importance.num_examples == 4 and importance.example_ids == (0, 1, 2, 3)
    expected = torch.stack(
        [attrflow.record_attention(model, _inputs(e)).attentions.amax(dim=(-1, -2)) for e in data[:4]]
    )
    torch.testing.assert_close(importance.per_example, expected.float(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(importance.scores, expected.mean(0).float(), rtol=1e-6, atol=1e-7)


def test_scores_do_not_depend_on_how_examples_are_batched(model):
    data = make_dataset(6)
    one = attrflow.head_importance(model, data, method="taylor", run=RunOptions(examples_per_batch=1, progress=False))
    many = attrflow.head_importance(model, data, method="taylor", run=RunOptions(examples_per_batch=6, progress=False))
    assert torch.equal(one.per_example, many.per_example)


def test_examples_are_a_seeded_sample_or_the_first(model):
    # a label-sorted dataset, like the built-in tweet splits: the first examples are all of one class
    data = [Example(f"text {i}", None, int(i >= 60)) for i in range(100)]
    with pytest.warns(UserWarning, match="carry the label"):
        first = sample(data, 20, selection="first")
    assert first.example_ids == list(range(20)) and {e.label for e in first} == {0}
    drawn = sample(data, 20, seed=5)
    assert drawn.example_ids == sorted(set(drawn.example_ids)) and len(drawn) == 20
    assert [e.text for e in drawn] == [f"text {i}" for i in drawn.example_ids]
    assert {e.label for e in drawn} == {0, 1}
    assert sample(data, 20, seed=5).example_ids == drawn.example_ids
    assert sample(data, 20, seed=6).example_ids != drawn.example_ids
    assert sample(data, None).example_ids == list(range(100)) == sample(data, 500).example_ids
    with pytest.raises(InvalidInputError, match="selection"):
        sample(data, 3, selection="last")  # type: ignore[arg-type]
    # the run records dataset positions as example ids
    with pytest.warns(UserWarning, match="carry the label"):  # data[:9] is all of one class
        importance = attrflow.head_importance(model, data[:9], method="attention", examples=4, run=QUIET)
    assert importance.example_ids == tuple(sample(data[:9], 4, warn_one_class=False).example_ids)


def test_random_is_seeded():
    a, b, c = random_importance(3, 4, seed=1), random_importance(3, 4, seed=1), random_importance(3, 4, seed=2)
    assert torch.equal(a.scores, b.scores) and not torch.equal(a.scores, c.scores)
    assert a.num_examples == 0 and a.settings["seed"] == 1


# ---------------------------------------------------------------------- rankings
def _importance(scores, method="attattr", per_example=None) -> HeadImportance:
    scores = torch.tensor(scores, dtype=torch.float32)
    rows = per_example if per_example is not None else scores[None]
    return HeadImportance(method, scores, rows, tuple(range(rows.shape[0])))


def test_order_prune_mask_and_counts_by_hand():
    importance = _importance([[3.0, 1.0], [2.0, 0.0]])
    assert importance.order().tolist() == [3, 1, 2, 0]
    assert importance.prune_mask(0.5).tolist() == [[1.0, 0.0], [1.0, 0.0]]
    assert importance.prune_mask(0.0).sum() == 4 and importance.prune_mask(1.0).sum() == 0
    # ties keep the layer-major order
    assert _importance([[1.0, 1.0], [0.0, 1.0]]).order().tolist() == [2, 0, 1, 3]
    assert [pruned_count(f, 10) for f in (0.0, 0.3, 0.6, 0.7, 1.0)] == [0, 3, 6, 7, 10]
    assert pruned_count(0.29, 100) == 29 and pruned_count(0.1, 72) == 7
    with pytest.raises(InvalidInputError):
        pruned_count(1.5, 10)
    frame = importance.to_frame()
    assert frame.prune_order.tolist() == [3, 1, 2, 0] and frame.layer.tolist() == [0, 0, 1, 1]


def test_correlation_and_subsets_by_hand():
    a = _importance([[1.0, 2.0], [3.0, 4.0]])
    b = _importance([[1.0, 3.0], [2.0, 5.0]])
    c = a.correlation(b)
    assert c.spearman == pytest.approx(0.8)  # ranks 1 2 3 4 vs 1 3 2 4: 1 - 6·2/60
    assert c.pearson == pytest.approx(5.5 / np.sqrt(5 * 8.75))
    assert a.correlation(a).pearson == pytest.approx(1.0)
    assert a.correlation(_importance([[-1.0, -2.0], [-3.0, -4.0]])).spearman == pytest.approx(-1.0)
    with pytest.raises(InvalidInputError, match="shapes"):
        a.correlation(_importance([[1.0, 2.0, 3.0]]))

    rows = torch.tensor([[[1.0, -2.0]], [[3.0, 2.0]], [[-5.0, 0.0]]])
    taylor = HeadImportance("taylor", torch.from_numpy(aggregate("taylor", rows.numpy())).float(), rows, (7, 8, 9))
    torch.testing.assert_close(taylor.scores, torch.tensor([[3.0, 4.0 / 3]]) / np.hypot(3.0, 4.0 / 3))
    half = taylor.subset(slice(0, 2))
    assert half.example_ids == (7, 8)
    torch.testing.assert_close(half.scores, torch.tensor([[2.0, 2.0]]) / np.hypot(2.0, 2.0))
    with pytest.raises(InvalidInputError):
        random_importance(1, 2).subset([0])


# ---------------------------------------------------------------------- pruning
def test_pruning_curve_equals_one_example_at_a_time_evaluation(model, labelled):
    attention = attrflow.head_importance(model, labelled, method="attention", examples=8, run=QUIET)
    rankings = [attention, random_importance(model.num_layers, model.num_heads, seed=3)]
    curve = prune_curve(model, labelled, rankings, fractions=(0.0, 0.25, 0.5, 1.0), batch_size=5, progress=False)
    assert curve.methods == ("attention", "random")
    assert curve.num_pruned == (0, 3, 6, 12) and curve.num_examples == len(labelled)
    oracle: dict[bytes, float] = {}
    for ranking in rankings:
        for fraction, accuracy in zip(curve.fractions, curve.accuracy[ranking.method], strict=True):
            mask = ranking.prune_mask(fraction)
            if mask.numpy().tobytes() not in oracle:
                with model.gate_heads(mask):
                    hits = [int(model.predict_proba(_inputs(e)).argmax()) == e.label for e in labelled]
                oracle[mask.numpy().tobytes()] = float(np.mean(hits))
            assert accuracy == pytest.approx(oracle[mask.numpy().tobytes()], abs=1e-12)
    assert curve.accuracy["attention"][0] == 1.0  # labels are the unpruned predictions
    assert curve.majority_accuracy == np.bincount([e.label for e in labelled]).max() / len(labelled)
    assert curve.accuracy["attention"][-1] == curve.accuracy["random"][-1] < 1.0  # everything pruned
    expected_auc = sum(
        (x1 - x0) * (y0 + y1) / 2
        for x0, x1, y0, y1 in zip(
            curve.fractions, curve.fractions[1:], curve.accuracy["random"], curve.accuracy["random"][1:], strict=False
        )
    )
    assert curve.auc["random"] == pytest.approx(expected_auc)
    table = curve.to_frame()
    assert list(table.columns) == ["fraction", "pruned_heads", "attention", "random"]
    assert curve.to_dict()["random"]["auc"] == pytest.approx(expected_auc)


def test_prune_curve_resumes_from_its_checkpoint(model, labelled, tmp_path, monkeypatch):
    rankings = [random_importance(model.num_layers, model.num_heads, seed=s) for s in (1, 2)]
    rankings = {f"r{i}": r for i, r in enumerate(rankings)}
    fractions = (0.0, 0.25, 0.5, 0.75, 1.0)
    fresh = prune_curve(model, labelled, rankings, fractions=fractions, progress=False)
    checkpoint = tmp_path / "pruning-progress.json"
    calls = {"n": 0}
    original = type(model).predict_batch

    def dies_after_three(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt  # stopped mid-evaluation
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "predict_batch", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        prune_curve(model, labelled, rankings, fractions=fractions, progress=False, checkpoint=checkpoint)
    assert len(json.loads(checkpoint.read_text())["masks"]) == 3
    monkeypatch.setattr(type(model), "predict_batch", original)
    counted = {"n": 0}

    def counting(self, *args, **kwargs):
        counted["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "predict_batch", counting)
    resumed = prune_curve(model, labelled, rankings, fractions=fractions, progress=False, checkpoint=checkpoint)
    unique = {frozenset(r.order().tolist()[: pruned_count(f, 12)]) for r in rankings.values() for f in fractions}
    assert counted["n"] == len(unique) - 3  # only what was missing
    assert resumed.accuracy == fresh.accuracy
    # another evaluation set must not reuse these numbers
    with pytest.raises(InvalidInputError, match="another evaluation"):
        prune_curve(model, labelled[:-1], rankings, fractions=fractions, progress=False, checkpoint=checkpoint)
    checkpoint.write_text("{not json")
    with pytest.raises(InvalidInputError, match="not a readable pruning checkpoint"):
        prune_curve(model, labelled, rankings, fractions=fractions, progress=False, checkpoint=checkpoint)


def test_prune_curve_refuses_bad_input(model, labelled):
    ranking = random_importance(model.num_layers, model.num_heads)
    with pytest.raises(InvalidInputError, match="increasing"):
        prune_curve(model, labelled, ranking, fractions=(0.5, 0.1), progress=False)
    with pytest.raises(InvalidInputError, match="the model has"):
        prune_curve(model, labelled, random_importance(2, 2), progress=False)
    with pytest.raises(InvalidInputError, match="both named"):
        prune_curve(model, labelled, [ranking, ranking], progress=False)
    unlabelled = [dataclasses.replace(e, label=-1) for e in labelled[:3]]
    with pytest.raises(InvalidInputError, match="gold labels"):
        prune_curve(model, unlabelled, ranking, progress=False)


def test_input_errors(model):
    data = make_dataset(3)
    with pytest.raises(InvalidInputError, match="method"):
        attrflow.head_importance(model, data, method="gradient", run=QUIET)
    unlabelled_data = [dataclasses.replace(e, label=-1) for e in data]
    with pytest.raises(InvalidInputError, match="target='predicted'"):
        attrflow.head_importance(model, unlabelled_data, method="attention", run=QUIET)
    unlabelled = attrflow.head_importance(model, unlabelled_data, method="attention", target="predicted", run=QUIET)
    assert unlabelled.num_examples == 3
    with pytest.raises(InvalidInputError, match="live Model"):
        attrflow.head_importance(model, data, method="taylor", run=RunOptions(engine="ray", progress=False))
    with pytest.raises(InvalidInputError, match="live Model"):
        __import__("pickle").dumps(HeadScoresTask(model))
    with pytest.raises(InvalidInputError, match="target"):
        attrflow.head_importance(model, data, method="attention", target="gold-ish", run=QUIET)
    with pytest.raises(TypeError, match="unexpected keyword argument 'step'"):
        attrflow.head_importance(model, data, method="attattr", step=3)
    gpt2 = attrflow.load_model(build("gpt2"), tokenizer=word_tokenizer())
    with pytest.raises(UnsupportedModelError, match="sequence-classification"):
        attrflow.head_importance(gpt2, data, method="attention", run=QUIET)


# ---------------------------------------------------------------------- results, page, runs
def test_results_save_load_and_render(model, labelled, tmp_path):
    analysis = analyze_heads(
        model, labelled, examples=4, steps=2, methods=("attattr", "attention", "random"), run=QUIET
    )
    imp, curve = analysis.importances["attattr"], analysis.curve
    assert imp.settings["steps"] == 2 and imp.settings["selection"] == "random"
    assert "steps" not in analysis.importances["attention"].settings  # only the options a method depends on
    imp.save(tmp_path / "imp.safetensors")
    curve.save(tmp_path / "curve.safetensors")
    analysis.save(tmp_path / "study.safetensors")
    # a fresh interpreter: load_result must find the result types without importing them first
    code = (
        "import attrflow, sys; a, b, c = (attrflow.load_result(p) for p in sys.argv[1:]); "
        "print(type(a).__name__, type(b).__name__, type(c).__name__, a.method, b.methods)"
    )
    files = [str(tmp_path / name) for name in ("imp.safetensors", "curve.safetensors", "study.safetensors")]
    out = subprocess.run(
        [sys.executable, "-c", code, *files],
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == [
        *("HeadImportance", "PruningCurve", "HeadsAnalysis", "attattr"),
        *("('attattr',", "'attention',", "'random')"),
    ]
    assert attrflow.load_result(tmp_path / "study.safetensors") == analysis
    assert HeadsAnalysis.load(tmp_path / "study.safetensors").summary() == analysis.summary()
    again, back = HeadImportance.load(tmp_path / "imp.safetensors"), PruningCurve.load(tmp_path / "curve.safetensors")
    assert torch.equal(again.scores, imp.scores) and torch.equal(again.per_example, imp.per_example)
    assert again.example_ids == imp.example_ids and again.settings == imp.settings
    assert back.accuracy == curve.accuracy and back.orders == curve.orders and back.num_pruned == curve.num_pruned
    assert back.majority_accuracy == curve.majority_accuracy
    with pytest.raises(InvalidInputError, match="not a PruningCurve"):
        PruningCurve.load(tmp_path / "imp.safetensors")

    html = analysis.to_html(title="<heads> & co")
    assert "&lt;heads&gt; &amp; co" in html and "<script" not in html
    assert html.count("<polyline") == 3 and "Agreement between rankings" in html
    written = analysis.export(tmp_path / "out", figure_formats=("png", "svg"))
    assert [p.name for p in written] == ["heads.json", "heads.html", "pruning.png", "pruning.svg"]
    assert (tmp_path / "out" / "pruning.png").read_bytes()[:4] == b"\x89PNG"
    figure = imp.plot()
    assert figure.axes and curve.plot().axes


def test_deprecated_spellings_give_the_same_scores(model):
    data = make_dataset(5)
    new = attrflow.head_importance(model, data, method="attattr", examples=3, steps=2, run=QUIET)
    with pytest.warns(DeprecationWarning, match="target='label'"):
        gold = attrflow.head_importance(model, data, method="attattr", examples=3, steps=2, target="gold", run=QUIET)
    assert gold == new and new.settings["target"] == "label"
    with pytest.warns(DeprecationWarning, match="run=attrflow.RunOptions"):
        old = attrflow.head_importance(
            model, data, method="attattr", examples=3, steps=2, progress=False, examples_per_batch=2
        )
    assert old == new
    with pytest.raises(InvalidInputError, match="not both"):
        attrflow.head_importance(model, data, method="attattr", run=QUIET, progress=False)
    with pytest.warns(DeprecationWarning, match="target='label'"):
        task = HeadScoresTask(model, methods=("attention",), target="gold")
    assert task.settings()["target"] == "label"
    with pytest.warns(DeprecationWarning, match=r"analyze_heads\(out_dir="):
        study = analyze_heads(
            model, data, examples=3, steps=2, methods=("attention", "random"), out_dir=None, progress=False
        )
    alone = attrflow.head_importance(model, data, method="attention", examples=3, run=QUIET)
    assert study.importances["attention"] == alone


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_local_and_ray_runs_store_the_same_table(model_dir, tmp_path):
    pytest.importorskip("ray", reason="the Ray engine needs the extra: pip install 'attrflow[ray]'")
    data = make_dataset(6)
    options = {"methods": ("attattr", "taylor"), "steps": 2}
    local = run_dataset(HeadScoresTask(str(model_dir), **options), data, out_dir=tmp_path / "local", progress=False)
    remote = run_dataset(
        HeadScoresTask(str(model_dir), **options),
        data,
        out_dir=tmp_path / "ray",
        engine="ray",
        num_workers=2,
        examples_per_batch=2,
        progress=False,
    )
    a, b = local.read_table(), remote.read_table()
    assert a.schema == b.schema and a.column("example_id").equals(b.column("example_id"))
    for name in ("tokens", "label", "target", "prediction"):
        assert a.column(name).equals(b.column(name))
    for method in ("attention", "attattr", "taylor"):
        np.testing.assert_allclose(
            HeadImportance.from_run(remote, method).per_example.numpy(),
            HeadImportance.from_run(local, method).per_example.numpy(),
            rtol=1e-4,  # one torch thread per Ray worker: float32 sums in another order
            atol=1e-6,
        )


def test_cli_writes_the_study_and_resumes(model_dir, labelled, tmp_path, capsys):
    from attrflow.cli import main

    assert set(DATA_METHODS) < set(METHODS)
    single = [e for e in labelled if e.text_pair is None]
    data_file = tmp_path / "tiny.csv"
    data_file.write_text("text,label\n" + "".join(f"{e.text},{e.label}\n" for e in single))
    out = tmp_path / "study"
    argv = ["heads", "--model", str(model_dir), "--data", str(data_file), "--examples", "5", "--steps", "2"]
    argv += ["--fractions", "0,0.5,1", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "area under the accuracy curve" in printed and "agreement with attattr" in printed
    study = json.loads((out / "heads.json").read_text())
    assert list(study["importance"]) == list(METHODS)
    assert np.asarray(study["importance"]["taylor"]).shape == (3, 4)
    assert study["pruning"]["attattr"]["fractions"] == [0.0, 0.5, 1.0]
    assert len(study["pruning"]["random"]["accuracy"]) == 3 and 0 <= study["pruning"]["random"]["auc"] <= 1
    assert study["pruning"]["attattr"]["accuracy"][0] == 1.0
    table = pq.read_table(out / "examples.parquet")
    ids = table.column("example_id").to_pylist()
    assert len(ids) == 5 and table.column("label").to_pylist() == [single[i].label for i in ids]
    assert study["settings"]["eval_examples"] == len(single)
    for column in ("example_id", "tokens", "label", "prediction", "probability", "attattr", "top_interactions"):
        assert column in table.column_names
    assert (out / "pruning.png").exists() and "<svg" in (out / "heads.html").read_text()

    assert len(json.loads((out / "pruning-progress.json").read_text())["masks"]) >= 3  # the resumable pruning part
    assert main(argv) == 0  # a finished run: nothing recomputed, the same study
    assert json.loads((out / "heads.json").read_text())["importance"] == study["importance"]
    with pytest.raises(SystemExit):
        main(["heads", "--data", "x", "--out", str(tmp_path / "x"), "--methods", "attattr,gradient"])


def test_heads_demo_is_small_and_summarises(model, labelled):
    from attrflow.analysis.heads import DEMO_FRACTIONS, heads_demo

    demo = heads_demo(model, labelled, examples=3, eval_examples=8)
    assert demo.curve.fractions == DEMO_FRACTIONS and demo.curve.num_examples == 8
    assert all(imp.num_examples in (0, 3) for imp in demo.importances.values())
    text = demo.summary()
    assert "area under the accuracy curve" in text and "agreement with attattr" in text
    auc_block = text.split("area under the accuracy curve:\n")[1].split("\n\n")[0].splitlines()
    assert sorted(line.split()[0] for line in auc_block) == sorted(METHODS)
    aucs = [float(line.split()[1]) for line in auc_block]
    assert aucs == sorted(aucs, reverse=True) and aucs[0] == pytest.approx(max(demo.curve.auc.values()), abs=5e-5)
