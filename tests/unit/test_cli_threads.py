"""The command line makes torch's OpenMP threads sleep while they wait (OMP_WAIT_POLICY=PASSIVE), before torch is
loaded; a value the user set is kept. Spinning threads made dataset commands 12x slower on a shared machine."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = (
    "import sys, attrflow; assert 'torch' not in sys.modules, 'torch loaded before the CLI could set the policy'; "
    "import attrflow.cli, os; print(os.environ['OMP_WAIT_POLICY'])"
)


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_cli_sets_a_passive_wait_policy_unless_the_user_chose(given: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
