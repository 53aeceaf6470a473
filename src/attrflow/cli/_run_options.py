"""The options every dataset-level subcommand shares (heads, triggers, evaluation): defined once, here.

``--examples-per-batch`` is the runner's batch (examples per task call); ``--batch-size`` stays what it is in
``cli._common``: interpolation points per forward pass.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from attrflow.cli._common import positive_int

if TYPE_CHECKING:
    import os

    from attrflow.runner import RunOptions

__all__ = ["ENGINES", "add_run_arguments", "run_options", "run_options_value"]

# the values of attrflow.runner.Engine, spelled out so that building the parser does not import the runner
ENGINES = ("local", "ray")


def add_run_arguments(parser: argparse.ArgumentParser, *, examples_per_batch: int = 8) -> None:
    """Add ``--out --engine --address --num-workers --examples-per-batch --no-progress`` to a parser."""
    group = parser.add_argument_group(
        "dataset run",
        "results go to a resumable run directory: run the same command again after an interruption to continue",
    )
    group.add_argument("--out", required=True, metavar="DIR", help="run directory (created, or resumed)")
    group.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: this process (default); ray: replicas of the model on Ray workers (attrflow[ray])",
    )
    group.add_argument(
        "--address",
        metavar="ADDR",
        help="with --engine ray: an existing Ray cluster (default: start a local Ray and stop it afterwards)",
    )
    group.add_argument(
        "--num-workers",
        type=positive_int,
        metavar="N",
        help="with --engine ray: model replicas (default: one per CPU)",
    )
    group.add_argument(
        "--examples-per-batch",
        type=positive_int,
        default=examples_per_batch,
        metavar="N",
        help=f"examples handed to a worker at once (default {examples_per_batch}; speed only)",
    )
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`attrflow.runner.run_dataset` that :func:`add_run_arguments` parsed."""
    return {
        "out_dir": args.out,
        "engine": args.engine,
        "address": args.address,
        "num_workers": args.num_workers,
        "batch_size": args.examples_per_batch,
        "progress": not args.no_progress,
    }


def run_options_value(args: argparse.Namespace, *, out_dir: str | os.PathLike[str] | None = None) -> RunOptions:
    """What :func:`add_run_arguments` parsed, as one :class:`~attrflow.runner.RunOptions` (``out_dir``: default
    ``--out``)."""
    from attrflow.runner import RunOptions

    return RunOptions(
        out_dir=args.out if out_dir is None else out_dir,
        engine=args.engine,
        address=args.address,
        num_workers=args.num_workers,
        examples_per_batch=args.examples_per_batch,
        progress=not args.no_progress,
    )
