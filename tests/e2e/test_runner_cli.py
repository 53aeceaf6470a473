"""The shared dataset-run options and ``attrflow run-info``."""

from __future__ import annotations

import argparse
import json
from typing import get_args

import pyarrow.parquet as pq
import pytest

from attrflow.cli import main
from attrflow.cli._common import add_attribution_options
from attrflow.cli._run_options import ENGINES, add_run_arguments, run_options
from attrflow.runner import Engine, run_dataset
from runner_tasks import ArithmeticTask, make_dataset


def test_run_options_parse_into_run_dataset_keywords(tmp_path):
    assert get_args(Engine) == ENGINES
    parser = argparse.ArgumentParser()
    add_run_arguments(parser, examples_per_batch=4)
    add_attribution_options(parser)  # no clash with the attribution options
    args = parser.parse_args(["--out", str(tmp_path / "run"), "--no-progress"])
    options = run_options(args)
    assert options == {
        "out_dir": str(tmp_path / "run"),
        "engine": "local",
        "address": None,
        "num_workers": None,
        "batch_size": 4,
        "progress": False,
    }
    result = run_dataset(ArithmeticTask(), make_dataset(5), **options)
    assert result.complete
    args = parser.parse_args(["--out", "x", "--engine", "ray", "--address", "h:6379", "--num-workers", "3"])
    assert run_options(args)["engine"] == "ray" and run_options(args)["num_workers"] == 3
    args = parser.parse_args(["--out", "x", "--examples-per-batch", "16", "--batch-size", "32"])
    assert (run_options(args)["batch_size"], args.batch_size) == (16, 32)
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "x", "--engine", "spark"])


def test_run_info_reports_progress_and_consolidates(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        run_dataset(ArithmeticTask(fail_on=[6]), make_dataset(9), out_dir=out, progress=False, examples_per_batch=2)
    assert main(["run-info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "6 of 9 examples done (incomplete: run the same command again to continue)" in text
    assert '"scale": 1.0' in text and "ArithmeticTask" in text

    assert main(["run-info", str(out), "--json", "--consolidate"]) == 0
    printed = capsys.readouterr().out
    meta = json.loads(printed[: printed.rindex("}") + 1])
    assert meta["num_done"] == 6 and meta["settings"]["scale"] == 1.0
    assert pq.read_table(out / "examples.parquet").num_rows == 6

    assert main(["run-info", str(tmp_path)]) == 1
    assert "not an attrflow run directory" in capsys.readouterr().err
