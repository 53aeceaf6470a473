"""The head-ranking registry and the head results without a model: listing, lookup, a custom ranking, one-file
save/load round trips, display protocol, and the deprecated names of the old single-module layout."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch

import attrflow
from attrflow.analysis.heads import (
    DATA_METHODS,
    METHODS,
    HeadImportance,
    HeadRanking,
    HeadsAnalysis,
    PruningCurve,
    aggregate,
    get_ranking,
    list_rankings,
    random_importance,
    ranking_names,
    register_ranking,
    unregister_ranking,
)
from attrflow.analysis.heads import rankings as registry
from attrflow.errors import InvalidInputError


# ---------------------------------------------------------------------- the registry
def test_registry_lists_the_four_rankings_with_description_and_paper():
    assert ranking_names() == ("attattr", "taylor", "attention", "random") == METHODS
    assert DATA_METHODS == ("attattr", "taylor", "attention")
    for ranking in list_rankings():
        assert get_ranking(ranking.name) is ranking
        assert ranking.description and ranking.paper and ranking.label
        assert ranking.name in repr(ranking)
    assert "Hao et al." in get_ranking("attattr").paper and "Michel" in get_ranking("taylor").paper
    assert [r.name for r in list_rankings() if not r.baseline] == ["attattr"]
    assert get_ranking("attattr").options == ("steps", "rule", "top_k")
    assert registry.descriptions()["random"].endswith("(the pruning floor)")
    with pytest.raises(InvalidInputError, match="'attattr', 'taylor', 'attention', 'random'"):
        get_ranking("gradient")
    with pytest.raises(InvalidInputError, match="unknown 'gradient'"):
        registry.check_rankings("methods", "attattr,gradient")
    assert registry.check_rankings("methods", "random, attattr,random") == ("random", "attattr")


class _Constant(HeadRanking):
    name = "constant"
    description = "every head scores its flat index"
    paper = "a test"
    label = "constant"
    colour = "#000000"
    needs_data = False

    def scores_without_data(self, num_layers: int, num_heads: int, *, seed: int = 0) -> np.ndarray:
        return np.arange(num_layers * num_heads, dtype=np.float64).reshape(num_layers, num_heads)


@pytest.fixture
def constant_ranking():
    register_ranking(_Constant)
    yield get_ranking("constant")
    unregister_ranking("constant")


def test_a_registered_ranking_is_found_everywhere(constant_ranking):
    from attrflow.analysis import heads

    # METHODS and DATA_METHODS follow the registry when read from the package
    assert ranking_names()[-1] == "constant" == heads.METHODS[-1] and "constant" not in heads.DATA_METHODS
    assert get_ranking(constant_ranking) is constant_ranking
    importance = random_importance(2, 3, method="constant")
    assert importance.order().tolist() == list(range(6)) and importance.method == "constant"
    # the command line's choices come from the registry too
    from attrflow.cli import heads as heads_cli

    assert heads_cli._methods("constant,attattr") == ["constant", "attattr"]
    assert "constant" in heads_cli._rankings_epilog()
    with pytest.raises(argparse.ArgumentTypeError, match="unknown 'gradient'"):
        heads_cli._methods("gradient")


def test_registering_checks_the_class():
    with pytest.raises(TypeError, match="HeadRanking"):
        register_ranking(object)  # type: ignore[type-var]

    class Nameless(HeadRanking):
        description = "no name"

    with pytest.raises(TypeError, match="name"):
        register_ranking(Nameless)

    class Impostor(_Constant):
        name = "attattr"

    with pytest.raises(InvalidInputError, match="already registered"):
        register_ranking(Impostor)
    assert type(get_ranking("attattr")).__name__ == "AttAttrRanking"
    unregister_ranking("no such ranking")  # ignored


def test_aggregation_by_hand():
    rows = np.array([[[1.0, -2.0]], [[3.0, 2.0]], [[-5.0, 0.0]]])
    np.testing.assert_allclose(aggregate("attattr", rows), [[-1 / 3, 0.0]])
    np.testing.assert_allclose(aggregate("attention", rows), rows.mean(0))
    np.testing.assert_allclose(aggregate("taylor", rows), np.array([[3.0, 4.0 / 3]]) / np.hypot(3.0, 4.0 / 3))
    with pytest.raises(InvalidInputError, match=r"N >= 1"):
        aggregate("attattr", np.zeros((0, 1, 2)))
    with pytest.raises(InvalidInputError, match="computed from data"):
        random_importance(1, 2, method="attattr")


# ---------------------------------------------------------------------- results
def _importance(method: str = "attattr", seed: int = 0) -> HeadImportance:
    g = torch.Generator().manual_seed(seed)
    per_example = torch.randn(4, 2, 3, generator=g)
    scores = torch.from_numpy(aggregate(method, per_example.numpy())).float()
    return HeadImportance(method, scores, per_example, (3, 5, 8, 13), {"model": "tiny", "steps": "auto", "seed": 1})


def _curve() -> PruningCurve:
    return PruningCurve(
        fractions=(0.0, 0.5, 1.0),
        num_pruned=(0, 3, 6),
        accuracy={"attattr": (1.0, 0.75, 0.5), "random": (1.0, 0.5, 0.5)},
        num_examples=8,
        num_layers=2,
        num_heads=3,
        orders={"attattr": (5, 4, 3, 2, 1, 0), "random": (0, 1, 2, 3, 4, 5)},
        settings={"model": "tiny", "batch_size": 64},
        majority_accuracy=0.5,
    )


def _analysis() -> HeadsAnalysis:
    importances = {"attattr": _importance(), "random": random_importance(2, 3, seed=4)}
    return HeadsAnalysis(importances, _curve(), {"model": "tiny", "methods": ["attattr", "random"], "target": "label"})


@pytest.mark.parametrize("build", [_importance, _curve, _analysis], ids=["importance", "curve", "analysis"])
def test_save_writes_one_file_that_loads_back_equal(build, tmp_path):
    result = build()
    path = result.save(tmp_path / "result.safetensors")
    assert path == tmp_path / "result.safetensors" and sorted(tmp_path.iterdir()) == [path]
    back = attrflow.load_result(path)
    assert type(back) is type(result) and back == result
    assert type(result).load(path) == result


def test_equality_sees_every_field():
    assert _importance() != _importance(seed=1)
    assert _importance() != HeadImportance("attattr", _importance().scores, _importance().per_example, (3, 5, 8, 14))
    curve = _curve()
    nan_curve = PruningCurve(**{**curve.__dict__, "majority_accuracy": math.nan})
    assert nan_curve == PruningCurve(**{**curve.__dict__, "majority_accuracy": math.nan}) and nan_curve != curve
    assert curve != PruningCurve(**{**curve.__dict__, "accuracy": {"attattr": (1.0, 0.75, 0.5), "random": (1, 1, 1)}})
    analysis = _analysis()
    assert analysis != HeadsAnalysis(analysis.importances, analysis.curve, {**analysis.settings, "seed": 2})
    assert analysis != HeadsAnalysis({"attattr": _importance(seed=3)}, analysis.curve, analysis.settings)


def test_a_file_of_another_kind_is_refused(tmp_path):
    path = _curve().save(tmp_path / "curve.safetensors")
    with pytest.raises(InvalidInputError, match="not a HeadsAnalysis"):
        HeadsAnalysis.load(path)
    with pytest.raises(InvalidInputError, match="not a HeadImportance"):
        HeadImportance.load(path)


def test_frames_pages_and_figures(tmp_path):
    analysis = _analysis()
    frame = analysis.to_frame()
    assert list(frame.columns) == ["method", "layer", "head", "score", "prune_order", "auc"]
    assert len(frame) == 12 and set(frame.method) == {"attattr", "random"}
    assert frame[frame.method == "random"].auc.iloc[0] == pytest.approx(analysis.curve.auc["random"])
    assert list(_curve().to_frame().columns) == ["fraction", "pruned_heads", "attattr", "random"]
    for result in (analysis, _curve(), _importance()):
        html = result.to_html(tmp_path / f"{type(result).__name__}.html", title="<t> & co", back=("index.html", "demo"))
        assert (tmp_path / f"{type(result).__name__}.html").read_text() == html
        assert "&lt;t&gt; &amp; co" in html and '<nav class="back"><a href="index.html">' in html
        assert "script-src 'none'" in html and "<script" not in html
        assert result._repr_html_()
    html = analysis.to_html()
    assert html.count("<polyline") == 2 and "Agreement between rankings" in html and "Michel" not in html
    assert "(Hao et al., AAAI 2021, §4.1)" in html  # the rankings' descriptions come from the registry
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    for result in (analysis, _curve(), _importance()):
        figure = Figure()
        ax = figure.subplots()
        assert result.plot(ax=ax) is figure and result.plot().axes


def test_export_writes_the_study_directory(tmp_path):
    analysis = _analysis()
    written = analysis.export(tmp_path / "out", figure_formats=("svg",))
    assert [p.name for p in written] == ["heads.json", "heads.html", "pruning.svg"]
    study = json.loads((tmp_path / "out" / "heads.json").read_text())
    assert study["importance"]["attattr"] == analysis.importances["attattr"].scores.tolist()
    assert study["pruning"]["random"]["accuracy"] == [1.0, 0.5, 0.5] and study["settings"]["target"] == "label"
    with pytest.raises(InvalidInputError, match="figure_formats"):
        analysis.export(tmp_path / "bad", figure_formats=("gif",))


# ---------------------------------------------------------------------- deprecated names
def test_save_into_a_directory_still_exports_with_a_warning(tmp_path):
    analysis = _analysis()
    (tmp_path / "old").mkdir()
    with pytest.warns(DeprecationWarning, match=r"export\(directory\)"):
        assert analysis.save(tmp_path / "old") == tmp_path / "old"
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == ["heads.html", "heads.json", "pruning.png"]
    with pytest.warns(DeprecationWarning):
        analysis.save(tmp_path / "new", figure_formats=("svg",))
    assert (tmp_path / "new" / "pruning.svg").exists()


def test_old_module_names_still_work(monkeypatch):
    import importlib
    import sys

    from attrflow.analysis import heads

    monkeypatch.delitem(sys.modules, "attrflow.analysis.pruning", raising=False)
    with pytest.warns(DeprecationWarning, match="moved to attrflow.analysis.heads"):
        old = importlib.import_module("attrflow.analysis.pruning")

    assert old.analyze_heads is heads.analyze_heads and old.PruningCurve is PruningCurve
    assert old.HeadsAnalysis is attrflow.HeadsAnalysis is HeadsAnalysis
    assert attrflow.prune_curve is heads.prune_curve and attrflow.HeadImportance is HeadImportance
    assert heads.Target is attrflow.validation.TargetRule
    data = [attrflow.Example(f"text {i}", None, i % 2) for i in range(30)]
    with pytest.warns(DeprecationWarning, match="attrflow.data.sample"):
        old_subset = heads.select_examples(data, 7, seed=3)
    new = attrflow.data.sample(data, 7, seed=3)
    assert old_subset.example_ids == new.example_ids and list(old_subset) == list(new)


def test_cli_reads_target_gold_as_label_with_a_notice(tmp_path, capsys):
    from attrflow.cli import build_parser, main
    from attrflow.cli import heads as heads_cli

    with pytest.warns(FutureWarning, match="is now spelled"):
        args = build_parser().parse_args(["heads", "--data", "x", "--out", "y", "--target", "gold"])
    assert args.target == "label" and heads_cli._target(args.target) == "label"
    assert heads_cli._target("predicted") == "predicted" and capsys.readouterr().err == ""
    assert build_parser().parse_args(["heads", "--data", "x", "--out", "y"]).target == "label"
    # from the command line, in the command line's words (printed as one line, see tests/e2e)
    with pytest.warns(FutureWarning, match="--target gold is now spelled --target label"):
        main(["heads", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o"), "--target", "gold"])
