"""``attrflow demo``: the tour of attrflow on the built-in models (what ``make demo`` runs)."""

from __future__ import annotations

import argparse

from attrflow.cli._common import check_outputs


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="write a small set of HTML reports on the built-in models and an index linking them",
        description="Run attrflow on the built-in models (tweet sentiment, subject-verb agreement): attribution, "
        "attribution tree, rollout and flow for a few inputs, written as self-contained HTML reports with an "
        "index.html. Offline; a few minutes on two CPU cores.",
    )
    parser.add_argument("--out", default="attrflow-demo", metavar="DIR", help="output folder (default: attrflow-demo)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars in the long steps")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``attrflow demo``."""
    from attrflow.demo import run_demo

    check_outputs(args, directories=("out",))
    entries = run_demo(args.out, say=lambda line: print(line, flush=True), progress=not args.no_progress)
    for entry in entries:
        print(f"  {entry.path}  {entry.summary}")
    return 0
