"""``attrflow evaluate``: faithfulness of attention, rollout, flow, AttAttr and gradient token scores on a dataset."""

from __future__ import annotations

import argparse

from attrflow.cli._common import (
    add_attribution_options,
    add_data_options,
    add_list_option,
    add_model_option,
    add_target_option,
    check_outputs,
    load_data,
    method_names,
    model_for_data,
    positive_int,
    split_list,
    steps_value,
)
from attrflow.cli._run_options import add_run_arguments, run_options
from attrflow.errors import InvalidInputError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    add_model_option(parser, dataset=True)
    add_data_options(parser)
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
    add_list_option(
        parser,
        "--methods",
        default=None,
        help="registered methods to evaluate, commas or spaces (default: all that apply; `attrflow methods` lists them)",
    )
    add_list_option(
        parser,
        "--references",
        default=list(REFERENCES),
        metavar="REF",
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
    add_target_option(parser, about="whose probability is explained (the paper: the gold label)")
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
    add_list_option(
        parser,
        "--bins",
        default=[str(b) for b in DEFAULT_BINS],
        metavar="K",
        help="AOPC fractions of tokens, commas or spaces (default: 0.1 0.2 ... 1.0)",
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
    from attrflow.errors import MissingDependencyError
    from attrflow.methods.registry import get_method
    from attrflow.runner import RunOptions, run_lock

    check_outputs(args, directories=("out",))
    methods = method_names(args.methods)
    references = method_names(args.references) or ["blankout", "gradient_l2"]
    bins = _numbers("--bins", args.bins)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    with run_lock(out):
        dataset = load_data(args, args.split)
        options = run_options(args)
        options["out_dir"] = out / "run"
        options["examples_per_batch"] = options.pop("batch_size")
        method_options = {"integrated_gradients": {"steps": args.ig_steps}} if args.ig_steps is not None else None
        shared = {"steps": args.steps, "rule": args.rule, "reduction": args.reduction, "replacement": args.replacement}
        if args.batch_size is not None:
            shared["batch_size"] = args.batch_size
        chosen = [get_method(m) for m in (methods or [])] or None
        if chosen is not None:
            # keep only the shared options some chosen method (or reference) has: --reduction is the attention methods'
            accepted = {k for m in chosen + [get_method(r) for r in references] for k in m.options()}
            shared = {k: v for k, v in shared.items() if k in accepted}
        report = faithfulness(
            model_for_data(args.model, args.data),
            dataset,
            methods=methods,
            references=references,
            examples=args.examples,
            selection=args.selection,
            seed=args.seed,
            target=args.target,
            bins=bins,
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


def _numbers(option: str, values: list[str]) -> list[float]:
    try:
        return [float(v) for v in split_list(values)]
    except ValueError:
        raise InvalidInputError(f"{option} takes numbers, got {' '.join(values)!r}") from None
