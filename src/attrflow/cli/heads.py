"""``attrflow heads``: head importance of several methods and the pruning curves (Hao et al. 2021, §4.1–4.2)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from attrflow.cli._common import add_attribution_options, add_model_option, positive_int
from attrflow.cli._run_options import add_run_arguments, run_options

# spelled out so that building the parser imports nothing heavy (checked against the library in the tests)
METHODS = ("attattr", "taylor", "attention", "random")


def _methods(text: str) -> list[str]:
    chosen = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in METHODS]
    if not chosen or unknown:
        raise argparse.ArgumentTypeError(f"choose methods from {','.join(METHODS)} (comma-separated), got {text!r}")
    return list(dict.fromkeys(chosen))


def _fractions(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in [0, 1], got {text!r}") from None
    if not values or any(not 0 <= v <= 1 for v in values) or sorted(set(values)) != values:
        raise argparse.ArgumentTypeError(f"expected increasing numbers in [0, 1], got {text!r}")
    return values


def _formats(text: str) -> list[str]:
    chosen = [f.strip().lower() for f in text.split(",") if f.strip()]
    if any(f not in ("png", "svg", "pdf") for f in chosen):
        raise argparse.ArgumentTypeError(f"figure formats are png, svg and pdf, got {text!r}")
    return chosen


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``heads`` subcommand."""
    parser = subparsers.add_parser(
        "heads",
        help="rank attention heads (AttAttr, Taylor, attention, random) and prune them: curves, AUC",
        description="Head importance (Hao et al., AAAI 2021, §4.1) from the first --examples examples of a "
        "dataset, then accuracy on the evaluation split as the least important heads are pruned without "
        "re-training (§4.2). Writes DIR/heads.json, DIR/examples.parquet (per-example scores), DIR/pruning.png "
        "and DIR/heads.html. Interrupted? Run the same command again: finished examples are kept.",
    )
    add_model_option(parser)
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
        choices=("random", "first"),
        default="random",
        help="which examples: a seeded random sample (default) or the first N, as the official script (only "
        "representative for a shuffled split)",
    )
    parser.add_argument(
        "--methods",
        type=_methods,
        default=list(METHODS),
        metavar="M[,M...]",
        help=f"importance methods to compare (default: {','.join(METHODS)})",
    )
    parser.add_argument(
        "--target",
        choices=("gold", "predicted"),
        default="gold",
        help="class the attribution and the Taylor loss are about (default: gold, as the official script)",
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
        help="examples per forward pass in the evaluation (default 64; speed only)",
    )
    parser.add_argument(
        "--figure-formats",
        type=_formats,
        default=["png"],
        metavar="FMT[,FMT]",
        help="pruning figure formats: png, svg, pdf (default: png)",
    )
    add_attribution_options(parser)
    add_run_arguments(parser, examples_per_batch=8)
    parser.set_defaults(func=run)


def load_data(name: str, split: str | None) -> Any:
    """The dataset named on the command line (a built-in name or a file), via ``attrflow.load_dataset``."""
    import attrflow

    return attrflow.load_dataset(name, split=split)


def run(args: argparse.Namespace) -> int:
    """Run ``attrflow heads``."""
    from attrflow.analysis.pruning import DEFAULT_FRACTIONS, analyze_heads

    options = run_options(args)
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
        target=args.target,
        steps=args.steps,
        rule=args.rule,
        taylor_objective=args.taylor_objective,
        seed=args.seed,
        top_k=args.top_k,
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        out_dir=options["out_dir"],
        engine=options["engine"],
        address=options["address"],
        num_workers=options["num_workers"],
        examples_per_batch=options["batch_size"],
        device=args.device,
        progress=options["progress"],
    )
    written = analysis.save(args.out, figure_formats=args.figure_formats)
    print(
        f"model {analysis.settings['model']}: importance from {args.data}/{args.split}, accuracy on {args.data}/{eval_split}"
    )
    print(analysis.summary())
    print()
    examples_file = Path(args.out) / "examples.parquet"
    for path in [*written, *([examples_file] if examples_file.exists() else [])]:
        print(f"wrote {path}")
    return 0
