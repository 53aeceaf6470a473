"""The method registry: one table of invariants every registered method must satisfy, and a dummy method
registered from a test reaches explain, the report, evaluate and the CLI with no other change."""

from __future__ import annotations

import json

import pytest
import torch

import attrflow
from attrflow.errors import InvalidInputError, UnsupportedModelError
from attrflow.methods.context import ExplainContext
from attrflow.methods.registry import Method, get_method, method_names, register_method, unregister_method
from attrflow.testing import build, example_inputs, word_tokenizer

TEXT = "the movie was not very good"
# small settings so the whole table runs in seconds; options a method does not have are not passed to it
FAST = {"steps": 2, "rule": "gauss-legendre"}


def _fast(method: Method) -> dict[str, object]:
    return method.select_options(FAST)


@pytest.fixture(scope="module")
def bert():
    return attrflow.load_model(build("bert", init_scale=0.2), tokenizer=word_tokenizer())


@pytest.fixture(scope="module")
def llama():
    return attrflow.load_model(build("llama", init_scale=0.2), tokenizer=word_tokenizer())


def _fingerprint(model: attrflow.Model) -> tuple:
    module = model.model
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in module.modules())
    flags = tuple(m.training for m in module.modules())
    weights = {k: v.clone() for k, v in module.state_dict().items()}
    grads = tuple(p.grad is None for p in module.parameters())
    return module.config._attn_implementation, hooks, flags, weights, grads


def _same(a: tuple, b: tuple) -> bool:
    return a[:3] == b[:3] and a[4] == b[4] and all(torch.equal(a[3][k], b[3][k]) for k in a[3])


def test_registry_lists_the_builtin_methods_with_their_facts():
    names = method_names()
    for expected in ("attention", "rollout", "flow", "attattr", "blankout", "gradient", "gradient_l2"):
        assert expected in names
    assert names.index("attention") < names.index("attattr") < names.index("blankout")
    infos = {info.name: info for info in attrflow.list_methods()}
    assert infos["rollout"].kind == "per-layer" and "layer_scores" in infos["rollout"].produces
    assert infos["blankout"].kind == "token" and infos["attattr"].signed and infos["attattr"].needs_gradients
    assert "head_fusion" in infos["flow"].options and infos["flow"].paper
    assert get_method("gradient-l2") is get_method("gradient_l2")
    with pytest.raises(InvalidInputError, match="registered methods: attention, rollout"):
        get_method("saliency")


@pytest.mark.parametrize("name", method_names())
def test_every_method_keeps_the_invariants(name, bert):
    """Shape, finiteness, determinism, batch-size independence, model unchanged, save/load round trip."""
    method = get_method(name)
    before = _fingerprint(bert)
    first = attrflow.token_scores(bert, TEXT, name, **_fast(method))
    second = attrflow.token_scores(bert, TEXT, name, **_fast(method))
    assert _same(before, _fingerprint(bert)), f"{name} changed the model"
    n = len(first.tokens)
    assert first.overall.shape == (n,) and torch.isfinite(first.scores).all()
    assert first.scores.dim() == (2 if method.per_layer else 1)
    if method.per_layer:
        assert first.scores.shape[0] == len(first.layers) == bert.num_layers
    torch.testing.assert_close(first.scores, second.scores, rtol=0, atol=0)
    if "batch_size" in method.options():
        small = attrflow.token_scores(bert, TEXT, name, batch_size=1, **_fast(method))
        torch.testing.assert_close(small.scores, first.scores, rtol=1e-5, atol=1e-7)
    assert first.method == method.name and first.description


@pytest.mark.parametrize("name", method_names())
def test_every_method_round_trips_through_a_file(name, bert, tmp_path):
    method = get_method(name)
    scores = attrflow.token_scores(bert, TEXT, name, **_fast(method))
    loaded = attrflow.load_result(scores.save(tmp_path / "s.safetensors"))
    torch.testing.assert_close(loaded.scores, scores.scores, rtol=0, atol=0)
    assert loaded.tokens == scores.tokens and loaded.layers == scores.layers and loaded.method == scores.method
    assert loaded.settings == json.loads(json.dumps(dict(scores.settings)))


@pytest.mark.parametrize("name", method_names())
def test_every_method_gives_the_same_numbers_inside_a_padded_batch(name, llama):
    """A left-padded dict input (as a batch would hold it) gives the numbers of the unpadded input."""
    method = get_method(name)
    if method.unsupported(llama):
        pytest.skip(method.unsupported(llama))
    inputs = example_inputs("llama", length=6)
    ids = inputs["input_ids"]
    padded = {
        "input_ids": torch.cat([torch.zeros(1, 2, dtype=ids.dtype), ids], dim=1),
        "attention_mask": torch.cat([torch.zeros(1, 2, dtype=ids.dtype), torch.ones_like(ids)], dim=1),
    }
    try:
        plain = attrflow.token_scores(llama, inputs, name, **_fast(method))
    except UnsupportedModelError as exc:
        pytest.skip(str(exc))
    shifted = attrflow.token_scores(llama, padded, name, **_fast(method))
    torch.testing.assert_close(shifted.scores, plain.scores, rtol=1e-4, atol=1e-6)


def test_options_are_checked_before_any_work(bert):
    with pytest.raises(InvalidInputError, match="no option 'steps'; its options: exclude, head_fusion, layers"):
        attrflow.token_scores(bert, TEXT, "rollout", steps=3)
    with pytest.raises(InvalidInputError, match="residual must be True or False"):
        attrflow.token_scores(bert, TEXT, "rollout", residual="no")
    with pytest.raises(InvalidInputError, match="steps must be"):
        attrflow.token_scores(bert, TEXT, "attattr", steps=0)
    with pytest.raises(InvalidInputError, match="explains the model's output"):
        attrflow.token_scores(bert, TEXT, "blankout", position=2)


def test_position_reads_another_row_for_attention_methods(bert):
    row3 = attrflow.token_scores(bert, TEXT, "rollout", position=3)
    rollout = attrflow.attention_rollout(attrflow.record_attention(bert, TEXT).attentions)
    torch.testing.assert_close(row3.overall.double(), rollout[-1, 3].double(), rtol=1e-6, atol=1e-7)
    assert row3.position == 3


# ------------------------------------------------------------------------------------------ a dummy method
@pytest.fixture
def dummy():
    """A token-score method registered from the test: the token's position, scaled."""

    @register_method
    class Dummy(Method):
        name = "dummy"
        description = "position of the token (a test method)"
        reads_output = False

        def compute(self, context: ExplainContext, *, scale: float = 1.0) -> attrflow.TokenScores:
            values = torch.arange(context.n, dtype=torch.float32) * scale
            return context.result(self.name, values, "position × scale", reads_output=False)

    yield Dummy
    unregister_method("dummy")


def test_a_registered_method_reaches_explain_report_evaluate_and_cli(dummy, bert, tmp_path, capsys):
    from attrflow.cli import main

    explanation = attrflow.explain(bert, TEXT, methods=["dummy", "rollout"])
    assert list(explanation.scores) == ["dummy", "rollout"]
    assert 'data-method="dummy"' in explanation.to_html()
    report = attrflow.faithfulness(
        bert,
        [TEXT, "a boring plot"],
        methods=["dummy"],
        references=["blankout"],
        run=attrflow.RunOptions(progress=False),
    )
    assert "dummy" in report.token_spearman["blankout"] and "dummy" in report.aopc_methods

    model_dir = tmp_path / "model"
    bert.model.save_pretrained(model_dir)
    word_tokenizer().save_pretrained(model_dir)
    out = tmp_path / "report.html"
    assert main(["explain", TEXT, "--model", str(model_dir), "--methods", "dummy", "--out", str(out)]) == 0
    assert "dummy:" in capsys.readouterr().out and 'data-method="dummy"' in out.read_text()
    data = tmp_path / "data.csv"
    data.write_text("text,label\nthe movie was great,1\na boring plot,0\n")
    argv = [
        "evaluate",
        "--model",
        str(model_dir),
        "--data",
        str(data),
        "--methods",
        "dummy",
        "--out",
        str(tmp_path / "e"),
    ]
    assert main([*argv, "--no-figures", "--no-progress", "--threads", "1"]) == 0
    summary = json.loads((tmp_path / "e" / "faithfulness.json").read_text())
    assert "dummy" in summary["aopc"]["comprehensiveness"]
    assert main(["methods"]) == 0
    assert "dummy" in capsys.readouterr().out


def test_a_second_method_of_the_same_name_is_refused(dummy):
    class Other(Method):
        name = "dummy"
        description = "another"

        def compute(self, context: ExplainContext) -> attrflow.TokenScores:
            raise AssertionError

    with pytest.raises(InvalidInputError, match="already registered"):
        register_method(Other)
