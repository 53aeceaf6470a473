"""The Ray engine: same records, same directory, same resume as the local engine (a local Ray, 2 CPUs)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import attrflow
from attrflow.errors import InvalidInputError
from attrflow.runner import open_run, run_dataset
from runner_tasks import ArithmeticTask, TinyTorchTask, make_dataset

ray = pytest.importorskip("ray", reason="the Ray engine needs the extra: pip install 'attrflow[ray]'")

N = 30
TESTS = Path(__file__).resolve().parent.parent
SRC = Path(attrflow.__file__).resolve().parent.parent


def _run(out: Path, task=None, **options):
    options.setdefault("progress", False)
    return run_dataset(task if task is not None else ArithmeticTask(), make_dataset(N), out_dir=out, **options)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> object:
    return _run(tmp_path_factory.mktemp("reference")).read_table()


def test_ray_run_equals_local_run_and_stops_the_ray_it_started(tmp_path, reference):
    assert not ray.is_initialized()
    result = _run(tmp_path / "ray", engine="ray", num_workers=2, examples_per_batch=3, part_rows=4)
    assert not ray.is_initialized()
    assert (result.num_done, result.num_processed, result.complete) == (N, N, True)
    assert result.read_table().equals(reference)
    assert result.metadata == {**open_run(tmp_path / "ray").metadata}


def test_existing_cluster_by_address_is_used_and_left_running(tmp_path, reference, monkeypatch):
    # a local Ray in another process stands in for a cluster; Ray >= 2.59 protects it with a token
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
    head = subprocess.Popen(
        [sys.executable, str(TESTS / "runner_tasks.py"), "--ray-head"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert head.stdout is not None
        address = head.stdout.readline().decode().strip()
        assert address, "the stand-in cluster did not start"
        result = _run(tmp_path / "ray", engine="ray", address=address)
        assert not ray.is_initialized()  # disconnected...
        assert head.poll() is None  # ...and the cluster is still up
        assert result.read_table().equals(reference)
    finally:
        assert head.stdin is not None
        head.stdin.close()
        head.wait(timeout=60)


@pytest.fixture(scope="module")
def running_ray() -> Iterator[None]:
    from attrflow.runner._engines import start_local_ray

    start_local_ray(ray, 2)
    yield
    ray.shutdown()


def test_resume_across_engines(tmp_path, reference, running_ray):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="planned failure on example 17"):
        _run(out, ArithmeticTask(fail_on=[17]), engine="ray", examples_per_batch=2, part_rows=2)
    assert ray.is_initialized()  # the runner leaves alone a Ray it did not start
    stored = open_run(out).read_table(columns=[]).column("example_id").to_pylist()
    assert stored == sorted(set(stored)) and 17 not in stored and len(stored) < N
    local = _run(out, examples_per_batch=4)
    assert local.num_processed == N - len(stored)
    assert local.read_table().equals(reference)

    out = tmp_path / "run2"
    with pytest.raises(RuntimeError):
        _run(out, ArithmeticTask(fail_on=[11]), examples_per_batch=5)
    assert open_run(out).num_done == 10
    resumed = _run(out, engine="ray", examples_per_batch=3)
    assert (resumed.num_processed, resumed.complete) == (N - 10, True)
    assert resumed.read_table().equals(reference)


def test_torch_replicas_on_ray_match_local(tmp_path, running_ray):
    local = _run(tmp_path / "local", TinyTorchTask(seed=3), examples_per_batch=4).read_table()
    remote = _run(tmp_path / "ray", TinyTorchTask(seed=3), engine="ray", examples_per_batch=4).read_table()
    assert remote.column("example_id").equals(local.column("example_id"))
    assert remote.column("prediction").equals(local.column("prediction"))
    np.testing.assert_allclose(
        np.stack(remote.column("probabilities").to_numpy(zero_copy_only=False)),
        np.stack(local.column("probabilities").to_numpy(zero_copy_only=False)),
        rtol=1e-6,
        atol=1e-7,
    )


def test_address_with_an_initialised_ray_is_refused(tmp_path, running_ray):
    with pytest.raises(InvalidInputError, match="already initialised"):
        _run(tmp_path / "run", engine="ray", address="localhost:6379")
