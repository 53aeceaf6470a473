"""The ``attrflow`` command line: argparse subcommands, each a thin call into the public API.

Each subcommand lives in its own module with ``register(subparsers)``; the module sets ``func`` on its parser.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from attrflow import __version__
from attrflow.errors import AttrflowError

# one module per subcommand, in the order --help lists them
_SUBCOMMANDS: tuple[str, ...] = (
    "explain",
    "methods",
    "explore",
    "demo",
    "run_info",
    "zoo",
    "attack",
    "evaluate",
    "leaderboard",
    "heads",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (all subcommands registered)."""
    parser = argparse.ArgumentParser(
        prog="attrflow",
        description="Show how information flows between tokens inside Transformer models: self-attention "
        "attribution (Hao et al. 2021), attention rollout and attention flow (Abnar & Zuidema 2020).",
    )
    parser.add_argument("--version", action="version", version=f"attrflow {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in _SUBCOMMANDS:
        importlib.import_module(f"attrflow.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``attrflow`` command. Returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except AttrflowError as exc:
        print(f"attrflow: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("attrflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
