"""The dataset runner with the local engine: records, batching invariance, resume, refusal, damage."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import attrflow
from attrflow.errors import (
    InvalidInputError,
    MissingDependencyError,
    ResultFormatError,
    RunLockedError,
    RunMismatchError,
)
from attrflow.runner import DatasetTask, open_run, run_dataset
from attrflow.runner._store import RunStore
from runner_tasks import ArithmeticTask, TinyTorchTask, expected_record, make_dataset

N = 23


def _run(out: Path, task: DatasetTask | None = None, dataset: object = None, **options: object):
    options.setdefault("progress", False)
    return run_dataset(
        task if task is not None else ArithmeticTask(),
        dataset if dataset is not None else make_dataset(N),
        out_dir=out,
        **options,  # type: ignore[arg-type]
    )


def _parts(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("part-*.parquet"))


def test_records_match_an_independent_oracle(tmp_path):
    dataset = make_dataset(N)
    result = _run(tmp_path / "run", examples_per_batch=4)
    assert (result.num_examples, result.num_done, result.num_processed, result.complete) == (N, N, N, True)
    table = result.read_table()
    assert table.schema.names[0] == "example_id"
    assert table.column("example_id").to_pylist() == list(range(N))
    for row, example in zip(table.to_pylist(), dataset, strict=True):
        want = expected_record(example, 1.0)
        assert row["tokens"] == want["tokens"]
        assert row["label"] == want["label"] == example.label
        assert row["probability"] == want["probability"]
        np.testing.assert_array_equal(np.float32(row["head_max"]), np.float32(want["head_max"]))
        assert [(t["layer"], t["head"]) for t in row["top"]] == [(t["layer"], t["head"]) for t in want["top"]]
        assert row["pair"] == example.text_pair
    frame = result.to_pandas(columns=["probability"])
    assert list(frame.columns) == ["example_id", "probability"]
    assert frame["probability"].tolist() == table.column("probability").to_pylist()


def test_table_does_not_depend_on_batch_size_or_part_size(tmp_path):
    one = _run(tmp_path / "a", examples_per_batch=1, part_rows=1).read_table()
    many = _run(tmp_path / "b", examples_per_batch=7, part_rows=1000).read_table()
    assert len(_parts(tmp_path / "a")) == N
    assert len(_parts(tmp_path / "b")) == 1
    assert one.equals(many)


def test_torch_task_is_batch_size_invariant(tmp_path):
    small = _run(tmp_path / "a", TinyTorchTask(), examples_per_batch=1).read_table()
    large = _run(tmp_path / "b", TinyTorchTask(), examples_per_batch=16).read_table()
    np.testing.assert_allclose(
        np.stack(small.column("probabilities").to_numpy(zero_copy_only=False)),
        np.stack(large.column("probabilities").to_numpy(zero_copy_only=False)),
        atol=1e-6,
    )
    assert small.column("prediction").equals(large.column("prediction"))


def test_failed_run_keeps_its_results_and_resumes_to_the_same_table(tmp_path):
    reference = _run(tmp_path / "ref").read_table()
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="planned failure on example 13"):
        _run(out, ArithmeticTask(fail_on=[13]), examples_per_batch=2, part_rows=3)
    stored = open_run(out)
    assert stored.num_done == 12  # batches before the failing one (12, 13) were all stored
    assert not stored.complete
    assert stored.read_table().column("example_id").to_pylist() == list(range(12))
    resumed = _run(out, examples_per_batch=5)
    assert (resumed.num_processed, resumed.num_done) == (N - 12, N)
    assert resumed.read_table().equals(reference)


def test_keyboard_interrupt_stores_what_was_computed(tmp_path):
    class Interrupted(ArithmeticTask):
        def process(self, batch):
            if any(example_id == 9 for example_id, _ in batch):
                raise KeyboardInterrupt
            return super().process(batch)

        @property
        def name(self) -> str:
            return "ArithmeticTask"

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _run(out, Interrupted(), examples_per_batch=3, checkpoint_seconds=3600)
    assert open_run(out).num_done == 9
    assert _run(out).read_table().equals(_run(tmp_path / "ref").read_table())


def test_finished_run_started_again_computes_nothing(tmp_path):
    out = tmp_path / "run"
    _run(out, part_rows=5)
    parts = _parts(out)
    again = _run(out, ArithmeticTask(fail_on=range(N)))  # would raise if it computed anything
    assert (again.num_processed, again.num_done, again.complete) == (0, N, True)
    assert _parts(out) == parts

    class NoSetup(ArithmeticTask):
        @property
        def name(self) -> str:
            return "ArithmeticTask"

        def setup(self) -> None:
            raise AssertionError("a finished run must not load a model or start an engine")

    assert _run(out, NoSetup(), engine="ray", num_workers=2).num_processed == 0


def test_different_settings_refuse_to_mix(tmp_path):
    out = tmp_path / "run"
    _run(out, ArithmeticTask(scale=1.0))
    with pytest.raises(RunMismatchError) as info:
        _run(out, ArithmeticTask(scale=2.0))
    message = str(info.value)
    assert "settings.scale: recorded 1.0, now 2.0" in message
    assert "--out" in message and "delete" in message
    assert "model" not in message  # only the differing keys are named
    assert open_run(out).read_table().equals(_run(tmp_path / "ref").read_table())  # untouched


def test_another_dataset_refuses_to_mix(tmp_path):
    out = tmp_path / "run"
    _run(out, dataset=make_dataset(N))
    with pytest.raises(RunMismatchError, match=r"dataset\.fingerprint"):
        _run(out, dataset=make_dataset(N, seed=1))
    with pytest.raises(RunMismatchError, match=r"dataset\.num_examples: recorded 23, now 24"):
        _run(out, dataset=make_dataset(N + 1))


def test_another_schema_refuses_to_mix(tmp_path):
    class Wider(ArithmeticTask):
        @property
        def name(self) -> str:
            return "ArithmeticTask"

        def schema(self):
            return super().schema().append(pa.field("extra", pa.int64()))

        def process(self, batch):
            return [{**r, "extra": 1} for r in super().process(batch)]

    out = tmp_path / "run"
    _run(out)
    with pytest.raises(RunMismatchError, match=r"columns\.extra: not recorded"):
        _run(out, Wider())


def test_run_metadata_is_recorded(tmp_path):
    result = _run(tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["attrflow_version"] == attrflow.__version__
    assert meta["task"] == "ArithmeticTask"
    assert meta["settings"] == {"model": "arithmetic", "scale": 1.0, "steps": 20}
    assert meta["dataset"]["num_examples"] == N and len(meta["dataset"]["fingerprint"]) == 64
    assert meta["columns"]["head_max"] == "list<item: float>"
    assert result.settings == meta["settings"]
    assert result.schema.names == ["example_id", *ArithmeticTask().schema().names]


def test_consolidate_writes_one_sorted_file_with_metadata(tmp_path):
    result = _run(tmp_path / "run", examples_per_batch=3, part_rows=4)
    path = result.consolidate()
    assert path == tmp_path / "run" / "examples.parquet"
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"attrflow.run"])
    assert meta["settings"]["scale"] == 1.0
    assert table.replace_schema_metadata(None).equals(result.read_table())
    # the consolidated file does not disturb a resumed run
    assert _run(tmp_path / "run").num_processed == 0


def test_dataset_example_ids_are_used(tmp_path):
    class Subset(list):
        example_ids = (100, 3, 57)

    data = make_dataset(N)
    subset = Subset([data[0], data[1], data[2]])
    table = _run(tmp_path / "run", dataset=subset).read_table()
    assert table.column("example_id").to_pylist() == [3, 57, 100]
    assert table.column("tokens").to_pylist() == [data[1].text.split(), data[2].text.split(), data[0].text.split()]

    class Bad(list):
        example_ids = (1, 1, 2)

    with pytest.raises(InvalidInputError, match="unique"):
        _run(tmp_path / "bad", dataset=Bad(subset))


def test_dataset_fingerprint_attribute_replaces_hashing(tmp_path):
    class Named(list):
        fingerprint = "sst2-dev-v1"

    _run(tmp_path / "run", dataset=Named(make_dataset(N)))
    meta = open_run(tmp_path / "run").metadata
    assert meta["dataset"] == {"num_examples": N, "fingerprint": "sst2-dev-v1"}


def test_unfingerprintable_examples_warn_and_still_run(tmp_path, caplog):
    class Opaque:
        def __init__(self, text: str) -> None:
            self.text = text
            self.text_pair = None
            self.label = object()  # no value semantics

    class Length(DatasetTask):
        def settings(self):
            return {}

        def schema(self):
            return pa.schema([("n", pa.int64())])

        def process(self, batch):
            return [{"n": len(ex.text)} for _, ex in batch]

    with caplog.at_level(logging.WARNING, logger="attrflow.runner"):
        result = _run(tmp_path / "run", Length(), dataset=[Opaque("ab"), Opaque("abc")])
    assert "cannot be fingerprinted" in caplog.text
    assert result.read_table().column("n").to_pylist() == [2, 3]
    assert result.metadata["dataset"]["fingerprint"] is None


def test_leftover_temporary_files_are_removed(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        _run(out, ArithmeticTask(fail_on=[10]))
    tmp = out / ".part-000099.parquet.12345.tmp"
    tmp.write_bytes(b"half a parquet file")
    result = _run(out)
    assert not tmp.exists()
    assert result.complete
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []

    # killed while writing run.json: only the lock and a temporary file are there, and the run starts afresh
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ".lock").write_text("4242")
    (fresh / ".run.json.4242.tmp").write_text('{"format": "attrf')
    assert _run(fresh).read_table().equals(result.read_table())


def test_damaged_part_is_reported_clearly(tmp_path):
    out = tmp_path / "run"
    _run(out, part_rows=5)
    (out / "part-000002.parquet").write_bytes(b"not parquet")
    with pytest.raises(ResultFormatError, match=r"part-000002\.parquet cannot be read.*Delete this file"):
        _run(out)
    (out / "part-000002.parquet").unlink()
    result = _run(out)  # the lost examples are computed again
    assert result.num_processed == 5
    assert result.read_table().equals(_run(tmp_path / "ref").read_table())


def test_directory_that_is_not_a_run_is_refused(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ResultFormatError, match=r"not an attrflow run directory.*notes\.txt"):
        _run(out)
    with pytest.raises(ResultFormatError, match="no run.json"):
        open_run(out)


def test_a_second_writer_is_refused(tmp_path):
    out = tmp_path / "run"
    _run(out)
    with RunStore.open(out, dict(open_run(out).metadata)), pytest.raises(RunLockedError, match="another attrflow"):
        _run(out)
    assert _run(out).num_processed == 0  # the lock went with the store that held it


def test_records_that_do_not_fit_are_refused(tmp_path):
    class Task(DatasetTask):
        def __init__(self, mode: str) -> None:
            self.mode = mode

        def settings(self):
            return {"mode": self.mode}

        def schema(self):
            return pa.schema([("x", pa.float64())])

        def process(self, batch):
            if self.mode == "count":
                return [{"x": 1.0}]
            if self.mode == "keys":
                return [{"y": 1.0} for _ in batch]
            if self.mode == "type":
                return [{"x": "one"} for _ in batch]
            return [{"x": 1.0, "example_id": 999} for _ in batch]

    with pytest.raises(InvalidInputError, match="returned 1 records for a batch of 2"):
        _run(tmp_path / "a", Task("count"), examples_per_batch=2)
    with pytest.raises(InvalidInputError, match=r"missing: \['x'\], not in the schema: \['y'\]"):
        _run(tmp_path / "b", Task("keys"))
    with pytest.raises(InvalidInputError, match="do not fit its schema"):
        _run(tmp_path / "c", Task("type"))
    with pytest.raises(InvalidInputError, match="record of example 999 in the place of example 0"):
        _run(tmp_path / "d", Task("order"))


def test_bad_options_and_tasks_are_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="engine must be one of"):
        _run(tmp_path / "a", engine="spark")
    with pytest.raises(InvalidInputError, match="examples_per_batch"):
        _run(tmp_path / "a", examples_per_batch=0)
    with pytest.raises(InvalidInputError, match="checkpoint_seconds"):
        _run(tmp_path / "a", checkpoint_seconds=-1)
    with pytest.raises(InvalidInputError, match="engine='ray'"):
        _run(tmp_path / "a", address="localhost:6379")

    class NotJson(ArithmeticTask):
        def settings(self):
            return {"model": object()}

    with pytest.raises(InvalidInputError, match="JSON"):
        _run(tmp_path / "a", NotJson())

    class ClaimsId(ArithmeticTask):
        def schema(self):
            return super().schema().append(pa.field("example_id", pa.int64()))

    with pytest.raises(InvalidInputError, match="runner adds it"):
        _run(tmp_path / "a", ClaimsId())
    assert not (tmp_path / "a").exists()  # refused before anything was written


def test_ray_engine_without_ray_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name))
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    with pytest.raises(MissingDependencyError, match=r"attrflow\[ray\]"):
        _run(tmp_path / "run", engine="ray")
    assert not (tmp_path / "run").exists()


def test_progress_bar_counts_resumed_examples(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        _run(out, ArithmeticTask(fail_on=[20]), examples_per_batch=5)
    capsys.readouterr()
    _run(out, examples_per_batch=5, progress=True)
    err = capsys.readouterr().err
    assert f"{N}/{N}" in err
    assert "ArithmeticTask" in err
    _run(tmp_path / "quiet", progress=False)
    assert capsys.readouterr().err == ""


def test_public_names():
    assert attrflow.run_dataset is run_dataset
    assert attrflow.open_run is open_run
    assert attrflow.DatasetTask is DatasetTask


def test_run_lock_holds_a_directory_for_a_whole_piece_of_work(tmp_path):
    import threading

    from attrflow.runner import run_lock

    out = tmp_path / "run"
    refused: list[BaseException] = []

    def other_writer() -> None:  # another thread is another writer: it does not share the lock
        try:
            _run(out)
        except RunLockedError as exc:
            refused.append(exc)

    with run_lock(out):
        assert _run(out).complete  # the run inside the block shares the lock
        (out / "after-the-run.json").write_text("{}")  # what an analysis writes after the runner: still held
        thread = threading.Thread(target=other_writer)
        thread.start()
        thread.join()
        assert refused and "another attrflow run" in str(refused[0])
    assert _run(out).num_processed == 0  # released: the finished run resumes


def test_a_refused_or_unused_directory_is_left_as_it_was(tmp_path):
    from attrflow.runner import run_lock

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    for attempt in (lambda: _run(busy), lambda: _held_run(busy)):
        with pytest.raises(ResultFormatError, match="not an attrflow run directory"):
            attempt()
        assert [p.name for p in busy.iterdir()] == ["notes.txt"]  # no .lock left behind
    unused = tmp_path / "unused" / "deeper"
    with pytest.raises(KeyError), run_lock(unused):
        raise KeyError("the work failed before it started")
    assert not unused.exists()  # created for nothing: removed again
    done = tmp_path / "done"
    _run(done)
    assert (done / ".lock").exists()  # a run directory keeps its lock file (it is how the lock is taken)


def _held_run(out: Path):
    from attrflow.runner import run_lock

    with run_lock(out):
        return _run(out)
