"""The explorer's defaults, importable without loading anything heavy (the CLI's parser reads them)."""

from __future__ import annotations

DEFAULT_MAX_CHARS = 20_000
"""The most characters of input text (text plus pair) one request may carry."""

DEFAULT_PORT = 8765
DEFAULT_HOST = "127.0.0.1"
