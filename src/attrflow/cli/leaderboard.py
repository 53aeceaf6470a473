"""``attrflow leaderboard``: every registered method and two baselines on one protocol — faithfulness, ground truth,
sanity and cost — with intervals and paired tests."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from attrflow.cli._common import (
    add_data_options,
    add_model_option,
    check_outputs,
    load_data,
    model_for_data,
    positive_int,
    steps_value,
)
from attrflow.cli._run_options import add_run_arguments, run_options_value


def _names(values: list[str] | None) -> list[str] | str:
    names = [name.strip() for value in values or [] for name in value.split(",") if name.strip()]
    return "all" if not names or names == ["all"] else names


def _count(text: str) -> int | None:
    """argparse type: a whole number >= 0, or ``all``."""
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'all', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _depths(text: str) -> Any:
    if text in ("cascade", "full"):
        return text
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'cascade', 'full' or layer counts like 1,3,6; got {text!r}"
        ) from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``leaderboard`` subcommand."""
    parser = subparsers.add_parser(
        "leaderboard",
        help="which explanation can be trusted: every method and two baselines on one protocol, with intervals",
        description="Every registered method that applies to the model, the baselines random and position, and the "
        "references blankout and gradient_l2, on one protocol: Spearman with blank-out and the gradient (per layer), "
        "ERASER AOPC, normalised AOPC (Edin et al. 2024), the agreement data's ground truth, the model-randomisation "
        "sanity check and each method's cost; 95 % bootstrap intervals and Wilcoxon tests (Holm) between methods; "
        "the attribution tree's masking experiment. Writes DIR/leaderboard.json, .parquet, .html, .md and figures; "
        "the per-example records go to the resumable run directory DIR/run (run the same command again to continue).",
    )
    add_model_option(parser, dataset=True)
    add_data_options(parser)
    parser.add_argument("--split", default="test", help="dataset split (default: test)")
    parser.add_argument("--examples", type=positive_int, default=None, metavar="N", help="N examples (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample and of everything random (default 0)")
    parser.add_argument(
        "--balanced", action="store_true", help="draw the same number of examples of every label (sorted splits)"
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="M[,M...]",
        help="methods to rank (default: all that apply); the baselines and references are always added",
    )
    parser.add_argument("--target", choices=("label", "predicted"), default="label", help="explained class")
    parser.add_argument(
        "--removal",
        choices=("delete", "unk", "mask"),
        default="delete",
        help="how AOPC removes tokens (default delete)",
    )
    parser.add_argument(
        "--naopc-examples",
        type=_count,
        default=None,
        metavar="N|all",
        help="examples with normalised AOPC (default all)",
    )
    parser.add_argument(
        "--exact-max",
        type=int,
        default=10,
        metavar="M",
        help="exact NAOPC limits up to M removable tokens (default 10)",
    )
    parser.add_argument("--beam-width", type=positive_int, default=5, help="NAOPC beam width beyond (default 5)")
    parser.add_argument(
        "--sanity-examples",
        type=_count,
        default=100,
        metavar="N|all",
        help="examples of the sanity check (default 100)",
    )
    parser.add_argument(
        "--sanity-depths",
        type=_depths,
        default="cascade",
        metavar="cascade|full|K,K",
        help="top layers re-initialised: every count 1..L (cascade, default), all (full), or the counts given",
    )
    parser.add_argument(
        "--timing-examples", type=_count, default=50, metavar="N|all", help="examples timing each method (default 50)"
    )
    parser.add_argument("--no-tree", action="store_true", help="skip the attribution tree's masking experiment")
    parser.add_argument(
        "--steps", type=steps_value, default=None, help="quadrature points of AttAttr and IG (default: their own, auto)"
    )
    parser.add_argument("--no-figures", action="store_true", help="write no PNG/SVG figures (no matplotlib needed)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (1 on a busy machine)")
    add_run_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``attrflow leaderboard``."""
    from pathlib import Path

    import torch

    from attrflow.runner import run_lock

    check_outputs(args, directories=("out",))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    with run_lock(out):
        return _run_locked(args, out)


def _run_locked(args: argparse.Namespace, out: Path) -> int:
    import importlib.util

    from attrflow.analysis.leaderboard import leaderboard

    dataset = load_data(args, args.split)
    board = leaderboard(
        model_for_data(args.model, args.data),
        dataset,
        methods=_names(args.methods),
        examples=args.examples,
        seed=args.seed,
        balanced=args.balanced,
        target=args.target,
        removal=args.removal,
        naopc_examples=args.naopc_examples,
        exact_max=args.exact_max,
        beam_width=args.beam_width,
        sanity_examples=args.sanity_examples,
        sanity_depths=args.sanity_depths,
        timing_examples=args.timing_examples,
        tree=not args.no_tree,
        run=run_options_value(args, out_dir=out / "run"),
        device=args.device,
        **({} if args.steps is None else {"steps": args.steps}),
    )
    figures = not args.no_figures and importlib.util.find_spec("matplotlib") is not None
    if not args.no_figures and not figures:
        print("figures need matplotlib: pip install 'attrflow[viz]' (or --no-figures); writing none")
    board.export(out, figures=figures)
    print(board.summary())
    print(f"\nwrote {out / 'leaderboard.json'}, {out / 'leaderboard.html'}, {out / 'leaderboard.md'} in {out}")
    return 0
