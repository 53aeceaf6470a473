"""A run killed with SIGKILL at random moments, then started again, loses and duplicates nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import attrflow
from attrflow.runner import open_run, run_dataset
from runner_tasks import ArithmeticTask, make_dataset

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

TESTS = Path(__file__).resolve().parent.parent
SRC = Path(attrflow.__file__).resolve().parent.parent


def _start(out: Path, n: int, delay: float, engine: str = "local") -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
    return subprocess.Popen(
        [sys.executable, str(TESTS / "runner_tasks.py"), str(out), str(n), str(delay), engine],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _count_parts(out: Path) -> int:
    return len(list(out.glob("part-*.parquet"))) if out.exists() else 0


def _kill_after_new_parts(process: subprocess.Popen[bytes], out: Path, new_parts: int, rng: random.Random) -> bool:
    """SIGKILL ``process`` a random instant after it wrote ``new_parts`` more parts; False if it finished first."""
    target = _count_parts(out) + new_parts
    deadline = time.monotonic() + 60
    while _count_parts(out) < target:
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.03))  # land anywhere: inside a task, a Parquet write, an fsync, a rename
    process.send_signal(signal.SIGKILL)
    process.wait()
    return process.returncode == -signal.SIGKILL


def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path):
    n, delay = 40, 0.02
    reference = run_dataset(
        ArithmeticTask(), make_dataset(n), out_dir=tmp_path / "reference", progress=False, examples_per_batch=3
    ).read_table()
    out = tmp_path / "killed"
    rng = random.Random(0)
    kills = 0
    for _ in range(3):
        process = _start(out, n, delay)
        kills += _kill_after_new_parts(process, out, new_parts=3, rng=rng)
        stored = open_run(out)
        ids = stored.read_table(columns=[]).column("example_id").to_pylist()
        assert ids == sorted(set(ids)), "a killed run left duplicated examples"
        assert 0 < stored.num_done < n
    assert kills == 3
    finisher = _start(out, n, delay)
    _, err = finisher.communicate(timeout=120)
    assert finisher.returncode == 0, err.decode()
    result = open_run(out)
    assert result.complete
    assert result.read_table().equals(reference)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
