"""Finding and launching the headless Chromium the browser tests drive (Debian's ``chromium`` package).

Locally a missing Chromium (or Playwright's Python package) skips the browser tests; under CI (``CI`` set) it is a
failure, because .ci/run installs Chromium and ``make test`` installs the dev extra with Playwright. Playwright
never downloads a browser here: it launches the system Chromium through ``executable_path``.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-quic",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--window-size=1280,1000",
)


def under_ci() -> bool:
    """Whether the tests run under CI, where a missing browser is a failure."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def missing(reason: str) -> None:
    """Skip locally; fail under CI."""
    if under_ci():
        pytest.fail(f"{reason}; under CI the browser tests must run (.ci/run installs chromium)", pytrace=False)
    pytest.skip(reason)


def find_chromium() -> str | None:
    """``ATTRFLOW_CHROMIUM``, or the first Chromium/Chrome on PATH."""
    explicit = os.environ.get("ATTRFLOW_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_or_skip() -> str:
    """The Chromium executable, or skip (fail under CI)."""
    executable = find_chromium()
    if executable is None:
        missing("headless Chromium not found (apt-get install chromium, or set ATTRFLOW_CHROMIUM)")
    assert executable is not None
    return executable


def playwright_or_skip() -> Any:
    """Playwright's ``sync_playwright``, or skip (fail under CI)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright's Python package is not installed (pip install -e '.[dev]')")
    return sync_playwright
