"""``attrflow run-info DIR``: how far a run directory got, what it was run with; optionally consolidate it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run-info",
        help="show the progress and settings of a run directory",
        description="Show how many examples of a run directory are done, with which task and settings. "
        "Reading is safe while the run is still writing.",
    )
    parser.add_argument("out", metavar="DIR", help="a run directory (the --out of a dataset command)")
    parser.add_argument(
        "--consolidate",
        nargs="?",
        const="",
        metavar="FILE",
        help="also write every record into one Parquet file sorted by example id (default DIR/examples.parquet)",
    )
    parser.add_argument("--json", action="store_true", help="print the run metadata as JSON")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from attrflow.runner import open_run

    run = open_run(args.out)
    if args.json:
        print(json.dumps({**run.metadata, "num_done": run.num_done}, indent=2))
    else:
        meta = run.metadata
        state = "complete" if run.complete else "incomplete: run the same command again to continue"
        print(f"{run.out_dir}: {run.num_done} of {run.num_examples} examples done ({state})")
        print(f"task      {meta['task']}  (attrflow {meta['attrflow_version']}, started {meta.get('created', '?')})")
        print(f"settings  {json.dumps(meta['settings'], sort_keys=True)}")
        print(f"columns   {', '.join(meta['columns'])}")
    if args.consolidate is not None:
        target = run.consolidate(Path(args.consolidate) if args.consolidate else None)
        print(f"wrote {target}")
    return 0
