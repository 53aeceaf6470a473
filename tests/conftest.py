"""Shared test configuration: offline, deterministic, few threads (the CI machine has two cores)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

# shared test support (runner_tasks.py) lives beside this file; tests in the tiers import it by name
sys.path.insert(0, str(Path(__file__).resolve().parent))

# tiny models: a thread pool costs more than it saves, and the machine is shared
torch.set_num_threads(1)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--screenshots",
        default=None,
        metavar="DIR",
        help="the browser tests also save their screenshots into DIR (the README's: --screenshots docs/img)",
    )
