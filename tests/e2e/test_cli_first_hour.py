"""The command line as a newcomer meets it: every expected failure is one line and exit status 1 before the work
starts, and the same words mean the same thing in every command.

Each test runs every command the class of failure applies to, not one example of it.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import attrflow
from attrflow.cli import build_parser, main
from attrflow.cli._common import model_for_data, split_list
from attrflow.testing import build, word_tokenizer

TEXTS = ["the movie was good", "a bad film", "the plot was boring", "the acting was great", "it was fun"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny-bert")
    build("bert", init_scale=0.2).save_pretrained(path)
    word_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.csv"
    path.write_text("text,label\n" + "".join(f"{t},{i % 3}\n" for i, t in enumerate(TEXTS * 2)))
    return path


@pytest.fixture
def no_model(monkeypatch):
    """Fail loudly if a command loads a model: the checks under test must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(attrflow.models.Model, "__init__", refuse)


def _commands(out: str, model_dir: Path, data_file: Path) -> dict[str, list[str]]:
    """Every subcommand that writes, with ``out`` as the place it writes to."""
    data = ["--model", str(model_dir), "--data", str(data_file)]
    return {
        "explain --out": ["explain", "a good film", "--model", str(model_dir), "--out", out],
        "explain --json": ["explain", "a good film", "--model", str(model_dir), "--json", out],
        "explain --save": ["explain", "a good film", "--model", str(model_dir), "--save", out],
        "evaluate": ["evaluate", *data, "--out", out],
        "heads": ["heads", *data, "--out", out],
        "attack": ["attack", *data, "--out", out],
        "demo": ["demo", "--out", out],
    }


# ---------------------------------------------------------------------------------------------- output paths
def _bad_outputs(tmp_path: Path) -> dict[str, tuple[str, str]]:
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("x")
    a_dir = tmp_path / "a-dir"
    a_dir.mkdir()
    return {
        "under /dev/null": ("/dev/null/x.html", "not a directory"),
        "under a file": (str(a_file / "x" / "y.html"), "not a directory"),
        "a directory": (str(a_dir), "directory"),
        "a file": (str(a_file), "directory"),
        "empty": ("", "empty"),
    }


def test_every_output_path_is_checked_before_any_work(tmp_path, model_dir, data_file, no_model, capsys) -> None:
    for case, (out, message) in _bad_outputs(tmp_path).items():
        for name, argv in _commands(out, model_dir, data_file).items():
            directory = name.split()[0] in ("evaluate", "heads", "attack", "demo")
            if (case == "a directory" and directory) or (case == "a file" and not directory):
                continue  # a directory is right for run directories, a file for files
            assert main(argv) == 1, (case, name)
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.startswith("attrflow: error: --"), (case, name, err)
            assert message in err and "Traceback" not in err, (case, name, err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_folder_is_refused_before_any_work(tmp_path, model_dir, data_file, no_model, capsys) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        for name, argv in _commands(str(locked / "out"), model_dir, data_file).items():
            assert main(argv) == 1, name
            assert "permission denied" in capsys.readouterr().err, name
    finally:
        locked.chmod(0o700)


def test_json_dash_writes_json_to_standard_output(model_dir, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["explain", "a good film", "--model", str(model_dir), "--steps", "2", "--json", "-"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)  # standard output is the JSON alone
    assert data["tokens"] == ["[CLS]", "a", "good", "film", "[SEP]"] and "attribution" in data
    assert "prediction:" in captured.err  # the summary went to standard error
    assert not (tmp_path / "-").exists()


# ---------------------------------------------------------------------------------------------- errors
def test_operating_system_errors_are_one_line(model_dir, tmp_path, capsys, monkeypatch) -> None:
    from attrflow.analysis.explanation import Explanation

    argv = ["explain", "a good film", "--model", str(model_dir), "--methods", "rollout", "--out", str(tmp_path / "r")]
    for exc in (
        OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "r")),
        PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "r")),
        MemoryError(),
    ):

        def fail(self, *args, exc=exc, **kwargs):
            raise exc

        monkeypatch.setattr(Explanation, "write", fail)
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert "No space left" in err or "Permission denied" in err or "out of memory" in err, err
        assert main(["-v", *argv]) == 1
        assert "Traceback" in capsys.readouterr().err  # -v shows where


def test_an_unexpected_error_says_it_is_a_bug_and_shows_its_traceback_with_v(model_dir, capsys, monkeypatch) -> None:
    from attrflow.analysis import explanation

    def broken(*args, **kwargs):
        raise TypeError("something attrflow did not expect")

    monkeypatch.setattr(explanation, "explain", broken)
    argv = ["explain", "a good film", "--model", str(model_dir)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "unexpected TypeError" in err and "-v" in err and "Traceback" not in err
    assert main(["-v", *argv]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_a_damaged_model_directory_is_one_line(model_dir, tmp_path, capsys) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in os.listdir(model_dir):
        (broken / name).write_bytes((model_dir / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    for argv in (
        ["explain", "a good film", "--model", str(broken)],
        ["explain", "a good film", "--model", str(model_dir), "--device", "nonsense"],
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("attrflow: error:") and "Traceback" not in err, err


def test_warnings_are_one_line_each(model_dir) -> None:
    """In a real process (no test harness recording warnings): each warning is one line on stderr."""
    argv = ["explain", "the zebra quantum plot", "--model", str(model_dir), "--methods", "rollout"]
    argv += ["--target", "0"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "attrflow", *argv], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line]
    assert lines and all(line.startswith("attrflow: warning: ") for line in lines), lines
    assert "'zebra', 'quantum'" in lines[0]


# ---------------------------------------------------------------------------------------------- one vocabulary
def _parse(*argv: str):
    return build_parser().parse_args(list(argv))


def test_list_options_take_commas_and_spaces_in_every_command() -> None:
    forms = (["attention,rollout"], ["attention", "rollout"], ["attention,", "rollout"], ["attention, rollout"])
    for form in forms:
        assert split_list(_parse("explain", "x", "--methods", *form).methods) == ["attention", "rollout"]
        assert split_list(_parse("evaluate", "--data", "d", "--out", "o", "--methods", *form).methods) == [
            "attention",
            "rollout",
        ]
    for form in (["attattr,taylor"], ["attattr", "taylor"]):
        parsed = _parse("heads", "--data", "d", "--out", "o", "--methods", *form).methods
        assert [m for item in parsed for m in item] == ["attattr", "taylor"]
    fractions = _parse("heads", "--data", "d", "--out", "o", "--fractions", "0", "0.5,1").fractions
    assert [f for item in fractions for f in item] == [0.0, 0.5, 1.0]
    bins = _parse("evaluate", "--data", "d", "--out", "o", "--bins", "0.5,1.0").bins
    assert split_list(bins) == ["0.5", "1.0"]


def test_target_words_are_the_same_in_every_dataset_command(capsys) -> None:
    for command in (["evaluate", "--data", "d", "--out", "o"], ["heads", "--data", "d", "--out", "o"]):
        assert _parse(*command).target == "label"
        assert _parse(*command, "--target", "predicted").target == "predicted"
        with pytest.warns(FutureWarning, match="now spelled"):
            assert _parse(*command, "--target", "gold").target == "label"
        with pytest.raises(SystemExit):
            _parse(*command, "--target", "prediction")
        assert "{label,predicted}" in build_parser()._subparsers._group_actions[0].choices[command[0]].format_help()  # type: ignore[union-attr]


def test_explain_target_takes_a_class_index_or_name(model_dir, capsys) -> None:
    argv = ["explain", "a good film", "--model", str(model_dir), "--methods", "attattr", "--steps", "2"]
    assert main([*argv, "--target", "2"]) == 0
    assert "explained: LABEL_2" in capsys.readouterr().out
    assert main([*argv, "--target", "label_1"]) == 0
    assert "explained: LABEL_1" in capsys.readouterr().out
    assert main([*argv, "--target", "positive"]) == 1
    assert "its classes are 0 (LABEL_0), 1 (LABEL_1), 2 (LABEL_2)" in capsys.readouterr().err


def test_data_file_hints_name_command_line_options(model_dir, tmp_path, capsys) -> None:
    unlabelled = tmp_path / "reviews.csv"
    unlabelled.write_text("review,stars\n" + "".join(f"{t},{i % 3}\n" for i, t in enumerate(TEXTS)))
    base = ["evaluate", "--model", str(model_dir), "--data", str(unlabelled), "--examples", "2"]
    base += ["--methods", "attention", "--no-figures", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "--label-column NAME" in err and "label=" not in err
    assert main([*base, "--label-column", "stars", "--out", str(tmp_path / "b")]) == 0
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("text,label\na good film,good\nthe movie,bad\nthe plot,1\n")
    for command in ("evaluate", "heads", "attack", "leaderboard"):
        assert main([command, "--model", str(model_dir), "--data", str(mixed), "--out", str(tmp_path / "c")]) == 1
        err = capsys.readouterr().err
        assert "line 4: label 1 is a class index" in err and "--label-names" in err, (command, err)
        assert not (tmp_path / "c").exists(), command  # nothing left behind


# ---------------------------------------------------------------------------------------------- models and data
def test_a_builtin_dataset_implies_its_builtin_model() -> None:
    assert model_for_data(None, "agreement") == "agreement"
    assert model_for_data(None, "tweets-sentiment") == "sentiment"
    assert model_for_data(None, "my.csv") == "sentiment"
    assert model_for_data("x", "agreement") == "x"
    for command in ("evaluate", "heads", "attack", "leaderboard"):
        assert _parse(command, "--data", "agreement", "--out", "o").model is None  # resolved by model_for_data


def test_every_dataset_command_refuses_a_model_trained_on_other_labels(tmp_path, capsys) -> None:
    for command in ("evaluate", "heads", "attack", "leaderboard"):
        out = tmp_path / command
        assert main([command, "--model", "sentiment", "--data", "agreement", "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert "(negative, positive)" in err and "(singular, plural)" in err and "--model agreement" in err, err
        assert not out.exists(), command  # refused before anything was written


def test_evaluate_on_agreement_uses_the_agreement_model(tmp_path, capsys) -> None:
    out = tmp_path / "eval"
    argv = ["evaluate", "--data", "agreement", "--examples", "4", "--methods", "attention", "--no-figures"]
    assert main([*argv, "--no-progress", "--steps", "2", "--threads", "1", "--out", str(out)]) == 0
    summary = json.loads((out / "faithfulness.json").read_text())
    assert summary["settings"]["model"] == "agreement"
    assert summary["settings"]["references"] == ["blankout", "gradient_l2"]  # the useful references by default
    assert not (out / ".lock").exists()


# ---------------------------------------------------------------------------------------------- run lock
def test_a_second_heads_run_on_the_same_out_is_refused_while_the_first_prunes(model_dir, data_file, tmp_path) -> None:
    """The first run is held inside pruning (after scoring) while a second process starts on the same --out."""
    out = tmp_path / "study"
    gate = tmp_path / "pruning-started"
    release = tmp_path / "release"
    script = f"""
import sys, time
from pathlib import Path
import attrflow.analysis.heads.study as study
original = study.prune_curve
def held(*args, **kwargs):
    Path({str(gate)!r}).touch()
    while not Path({str(release)!r}).exists():
        time.sleep(0.05)
    return original(*args, **kwargs)
study.prune_curve = held
from attrflow.cli import main
sys.exit(main(sys.argv[1:]))
"""
    argv = ["heads", "--model", str(model_dir), "--data", str(data_file), "--examples", "3", "--steps", "2"]
    argv += ["--fractions", "0,1", "--no-progress", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    first = subprocess.Popen([sys.executable, "-c", script, *argv], env=env, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(1200):
            if gate.exists() or first.poll() is not None:
                break
            import time

            time.sleep(0.1)
        assert gate.exists(), first.stderr.read() if first.stderr else ""
        second = subprocess.run([sys.executable, "-m", "attrflow", *argv], env=env, capture_output=True, text=True)
        assert second.returncode == 1 and "another attrflow run" in second.stderr, second.stderr
        assert not (out / "heads.json").exists()
    finally:
        release.touch()
        first.wait(timeout=300)
    assert first.returncode == 0
    assert json.loads((out / "heads.json").read_text())["settings"]["examples"] == 3


def test_a_refused_directory_is_left_as_it_was(model_dir, data_file, tmp_path, capsys) -> None:
    stranger = tmp_path / "mine"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("my notes")
    argv = ["heads", "--model", str(model_dir), "--data", str(data_file), "--out", str(stranger)]
    assert main([*argv, "--examples", "2", "--steps", "2", "--no-progress"]) == 1
    assert "not an attrflow run directory" in capsys.readouterr().err
    assert sorted(p.name for p in stranger.iterdir()) == ["notes.txt"]  # no lock file, nothing else


def test_the_demo_shows_progress_in_its_long_steps(monkeypatch, tmp_path) -> None:
    from attrflow import demo

    seen = {}

    def record(name):
        def fake(out, progress=False):
            seen[name] = progress
            return demo.DemoEntry(name, name, out / f"{name}.html", "")

        return fake

    monkeypatch.setattr(demo, "_explanation_page", lambda *a, **k: demo.DemoEntry("s", "t", tmp_path / "t.html", ""))
    monkeypatch.setattr(demo, "_agreement_sentence", lambda: "the dog")
    for name in ("_faithfulness_page", "_heads_page", "_attack_page"):
        monkeypatch.setattr(demo, name, record(name))
    assert main(["demo", "--out", str(tmp_path)]) == 0
    assert seen == {"_faithfulness_page": True, "_heads_page": True, "_attack_page": True}
    assert main(["demo", "--out", str(tmp_path), "--no-progress"]) == 0
    assert not any(seen.values())


def test_every_dataset_command_and_function_samples_the_same_way_by_default() -> None:
    """One rule: a seeded random sample (seed 0) by default everywhere; the built-in splits are sorted by label."""
    import inspect

    for command, flags in (
        ("evaluate", ("selection",)),
        ("heads", ("selection",)),
        ("attack", ("mine_selection", "eval_selection")),
    ):
        parsed = _parse(command, "--data", "d", "--out", "o")
        assert all(getattr(parsed, flag) == "random" for flag in flags) and parsed.seed == 0, command
    for function in (
        attrflow.faithfulness,
        attrflow.head_importance,
        attrflow.analyze_heads,
        attrflow.mine_patterns,
        attrflow.attack,
    ):
        parameters = inspect.signature(function).parameters
        assert parameters["selection"].default == "random" and parameters["seed"].default == 0, function.__name__


def test_the_papers_gradient_reference_is_named_noise_once(model_dir, data_file, tmp_path, capsys) -> None:
    argv = ["evaluate", "--model", str(model_dir), "--data", str(data_file), "--examples", "2", "--methods"]
    argv += ["attention", "--references", "gradient", "--no-figures", "--no-progress", "--out", str(tmp_path / "e")]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("rounding noise") == 1
