"""The data loader blames the right line and names options the way the caller types them."""

from __future__ import annotations

import json

import pytest

import attrflow
from attrflow.cli._common import CLI_SPELLING
from attrflow.errors import InvalidInputError
from attrflow.validation import option_hint, option_spelling


def _csv(tmp_path, labels: list[str], name: str = "data.csv"):
    path = tmp_path / name
    path.write_text("text,label\n" + "".join(f"text {i},{label}\n" for i, label in enumerate(labels)))
    return path


@pytest.mark.parametrize(
    ("labels", "line", "what"),
    [
        (["positive", "negative", "1", "positive"], 4, "label 1 is a class index"),  # an index among names
        (["0", "1", "positive", "0"], 4, "label 'positive' is a class name"),  # a name among indices
        (["0", "positive", "1", "1", "0"], 3, "label 'positive' is a class name"),
        (["good", "bad", "good", "2", "bad", "7"], 5, "label 2 is a class index"),
    ],
)
def test_mixed_labels_blame_the_odd_line(tmp_path, labels, line, what) -> None:
    with pytest.raises(InvalidInputError, match=rf"line {line}: {what}"):
        attrflow.load_dataset(_csv(tmp_path, labels))


def test_hints_use_python_keywords_from_python_and_options_from_the_command_line(tmp_path) -> None:
    no_label = tmp_path / "reviews.csv"
    no_label.write_text("review,stars\nnice,5\n")
    mixed = _csv(tmp_path, ["good", "1"], "mixed.csv")
    odd = tmp_path / "data.txt"
    odd.write_text("text,label\na,1\n")
    cases = [
        (no_label, {}, "label=NAME", "--label-column NAME"),
        (no_label, {"text": "body"}, "text=...", "--text-column NAME"),
        (mixed, {}, "label_names=[...]", "--label-names A,B,..."),
        (odd, {}, "format='csv', 'tsv' or 'jsonl'", "--format csv"),
        ("agreement", {"label": "x"}, "label=", "--label-column"),
    ]
    for path, options, python, cli in cases:
        with pytest.raises(InvalidInputError) as from_python:
            attrflow.load_dataset(path, **options)
        assert python in str(from_python.value), str(from_python.value)
        with option_spelling(CLI_SPELLING), pytest.raises(InvalidInputError) as from_cli:
            attrflow.load_dataset(path, **options)
        assert cli in str(from_cli.value) and python not in str(from_cli.value), str(from_cli.value)


def test_option_hint_spells_a_keyword_in_the_callers_words() -> None:
    assert option_hint("device", "'cpu'", cli="cpu") == "device='cpu'"
    with option_spelling({"device": "--device"}):
        assert option_hint("device", "'cpu'", cli="cpu") == "--device cpu"
        assert option_hint("steps", "4") == "steps=4"  # not a command-line option: the keyword
        with option_spelling({"steps": "--steps"}):
            assert option_hint("steps", "4") == "--steps 4" and option_hint("device", "x") == "--device x"
    assert option_hint("device", "'cpu'") == "device='cpu'"


@pytest.mark.parametrize("text", ["\u200b", "\x00\x01", "\ufeff\u200d", "   "])
def test_a_content_free_text_in_a_file_is_refused_at_its_line(tmp_path, text: str) -> None:
    path = tmp_path / "data.jsonl"
    rows = [{"text": "a good film", "label": 1}, {"text": text, "label": 0}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(InvalidInputError, match=r"line 2: (empty|content-free .*) text in column"):
        attrflow.load_dataset(path)
