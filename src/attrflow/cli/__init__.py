"""The ``attrflow`` command line: argparse subcommands, each a thin call into the public API.

Each subcommand lives in its own module with ``register(subparsers)``; the module sets ``func`` on its parser.
"""

from __future__ import annotations

import os

# Before torch is imported (by the modules below): OpenMP threads that wait for a descheduled sibling sleep instead
# of spinning. On a machine other jobs share, spinning made a 20-sentence leaderboard take 304 s instead of 25 s
# (measured in README, "From the shell"); a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import importlib
import logging
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence

from attrflow import __version__
from attrflow.cli._common import CLI_SPELLING
from attrflow.errors import AttrflowError
from attrflow.validation import option_spelling

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
    """Entry point of the ``attrflow`` command. Returns the process exit status.

    Every expected failure — an attrflow error (bad input, unsupported model, damaged file, locked run), an
    operating-system error (a file, a permission, a full disk, a device) — is one line on stderr and exit status 1;
    ``-v`` adds the traceback. Anything else is a bug: one line saying so, and its traceback with ``-v``. Warnings
    are one line each (``attrflow: warning: ...``).
    """
    formatter = warnings.formatwarning
    with warnings.catch_warnings(), option_spelling(CLI_SPELLING):
        _show_warnings_in_one_line()
        try:
            parser = build_parser()
            args = parser.parse_args(argv)  # usage errors: argparse's one line and exit status 2
            logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
            func = getattr(args, "func", None)
            if func is None:
                parser.print_help()
                return 2
            return _run(func, args)
        finally:
            warnings.formatwarning = formatter


def _run(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a subcommand; every exception becomes one line and an exit status."""
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("attrflow: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        return _report(exc, verbose=args.verbose)


def _report(exc: Exception, *, verbose: bool) -> int:
    """Print ``exc`` as one line (and its traceback with ``verbose``); the exit status."""
    if isinstance(exc, AttrflowError):
        message = str(exc)
    elif isinstance(exc, OSError):
        message = _os_error(exc)
    elif isinstance(exc, MemoryError):
        message = "out of memory; try a smaller --batch-size or fewer examples"
    else:
        message = f"unexpected {type(exc).__name__}: {exc}"
        if not verbose:
            message += " (a bug in attrflow: run again with -v for the traceback, and please report it)"
    if verbose:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(f"attrflow: error: {message}", file=sys.stderr)
    return 1


def _os_error(exc: OSError) -> str:
    """``cannot write /x/report.html: No space left on device`` from an OSError."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None:
        names = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
        return f"{names}: {reason}"
    return reason


def _show_warnings_in_one_line() -> None:
    """Warnings as ``attrflow: warning: message`` on stderr; attrflow's deprecations are shown too."""
    warnings.filterwarnings("default", category=DeprecationWarning, module=r"attrflow(\.|$)")

    def one_line(message: Warning | str, category: type[Warning], *_: object, **__: object) -> str:
        return "attrflow: warning: " + " ".join(str(message).split()) + "\n"

    warnings.formatwarning = one_line


if __name__ == "__main__":
    sys.exit(main())
