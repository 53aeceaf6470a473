"""``attrflow evaluate``: faithfulness of attention, rollout, flow, AttAttr and gradient token scores on a dataset."""

from __future__ import annotations

import argparse

from attrflow.cli._common import add_model_option, positive_int, steps_value
from attrflow.cli._run_options import add_run_arguments, run_options


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    from attrflow.analysis.faithfulness import DEFAULT_BINS, GRADIENT_METHODS, METHODS, REFERENCES
    from attrflow.analysis.token_scores import REDUCTIONS
    from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_STEPS
    from attrflow.methods.quadrature import RULES

    parser = subparsers.add_parser(
        "evaluate",
        help="faithfulness of token scores on a dataset: Spearman per layer with blank-out/gradients, and AOPC",
        description="The protocol of Abnar & Zuidema (ACL 2020): per example and layer, the Spearman correlation "
        "of raw attention, rollout, flow and AttAttr token scores with blank-out and input-gradient scores "
        "(mean±std over examples, the paper's Tables 1-3), plus ERASER's AOPC comprehensiveness and sufficiency for "
        "every method. Writes DIR/faithfulness.json, CSV tables, PNG figures and DIR/faithfulness.html; the "
        "per-example records go to the resumable run directory DIR/run (run the same command again to continue).",
    )
    add_model_option(parser)
    parser.add_argument(
        "--data",
        required=True,
        metavar="NAME_OR_FILE",
        help="built-in dataset ('agreement', 'tweets-sentiment') or a labelled CSV/TSV/JSONL file or GLUE folder",
    )
    parser.add_argument("--split", default="test", help="dataset split (default: test)")
    parser.add_argument("--examples", type=positive_int, default=None, metavar="N", help="the first N examples")
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=list(METHODS),
        metavar="METHOD",
        help=f"methods to evaluate (default: all of {', '.join(METHODS)})",
    )
    parser.add_argument(
        "--references",
        nargs="+",
        choices=GRADIENT_METHODS,
        default=list(REFERENCES),
        metavar="REF",
        help=f"ground truths of the Spearman tables (default: {' '.join(REFERENCES)})",
    )
    parser.add_argument(
        "--reduction",
        choices=REDUCTIONS,
        default="cls",
        help="attention row to read: cls = the explained position's row (paper), or max/mean over rows "
        "(the official SST-2 script uses max)",
    )
    parser.add_argument(
        "--target",
        choices=("label", "predicted"),
        default="label",
        help="class whose probability is explained: the gold label (paper) or the prediction",
    )
    parser.add_argument(
        "--exclude-special",
        action="store_true",
        help="compute Spearman over non-special tokens only (default: all tokens)",
    )
    parser.add_argument(
        "--nan-policy",
        choices=("omit", "zero"),
        default="omit",
        help="undefined correlations (constant scores): omit them (default) or count them as 0 (official code)",
    )
    parser.add_argument(
        "--replacement",
        choices=("unk", "mask"),
        default="unk",
        help="token that blank-out puts in place (default: unk, the paper)",
    )
    parser.add_argument(
        "--removal",
        choices=("delete", "unk", "mask"),
        default="delete",
        help="how AOPC removes tokens (default: delete, as ERASER)",
    )
    parser.add_argument(
        "--bins",
        type=float,
        nargs="+",
        default=list(DEFAULT_BINS),
        metavar="K",
        help="AOPC fractions of tokens (default: 0.1 0.2 ... 1.0)",
    )
    parser.add_argument(
        "--steps",
        type=steps_value,
        default=DEFAULT_STEPS,
        help=f"quadrature points of AttAttr and IG, or 'auto': refine until the completeness gap is below 1e-3 "
        f"(default: {DEFAULT_STEPS})",
    )
    parser.add_argument("--rule", choices=RULES, default=DEFAULT_RULE, help="quadrature rule of AttAttr and IG")
    parser.add_argument(
        "--ig-steps",
        type=steps_value,
        default=None,
        help="quadrature points of integrated gradients when they should differ from --steps",
    )
    parser.add_argument("--no-figures", action="store_true", help="write no PNG figures (no matplotlib needed)")
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch CPU threads; 1 is fastest on a busy machine for small models (default: torch's choice)",
    )
    add_run_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``attrflow evaluate``."""
    from pathlib import Path

    import torch

    from attrflow.analysis.faithfulness import faithfulness
    from attrflow.data import load_dataset
    from attrflow.errors import MissingDependencyError

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dataset = load_dataset(args.data, split=args.split)
    out = Path(args.out)
    options = run_options(args)
    options["out_dir"] = out / "run"
    report = faithfulness(
        args.model,
        dataset,
        methods=args.methods,
        references=args.references,
        examples=args.examples,
        reduction=args.reduction,
        target=args.target,
        bins=args.bins,
        removal=args.removal,
        exclude_special=args.exclude_special,
        nan_policy=args.nan_policy,
        replacement=args.replacement,
        steps=args.steps,
        rule=args.rule,
        ig_steps=args.ig_steps,
        device=args.device,
        **options,
    )
    figures = not args.no_figures
    if figures:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(MissingDependencyError("figures need matplotlib: pip install 'attrflow[viz]' (or --no-figures)"))
            figures = False
    report.save(out, figures=figures)
    print(report.summary())
    print(f"\nwrote {out / 'faithfulness.json'}, {out / 'faithfulness.html'} and the tables as CSV in {out}")
    return 0
