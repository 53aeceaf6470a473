"""The command line: each subcommand is a thin layer over the public API."""

from __future__ import annotations

import json

import pytest

import attrflow
from attrflow.cli import build_parser, main
from attrflow.testing import build, word_tokenizer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-bert")
    build("bert", init_scale=0.2).save_pretrained(path)
    word_tokenizer().save_pretrained(path)
    return path


def test_help_of_every_subcommand_is_useful(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--help"])
    assert exit_info.value.code == 0
    subcommands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    listed = capsys.readouterr().out
    for name, sub in subcommands.items():
        # every subcommand is listed with a one-line help in `attrflow --help`
        assert name in listed and sub.description, name
        text = sub.format_help()
        # and documents every option it accepts, each with its own help text
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings[0]} has no help"
                assert action.option_strings[-1] in text, f"{name}: {action.option_strings[-1]} missing from --help"


def test_explain_prints_prediction_and_writes_json(model_dir, tmp_path, capsys):
    out = tmp_path / "result.json"
    code = main(
        [
            "explain",
            "the movie was not good",
            "--model",
            str(model_dir),
            "--top",
            "4",
            "--steps",
            "3",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "prediction:" in printed and "strongest interactions" in printed
    assert printed.count("[CLS]") >= 1
    data = json.loads(out.read_text())
    assert data["tokens"] == ["[CLS]", "the", "movie", "was", "not", "good", "[SEP]"]
    assert data["attribution"]["settings"]["steps"] == 3
    assert len(data["attribution"]["attributions"]) == 3  # layers
    assert set(data["methods"]) == {"attattr", "attention", "rollout", "flow"}
    assert len(data["methods"]["rollout"]["overall"]) == 7


def test_explain_save_roundtrip(model_dir, tmp_path):
    out = tmp_path / "r.safetensors"
    assert main(["explain", "a good film", "--model", str(model_dir), "--steps", "2", "--save", str(out)]) == 0
    assert attrflow.load_result(out).tokens == ("[CLS]", "a", "good", "film", "[SEP]")


def test_explain_errors_are_clear(model_dir, capsys):
    assert main(["explain", "x", "--model", "/no/such/dir"]) == 1
    assert "never downloads" in capsys.readouterr().err
    assert main(["explain", "   ", "--model", str(model_dir)]) == 1
    assert "empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["explain", "x", "--steps", "0"])


def test_explain_writes_report_with_every_method(model_dir, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["explain", "the movie was great", "--model", str(model_dir), "--steps", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rollout:" in printed and "flow:" in printed and str(out) in printed
    page = out.read_text()
    for method in ("attattr", "attention", "rollout", "flow"):
        assert f'data-method="{method}"' in page
    assert "Attribution tree" in page


def test_explain_without_attattr_is_attention_only(model_dir, tmp_path, capsys):
    out = tmp_path / "att.html"
    args = ["explain", "the movie was great", "--model", str(model_dir), "--methods", "rollout,flow", "--out", str(out)]
    assert main(args) == 0
    assert "strongest interactions" not in capsys.readouterr().out
    assert out.exists()
    assert main([*args[:-2], "--save", str(tmp_path / "x.safetensors")]) == 1
    assert "include attattr" in capsys.readouterr().err
    assert main(["explain", "x", "--model", str(model_dir), "--methods", "lime"]) == 1
    assert "unknown method 'lime'" in capsys.readouterr().err


def test_leaderboard_writes_every_output_and_resumes(model_dir, tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    texts = ["the movie was good", "a boring plot", "it is not very good but fun", "the acting was terrible"]
    data.write_text("".join(json.dumps({"text": t, "label": i % 2}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "board"
    args = ["leaderboard", "--model", str(model_dir), "--data", str(data), "--methods", "rollout,attention"]
    args += ["--sanity-examples", "2", "--sanity-depths", "full", "--timing-examples", "1", "--no-tree"]
    args += ["--no-figures", "--no-progress", "--threads", "1", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "Leaderboard: 4 examples" in printed and "random, position" in printed
    board = json.loads((out / "leaderboard.json").read_text())
    assert set(board["methods"]) == {"rollout", "attention", "random", "position", "blankout", "gradient_l2"}
    assert board["sanity"]["depths"] == [3] and board["naopc"]["exact"] == 4
    for name in ("leaderboard.html", "leaderboard.md", "leaderboard.parquet", "leaderboard.safetensors"):
        assert (out / name).is_file()
    assert main(args) == 0  # the run directory is complete: nothing is recomputed
    assert json.loads((out / "leaderboard.json").read_text())["methods"] == board["methods"]
