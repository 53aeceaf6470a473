"""``attrflow heads``: head importance of several methods and the pruning curves (Hao et al. 2021, §4.1–4.2)."""

from __future__ import annotations

import argparse
import textwrap
import warnings
from pathlib import Path
from typing import Any

from attrflow.analysis.heads.rankings import check_rankings, descriptions, ranking_names
from attrflow.cli._common import (
    add_attribution_options,
    add_data_options,
    add_list_option,
    add_model_option,
    add_target_option,
    check_outputs,
    model_for_data,
    positive_int,
    split_list,
)
from attrflow.cli._common import load_data as load_data_options
from attrflow.cli._run_options import add_run_arguments, run_options_value
from attrflow.errors import InvalidInputError
from attrflow.validation import SELECTIONS, target_rule


def _methods(text: str) -> list[str]:
    """Head rankings of one ``--methods`` word (commas inside it separate too)."""
    try:
        return list(check_rankings("--methods", split_list(text)))
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (commas or spaces)") from None


def _fractions(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in [0, 1], got {text!r}") from None
    if not values or any(not 0 <= v <= 1 for v in values) or sorted(set(values)) != values:
        raise argparse.ArgumentTypeError(f"expected increasing numbers in [0, 1], got {text!r}")
    return values


def _formats(text: str) -> list[str]:
    from attrflow.analysis.heads.study import FIGURE_FORMATS

    chosen = [f.strip().lower() for f in text.split(",") if f.strip()]
    if any(f not in FIGURE_FORMATS for f in chosen):
        raise argparse.ArgumentTypeError(f"figure formats are {', '.join(FIGURE_FORMATS)}, got {text!r}")
    return chosen


def _target(value: str) -> str:
    """``--target`` as a rule (``gold`` read as ``label``; the parser already did this, with a notice)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return target_rule(value)


def _rankings_epilog() -> str:
    return "rankings (--methods):\n" + "\n".join(f"  {name:<10} {text}" for name, text in descriptions().items())


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``heads`` subcommand."""
    parser = subparsers.add_parser(
        "heads",
        help=f"rank attention heads ({', '.join(ranking_names())}) and prune them: curves, AUC",
        description=textwrap.fill(
            "Head importance (Hao et al., AAAI 2021, §4.1) from --examples examples of a dataset, then accuracy on "
            "the evaluation split as the least important heads are pruned without re-training (§4.2). Writes "
            "DIR/heads.json, DIR/examples.parquet (per-example scores), DIR/pruning.png and DIR/heads.html. "
            "Interrupted? Run the same command again: finished examples are kept.",
            width=100,
        ),
        epilog=_rankings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_option(parser, dataset=True)
    _add_data_arguments(parser)
    _add_study_arguments(parser)
    add_attribution_options(parser)
    add_run_arguments(parser, examples_per_batch=8)
    parser.set_defaults(func=run)


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_options(parser)
    parser.add_argument("--split", default="validation", help="split for the importance (default: validation)")
    parser.add_argument(
        "--eval-split", default=None, metavar="SPLIT", help="split the pruned model is evaluated on (default: --split)"
    )
    parser.add_argument(
        "--examples",
        type=positive_int,
        default=200,
        metavar="N",
        help="examples of the split the importance averages over (default 200, as the paper)",
    )
    parser.add_argument(
        "--eval-examples",
        type=positive_int,
        default=None,
        metavar="N",
        help="evaluate on N examples of the evaluation split (default: all of it)",
    )
    parser.add_argument(
        "--selection",
        choices=SELECTIONS,
        default="random",
        help="which examples: a seeded random sample (default) or the first N, as the official script (only "
        "representative for a shuffled split)",
    )


def _add_study_arguments(parser: argparse.ArgumentParser) -> None:
    add_list_option(
        parser,
        "--methods",
        type=_methods,
        default=None,
        help=f"head rankings to compare, commas or spaces (default: {','.join(ranking_names())}; see below)",
    )
    add_target_option(parser, about="the attribution and the Taylor loss are about (the official script: label)")
    parser.add_argument(
        "--taylor-objective",
        choices=("loss", "logit-sum"),
        default="loss",
        help="Taylor: back-propagate the loss (Michel et al., default) or the sum of logits (official AttAttr repo)",
    )
    add_list_option(
        parser,
        "--fractions",
        type=_fractions,
        default=None,
        metavar="F",
        help="fractions of heads to prune, increasing, commas or spaces (default: 0,0.1,...,1)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the example samples and of the random ranking (default: 0)"
    )
    parser.add_argument(
        "--top-k", type=positive_int, default=5, help="strongest interactions kept per example (default 5)"
    )
    parser.add_argument(
        "--eval-batch-size",
        type=positive_int,
        default=64,
        metavar="N",
        help="rows (examples) per forward pass in the evaluation (default 64; speed only)",
    )
    add_list_option(
        parser,
        "--figure-formats",
        type=_formats,
        default=None,
        metavar="FMT",
        help="pruning figure formats: png, svg, pdf, commas or spaces (default: png)",
    )


def load_data(name: str, split: str | None) -> Any:
    """The dataset named on the command line (a built-in name or a file), via ``attrflow.load_dataset``."""
    import attrflow

    return attrflow.load_dataset(name, split=split)


def _joined(values: list[list[Any]] | None) -> list[Any] | None:
    """A list option parsed item by item (each item a list) as one list; None when not given."""
    return None if values is None else [value for item in values for value in item]


def run(args: argparse.Namespace) -> int:
    """Run ``attrflow heads``."""
    from attrflow.analysis.heads import DEFAULT_FRACTIONS, analyze_heads
    from attrflow.runner import run_lock

    check_outputs(args, directories=("out",))
    methods = _joined(args.methods) or list(ranking_names())
    fractions = _joined(args.fractions) or list(DEFAULT_FRACTIONS)
    if fractions != sorted(set(fractions)):
        raise InvalidInputError(f"--fractions must increase, got {','.join(map(str, fractions))}")
    formats = _joined(args.figure_formats) or ["png"]
    eval_split = args.eval_split or args.split
    # the whole study holds the run directory: a second command on the same --out is refused at once
    with run_lock(args.out):
        dataset = load_data_options(args, args.split)
        eval_dataset = dataset if eval_split == args.split else load_data_options(args, eval_split)
        # by name or path: Ray workers load their own replicas; this process loads one to evaluate the pruned model
        analysis = analyze_heads(
            model_for_data(args.model, args.data),
            dataset,
            eval_dataset,
            methods=methods,
            examples=args.examples,
            eval_examples=args.eval_examples,
            selection=args.selection,
            fractions=fractions,
            target=_target(args.target),
            steps=args.steps,
            rule=args.rule,
            taylor_objective=args.taylor_objective,
            seed=args.seed,
            top_k=args.top_k,
            batch_size=args.batch_size,
            eval_batch_size=args.eval_batch_size,
            device=args.device,
            run=run_options_value(args),
        )
        written = analysis.export(args.out, figure_formats=formats)
    print(
        f"model {analysis.settings['model']}: importance from {args.data}/{args.split}, accuracy on {args.data}/{eval_split}"
    )
    print(analysis.summary())
    print()
    examples_file = Path(args.out) / "examples.parquet"
    for path in [*written, *([examples_file] if examples_file.exists() else [])]:
        print(f"wrote {path}")
    return 0
