"""README's commands, run as a newcomer runs them: on a fresh clone, from the README's own text.

The quick start's Python block and the ``attrflow`` commands of README's shell blocks run with this interpreter and
``PYTHONPATH=<clone>/src`` in an empty folder. The dataset commands (evaluate, heads, attack, leaderboard) take minutes: they are
marked slow (``pytest -m slow``); the quick start, ``explain`` and ``--help`` run in every ``make test``. The
explorer's server runs until stopped and has its own tests.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SLOW_COMMANDS = ("evaluate", "heads", "attack", "leaderboard", "demo")
SERVERS = ("explore",)  # run until stopped: tests/e2e/test_explore_cli.py starts and stops the server


def _blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def _commands() -> list[list[str]]:
    """Every ``attrflow ...`` line of README's shell blocks, split like a shell (comments dropped)."""
    found = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "attrflow" and (len(words) == 1 or words[1] not in SERVERS):
                found.append(words[1:])
    return found


def _fast(command: list[str]) -> bool:
    return not command or command[0] not in SLOW_COMMANDS


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    target = tmp_path_factory.mktemp("fresh") / "attrflow"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True)
    return target


def _run(clone: Path, folder: Path, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(clone / "src"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)


def test_readme_has_the_commands_this_test_runs() -> None:
    commands = _commands()
    names = {command[0] for command in commands if command}
    assert {"explain", "evaluate", "heads", "attack"} <= names, names
    assert len(_blocks("python")) >= 1
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "-m slow" in readme  # how long the demo takes; how to run the slow tests


def test_quick_start_runs_on_a_fresh_clone(clone: Path, tmp_path: Path) -> None:
    block = _blocks("python")[0]
    done = _run(clone, tmp_path, [sys.executable, "-c", "import torch; torch.set_num_threads(1)\n" + block], 600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("command", [c for c in _commands() if _fast(c)], ids=lambda c: " ".join(c[:2]))
def test_fast_readme_commands_run_on_a_fresh_clone(clone: Path, tmp_path: Path, command: list[str]) -> None:
    done = _run(clone, tmp_path, [sys.executable, "-m", "attrflow", *command], 600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in _commands() if not _fast(c)], ids=lambda c: " ".join(c[:2]))
def test_dataset_readme_commands_run_on_a_fresh_clone(clone: Path, tmp_path: Path, command: list[str]) -> None:
    done = _run(clone, tmp_path, [sys.executable, "-m", "attrflow", *command, "--no-progress"], 1800)
    assert done.returncode == 0, done.stderr[-3000:]
    out = command[command.index("--out") + 1]
    assert any((tmp_path / out).glob("*.html")), f"{out} holds no page"
