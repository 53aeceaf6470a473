"""Dataset loading: the built-in tweets (split rule checked against an independent pandas read), users' files
(CSV, TSV in the GLUE formats, JSON Lines) and the error messages for bad files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import attrflow
from attrflow.data import UNLABELLED, Dataset, Example, load_dataset, split_of
from attrflow.data._builtin import tweets_corpus_path
from attrflow.errors import InvalidInputError

# ---------------------------------------------------------------------------------------------------- types


def _toy() -> Dataset:
    examples = [Example(text=f"t{i}", label=i % 3, meta={"line": i + 2}) for i in range(10)]
    return Dataset(examples, label_names=("a", "b", "c"), name="toy", split="test")


def test_dataset_sequence_protocol():
    data = _toy()
    assert len(data) == 10
    assert data[3].text == "t3" and data[-1].text == "t9"
    part = data[2:5]
    assert isinstance(part, Dataset)
    assert part.texts == ["t2", "t3", "t4"]
    assert part.label_names == ("a", "b", "c") and part.split == "test" and part.name == "toy"
    assert [e.text for e in data[::4]] == ["t0", "t4", "t8"]
    assert data.label_counts() == {"a": 4, "b": 3, "c": 3}
    assert data.filter(lambda e: e.label == 2).texts == ["t2", "t5", "t8"]
    assert data.is_labelled


def test_dataset_frame_has_label_names_and_meta():
    frame = _toy().to_frame()
    assert list(frame.columns[:4]) == ["text", "text_pair", "label", "label_name"]
    assert frame.loc[4, "label_name"] == "b"
    assert frame.loc[4, "line"] == 6


def test_dataset_rejects_label_outside_names():
    with pytest.raises(InvalidInputError, match="outside the label names"):
        Dataset([Example("x", label=2)], label_names=("a", "b"), name="bad")


def test_example_equality_ignores_meta():
    assert Example("x", label=1, meta={"line": 3}) == Example("x", label=1, meta={"line": 9})
    assert hash(Example("x", label=1, meta={"line": 3})) == hash(Example("x", label=1))


def test_public_exports():
    assert attrflow.load_dataset is load_dataset
    assert attrflow.Dataset is Dataset and attrflow.Example is Example


# ---------------------------------------------------------------------------------------------- built-ins


@pytest.fixture(scope="module")
def tweets_oracle() -> pd.DataFrame:
    """The kept tweets read independently with pandas, in file order."""
    frame = pd.read_csv(tweets_corpus_path(), encoding="latin-1", keep_default_na=False)
    kept = frame[frame["sentiment"].isin(["negative", "positive"])].reset_index(drop=True)
    kept["label"] = (kept["sentiment"] == "positive").astype(int)
    return kept


def test_split_rule():
    assert [split_of(i) for i in range(12)] == ["test", "validation"] + ["train"] * 8 + ["test", "validation"]


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_tweet_splits_follow_the_rule_exactly(split, tweets_oracle):
    data = load_dataset("tweets-sentiment", split=split)
    positions = [i for i in range(len(tweets_oracle)) if split_of(i) == split]
    assert [e.meta["index"] for e in data] == positions
    assert data.texts == tweets_oracle["text"].iloc[positions].tolist()
    assert data.labels == tweets_oracle["label"].iloc[positions].tolist()
    assert data.label_names == ("negative", "positive")


def test_tweet_splits_are_disjoint_and_cover_the_corpus(tweets_oracle):
    whole = load_dataset("tweets-sentiment")
    assert len(whole) == len(tweets_oracle) == 16186 + 6954
    indices = {
        s: {e.meta["index"] for e in load_dataset("tweets-sentiment", split=s)} for s in ("train", "validation", "test")
    }
    assert indices["train"].isdisjoint(indices["test"]) and indices["train"].isdisjoint(indices["validation"])
    assert indices["test"].isdisjoint(indices["validation"])
    assert set().union(*indices.values()) == set(range(len(whole)))
    assert whole.label_counts() == {"negative": 16186, "positive": 6954}


def test_agreement_dataset_splits():
    test = load_dataset("agreement", split="test")
    validation = load_dataset("agreement", split="validation")
    train = load_dataset("agreement", split="train")
    assert len(test) >= 2000
    assert all(e.meta["index"] % 10 == 0 for e in test) and all(e.meta["index"] % 10 == 1 for e in validation)
    assert set(test.texts).isdisjoint(train.texts) and set(validation.texts).isdisjoint(train.texts)
    assert set(test.texts).isdisjoint(validation.texts)
    assert test.label_names == ("singular", "plural")
    assert sum(e.meta["attractors"] > 0 for e in test) >= 1000


def test_builtin_errors():
    with pytest.raises(InvalidInputError, match="built-in datasets are tweets-sentiment, agreement"):
        load_dataset("no-such-dataset")
    with pytest.raises(InvalidInputError, match="split must be one of"):
        load_dataset("agreement", split="dev")
    with pytest.raises(InvalidInputError, match="columns and labels are fixed"):
        load_dataset("tweets-sentiment", text="tweet")


# --------------------------------------------------------------------------------------------- user files


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_csv_with_column_mapping(tmp_path):
    path = _write(tmp_path / "r.csv", 'id,review,stars\n1,"good, really",pos\n2,"bad\nvery bad",neg\n3,fine,pos\n')
    data = load_dataset(path, text="review", label="stars")
    assert data.texts == ["good, really", "bad\nvery bad", "fine"]
    assert data.label_names == ("neg", "pos")  # unknown name sets are sorted
    assert data.labels == [1, 0, 1]
    assert [e.meta["line"] for e in data] == [2, 3, 5]  # a quoted newline spans two lines
    assert data[0].text_pair is None


def test_csv_label_names_given_fix_the_order(tmp_path):
    path = _write(tmp_path / "r.csv", "text,label\na,pos\nb,neg\n")
    assert load_dataset(path, label_names=["pos", "neg"]).labels == [0, 1]


def test_glue_sst2_tsv(tmp_path):
    path = _write(tmp_path / "dev.tsv", "sentence\tlabel\nit 's a charming \" journey \t1\nunfunny \t0\n")
    data = load_dataset(path)
    assert data.texts == ["it 's a charming \" journey ", "unfunny "]  # no quote processing in GLUE TSV
    assert data.labels == [1, 0]
    assert data.label_names == ("negative", "positive")


MNLI_HEADER = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
    "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label"
)


def test_glue_mnli_tsv(tmp_path):
    rows = [
        '0\t31193\t31193n\tgovernment\t( ( x ) )\t( y )\t(ROOT x)\t(ROOT y)\tThe "new" rights are nice\tEveryone hates them\tneutral\tneutral',
        '1\t1\t1e\tfiction\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tHe said "hi\tHe spoke\tentailment\tentailment',
        "2\t2\t2c\tfiction\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tIt rained\tIt was dry\tcontradiction\tcontradiction",
    ]
    path = _write(tmp_path / "dev_matched.tsv", "\n".join([MNLI_HEADER, *rows]) + "\n")
    data = load_dataset(path)
    assert data[1].text == 'He said "hi' and data[1].text_pair == "He spoke"
    assert data.label_names == ("entailment", "neutral", "contradiction")
    assert data.labels == [1, 0, 2]


def test_glue_rte_and_mrpc(tmp_path):
    rte = _write(tmp_path / "rte.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA man sleeps.\tA man rests.\tentailment\n"
                 "1\tIt is red.\tIt is blue.\tnot_entailment\n")  # fmt: skip
    data = load_dataset(rte)
    assert (data[0].text, data[0].text_pair) == ("A man sleeps.", "A man rests.")
    assert data.label_names == ("entailment", "not_entailment") and data.labels == [0, 1]

    mrpc = _write(tmp_path / "train.tsv", "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                  "1\t702876\t702977\tAmrozi accused his brother\tReferring to him\n0\t1\t2\tA \"b\tC\n")  # fmt: skip
    data = load_dataset(mrpc)
    assert data.texts == ["Amrozi accused his brother", 'A "b']
    assert data.text_pairs == ["Referring to him", "C"]
    assert data.labels == [1, 0] and data.label_names == ("not_equivalent", "equivalent")


def test_directory_with_split(tmp_path):
    _write(tmp_path / "train.tsv", "sentence\tlabel\na\t1\n")
    _write(tmp_path / "dev_matched.tsv", "sentence\tlabel\nb\t0\n")
    assert load_dataset(tmp_path, split="validation").texts == ["b"]
    assert load_dataset(tmp_path, split="train").split == "train"
    with pytest.raises(InvalidInputError, match="no file for split 'test'"):
        load_dataset(tmp_path, split="test")
    with pytest.raises(InvalidInputError, match="is a directory"):
        load_dataset(tmp_path)


def test_jsonl_with_pairs_and_integer_labels(tmp_path):
    lines = [{"premise": "p1", "hypothesis": "h1", "label": 2}, {"premise": "p2", "hypothesis": "h2", "label": 0}]
    path = _write(tmp_path / "nli.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    data = load_dataset(path)
    assert data.text_pairs == ["h1", "h2"] and data.labels == [2, 0]
    assert data.label_names == ("0", "1", "2")


def test_headerless_columns_by_position(tmp_path):
    path = _write(tmp_path / "cola.tsv", "gj04\t1\t\tThe book was read.\ngj04\t0\t*\tBook the read.\n")
    data = load_dataset(path, header=False, text=3, label=1, label_names=["unacceptable", "acceptable"])
    assert data.texts == ["The book was read.", "Book the read."] and data.labels == [1, 0]


def test_unlabelled_file(tmp_path):
    path = _write(tmp_path / "test.tsv", "index\tsentence\n0\ta film\n1\tanother\n")
    data = load_dataset(path, label=None)
    assert data.labels == [UNLABELLED, UNLABELLED] and not data.is_labelled


def test_explicit_text_column_means_no_pair(tmp_path):
    path = _write(tmp_path / "p.csv", "sentence1,sentence2,label\na,b,0\n")
    assert load_dataset(path, text="sentence1")[0].text_pair is None
    assert load_dataset(path, text="sentence1", text_pair="sentence2")[0].text_pair == "b"


# ------------------------------------------------------------------------------------------------- errors


def test_error_missing_column_names_file_and_line(tmp_path):
    path = _write(tmp_path / "r.csv", "text,stars\na,1\n")
    with pytest.raises(
        InvalidInputError, match=r"r\.csv, line 1: no column 'label' for label \(columns: 'text', 'stars'\)"
    ):
        load_dataset(path, label="label")
    with pytest.raises(InvalidInputError, match=r"r\.csv, line 1: cannot tell which column holds the label"):
        load_dataset(path)


def test_error_unknown_label_names_line(tmp_path):
    path = _write(tmp_path / "r.tsv", "sentence\tlabel\na\tpositive\nb\tnegative\nc\tpostive\n")
    with pytest.raises(InvalidInputError, match=r"r\.tsv, line 4: unknown label 'postive'"):
        load_dataset(path, label_names=["negative", "positive"])
    mixed = _write(tmp_path / "m.csv", "text,label\na,neg\nb,1\n")
    with pytest.raises(InvalidInputError, match=r"m\.csv, line 3: label 1 is a class index"):
        load_dataset(mixed)


def test_error_undecodable_bytes(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\nfine,0\ncaf\u00e9,1\n".encode("latin-1"))
    with pytest.raises(InvalidInputError, match=r"latin\.csv, line 3: byte b'\\xe9' at column 4 is not valid utf-8"):
        load_dataset(path)
    assert load_dataset(path, encoding="latin-1")[1].text == "caf\u00e9"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the file is empty"),
        ("  \n\n", "the file is empty"),
        ("text,label\n", "the file has a header \\(line 1\\) but no rows"),
    ],
)
def test_error_empty_files(tmp_path, content, message):
    path = _write(tmp_path / "e.csv", content)
    with pytest.raises(InvalidInputError, match=rf"e\.csv: {message}"):
        load_dataset(path)


def test_error_ragged_rows_and_empty_text(tmp_path):
    path = _write(tmp_path / "r.tsv", "sentence\tlabel\na\t1\nb\t0\textra\n")
    with pytest.raises(InvalidInputError, match=r"r\.tsv, line 3: 3 fields where the header has 2"):
        load_dataset(path)
    path = _write(tmp_path / "e.csv", "text,label\na,1\n,0\n")
    with pytest.raises(InvalidInputError, match=r"e\.csv, line 3: empty text in column 'text'"):
        load_dataset(path)


def test_error_bad_jsonl(tmp_path):
    path = _write(tmp_path / "x.jsonl", '{"text": "a", "label": 0}\n{"text": "b", "label": 1,}\n')
    with pytest.raises(InvalidInputError, match=r"x\.jsonl, line 2: not valid JSON"):
        load_dataset(path)
    path = _write(tmp_path / "y.jsonl", '{"text": "a", "label": 0}\n{"label": 1}\n')
    with pytest.raises(InvalidInputError, match=r"y\.jsonl, line 2: no value for text column 'text'"):
        load_dataset(path)
    path = _write(tmp_path / "z.jsonl", '[{"text": "a", "label": 0}]\n')
    with pytest.raises(InvalidInputError, match="write one object per line"):
        load_dataset(path)


def test_error_unknown_format_and_missing_file(tmp_path):
    path = _write(tmp_path / "data.xlsx", "x")
    with pytest.raises(InvalidInputError, match="pass format='csv', 'tsv' or 'jsonl'"):
        load_dataset(path)
    with pytest.raises(InvalidInputError, match="no built-in dataset and no file named"):
        load_dataset(tmp_path / "missing.csv")
