"""``attrflow heads``: head importance of several methods and the pruning curves (Hao et al. 2021, §4.1–4.2)."""

from __future__ import annotations

import argparse
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

from attrflow.analysis.heads.rankings import check_rankings, descriptions, ranking_names
from attrflow.cli._common import add_attribution_options, add_model_option, positive_int
from attrflow.cli._run_options import add_run_arguments, run_options_value
from attrflow.errors import InvalidInputError
from attrflow.validation import SELECTIONS, TARGET_RULES, target_rule


def _methods(text: str) -> list[str]:
    try:
        return list(check_rankings("--methods", text))
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (comma-separated)") from None


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
    """``--target``, with the deprecated ``gold`` read as ``label`` (the library's warning printed to stderr)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rule = target_rule(value)
    for warning in caught:
        print(f"attrflow heads: {warning.message}", file=sys.stderr)
    return rule


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
    add_model_option(parser)
    _add_data_arguments(parser)
    _add_study_arguments(parser)
    add_attribution_options(parser)
    add_run_arguments(parser, examples_per_batch=8)
    parser.set_defaults(func=run)


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, metavar="NAME_OR_PATH", help="built-in dataset name or a labelled CSV/TSV/JSONL file"
    )
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
    parser.add_argument(
        "--methods",
        type=_methods,
        default=list(ranking_names()),
        metavar="M[,M...]",
        help=f"head rankings to compare (default: {','.join(ranking_names())}; see below)",
    )
    parser.add_argument(
        "--target",
        choices=(*TARGET_RULES, "gold"),
        default="label",
        metavar="{" + ",".join(TARGET_RULES) + "}",
        help="class the attribution and the Taylor loss are about: the gold label (default, as the official "
        "script) or the prediction ('gold' is the old spelling of 'label')",
    )
    parser.add_argument(
        "--taylor-objective",
        choices=("loss", "logit-sum"),
        default="loss",
        help="Taylor: back-propagate the loss (Michel et al., default) or the sum of logits (official AttAttr repo)",
    )
    parser.add_argument(
        "--fractions",
        type=_fractions,
        default=None,
        metavar="F[,F...]",
        help="fractions of heads to prune (default: 0,0.1,...,1)",
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
    parser.add_argument(
        "--figure-formats",
        type=_formats,
        default=["png"],
        metavar="FMT[,FMT]",
        help="pruning figure formats: png, svg, pdf (default: png)",
    )


def load_data(name: str, split: str | None) -> Any:
    """The dataset named on the command line (a built-in name or a file), via ``attrflow.load_dataset``."""
    import attrflow

    return attrflow.load_dataset(name, split=split)


def run(args: argparse.Namespace) -> int:
    """Run ``attrflow heads``."""
    from attrflow.analysis.heads import DEFAULT_FRACTIONS, analyze_heads

    dataset = load_data(args.data, args.split)
    eval_split = args.eval_split or args.split
    eval_dataset = dataset if eval_split == args.split else load_data(args.data, eval_split)
    # by name or path: Ray workers load their own replicas; this process loads one to evaluate the pruned model
    analysis = analyze_heads(
        args.model,
        dataset,
        eval_dataset,
        methods=args.methods,
        examples=args.examples,
        eval_examples=args.eval_examples,
        selection=args.selection,
        fractions=args.fractions or DEFAULT_FRACTIONS,
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
    written = analysis.export(args.out, figure_formats=args.figure_formats)
    print(
        f"model {analysis.settings['model']}: importance from {args.data}/{args.split}, accuracy on {args.data}/{eval_split}"
    )
    print(analysis.summary())
    print()
    examples_file = Path(args.out) / "examples.parquet"
    for path in [*written, *([examples_file] if examples_file.exists() else [])]:
        print(f"wrote {path}")
    return 0
