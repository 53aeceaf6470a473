"""``attrflow methods``: list the registered explanation methods."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``methods`` subcommand."""
    parser = subparsers.add_parser(
        "methods",
        help="list the registered explanation methods (name, kind, what a score means, paper)",
        description="Every explanation method attrflow can run, from its method registry: the names that "
        "`attrflow explain --methods`, `attrflow evaluate --methods` and attrflow.token_scores(method=...) accept.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``attrflow methods``."""
    from attrflow.methods.registry import list_methods

    infos = list_methods()
    if args.json:
        print(json.dumps([info.to_dict() for info in infos], indent=2))
        return 0
    width = max(len(info.name) for info in infos) + 2
    for info in infos:
        options = ", ".join(sorted(info.options)) or "-"
        print(f"{info.name:{width}s}{info.kind:10s}{info.description}")
        print(f"{'':{width}s}{'':10s}paper: {info.paper or '-'}; cost: {info.cost or '-'}; options: {options}")
    return 0
