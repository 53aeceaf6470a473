"""``attrflow evaluate``: faithfulness of attention, rollout, flow, AttAttr and gradient token scores on a dataset."""

from __future__ import annotations

import argparse

from attrflow.cli._common import add_attribution_options, add_model_option, positive_int, steps_value
from attrflow.cli._run_options import add_run_arguments, run_options


def _names(values: list[str] | None) -> list[str] | None:
    """``--methods a,b c`` → ``[a, b, c]`` (commas and spaces both separate); None or ``all`` → None."""
    if not values:
        return None
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return None if names == ["all"] else names


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    from attrflow.analysis.faithfulness import DEFAULT_BINS, REFERENCES
    from attrflow.validation import REDUCTIONS

    parser = subparsers.add_parser(
        "evaluate",
        help="faithfulness of every registered method on a dataset: Spearman per layer with blank-out/gradients, AOPC",
        description="The protocol of Abnar & Zuidema (ACL 2020): per example and layer, the Spearman correlation "
        "of every per-layer method (raw attention, rollout, flow, AttAttr, ...) with blank-out and input-gradient "
        "scores (mean±std over examples, the paper's Tables 1-3), plus ERASER's AOPC comprehensiveness and "
        "sufficiency for every method. Writes DIR/faithfulness.json, CSV tables, PNG figures and "
        "DIR/faithfulness.html; the per-example records go to the resumable run directory DIR/run (run the same "
        "command again to continue). `attrflow methods` lists the methods.",
    )
    add_model_option(parser)
    parser.add_argument(
        "--data",
        required=True,
        metavar="NAME_OR_FILE",
        help="built-in dataset ('agreement', 'tweets-sentiment') or a labelled CSV/TSV/JSONL file or GLUE folder",
    )
    parser.add_argument("--split", default="test", help="dataset split (default: test)")
    parser.add_argument(
        "--examples", type=positive_int, default=None, metavar="N", help="N examples drawn with --seed (default: all)"
    )
    parser.add_argument(
        "--selection",
        choices=("random", "first"),
        default="random",
        help="with --examples: a seeded random draw (default; the built-in splits are sorted by label) or the first N",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random selection (default: 0)")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="M[,M...]",
        help="registered methods to evaluate, comma-separated (default: all that apply; `attrflow methods` lists them)",
    )
    parser.add_argument(
        "--references",
        nargs="+",
        default=list(REFERENCES),
        metavar="REF[,REF...]",
        help=f"ground truths of the Spearman tables, single-vector methods (default: {','.join(REFERENCES)}; the "
        "paper's summed 'gradient' is rounding noise for LayerNorm models)",
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
        choices=("label", "predicted", "gold"),
        default="label",
        help="class whose probability is explained: the gold label (paper) or the prediction ('gold' = 'label')",
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
    add_attribution_options(parser)
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
    from attrflow.runner import RunOptions

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dataset = load_dataset(args.data, split=args.split)
    out = Path(args.out)
    options = run_options(args)
    options["out_dir"] = out / "run"
    options["examples_per_batch"] = options.pop("batch_size")
    method_options = {"integrated_gradients": {"steps": args.ig_steps}} if args.ig_steps is not None else None
    shared = {"steps": args.steps, "rule": args.rule, "reduction": args.reduction, "replacement": args.replacement}
    if args.batch_size is not None:
        shared["batch_size"] = args.batch_size
    methods = _names(args.methods)
    references = _names(args.references) or ["blankout", "gradient_l2"]
    from attrflow.methods.registry import get_method

    chosen = [get_method(m) for m in (methods or [])] or None
    if chosen is not None:
        # keep only the shared options some chosen method (or reference) has: --reduction is the attention methods'
        accepted = {k for m in chosen + [get_method(r) for r in references] for k in m.options()}
        shared = {k: v for k, v in shared.items() if k in accepted}
    report = faithfulness(
        args.model,
        dataset,
        methods=methods,
        references=references,
        examples=args.examples,
        selection=args.selection,
        seed=args.seed,
        target=args.target,
        bins=args.bins,
        removal=args.removal,
        exclude_special=args.exclude_special,
        nan_policy=args.nan_policy,
        method_options=method_options,
        run=RunOptions(**options),
        device=args.device,
        **shared,
    )
    figures = not args.no_figures
    if figures:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(MissingDependencyError("figures need matplotlib: pip install 'attrflow[viz]' (or --no-figures)"))
            figures = False
    report.export(out, figures=figures)
    print(report.summary())
    print(f"\nwrote {out / 'faithfulness.json'}, {out / 'faithfulness.html'} and the tables as CSV in {out}")
    return 0
