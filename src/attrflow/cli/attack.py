"""``attrflow attack``: mine adversarial triggers from attribution patterns and measure what they do (paper §5).

Writes ``DIR/attack.json``, ``DIR/attack.safetensors`` (the report, for :func:`attrflow.load_result`),
``DIR/patterns.parquet``, ``DIR/attack.html`` (and ``DIR/attack.png`` when matplotlib is installed), each
atomically; the mining run itself lives in ``DIR/mining`` and resumes when the command is run again.
"""

from __future__ import annotations

import argparse
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from attrflow.data import Dataset
    from attrflow.models import Model
    from attrflow.validation import Selection

# the values of attrflow.validation.Selection, spelled out so that building the parser imports little
SELECTIONS = ("random", "first")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``attack`` subcommand."""
    parser = subparsers.add_parser(
        "attack",
        help="mine adversarial triggers from attribution patterns and evaluate them against a random control",
        description="Adversarial triggers from self-attention attribution (Hao et al., AAAI 2021, §5): mine each "
        "example's strongest attention pattern on one split, insert the top patterns' word-pieces into every "
        "example of another split at the same relative positions, and compare the accuracy per gold label with "
        "the clean inputs and with random tokens at the same positions.",
    )
    add_model_option(parser, dataset=True)
    add_data_options(parser)
    _add_mining_arguments(parser)
    parser.add_argument("--eval-split", default="test", help="split to attack (default: test)")
    parser.add_argument(
        "--eval-examples",
        type=positive_int,
        default=None,
        metavar="N",
        help="attack N examples (default: all)",
    )
    parser.add_argument(
        "--eval-selection",
        choices=SELECTIONS,
        default="random",
        help="with --eval-examples: N drawn at random with --seed (default) or the first N",
    )
    parser.add_argument(
        "--eval-sample", choices=SELECTIONS, default=None, help="deprecated: the old name of --eval-selection"
    )
    parser.add_argument("--top", type=positive_int, default=3, metavar="K", help="triggers to evaluate (default: 3)")
    parser.add_argument(
        "--control-seeds",
        type=positive_int,
        default=5,
        metavar="N",
        help="random-token draws per trigger (default: 5)",
    )
    parser.add_argument("--no-control", action="store_true", help="skip the random-token control")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random control and of the random selections (default: 0)"
    )
    add_run_arguments(parser)
    parser.set_defaults(func=run)


def _add_mining_arguments(parser: argparse.ArgumentParser) -> None:
    """``--mine-split --mine-examples --mine-selection --steps --rule --min-score --min-tokens``."""
    from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_STEPS
    from attrflow.methods.quadrature import RULES

    parser.add_argument("--mine-split", default="train", help="split to mine patterns on (default: train)")
    parser.add_argument(
        "--mine-examples",
        type=positive_int,
        default=500,
        metavar="N",
        help="mine N examples of the split (default: 500, as the paper)",
    )
    parser.add_argument(
        "--mine-selection",
        choices=SELECTIONS,
        default="random",
        help="mine N examples drawn at random with --seed (default; the built-in splits are sorted by label) or "
        "the first N (as the official scripts)",
    )
    parser.add_argument(
        "--mine-sample", choices=SELECTIONS, default=None, help="deprecated: the old name of --mine-selection"
    )
    parser.add_argument(
        "--steps",
        type=steps_value,
        default=DEFAULT_STEPS,
        help=f"quadrature points of the attribution, or 'auto': refine each layer until its completeness gap is "
        f"small (default: {DEFAULT_STEPS})",
    )
    parser.add_argument(
        "--rule", choices=RULES, default=DEFAULT_RULE, help=f"quadrature rule (default: {DEFAULT_RULE})"
    )
    parser.add_argument(
        "--min-score",
        type=float,
        default=0.02,
        help="summed pattern score a trigger needs (default: 0.02, as the official code)",
    )
    parser.add_argument(
        "--min-tokens",
        type=int,
        default=0,
        metavar="N",
        help="mine only examples of at least N tokens (the official SST-2 setting is 15; default: 0)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``attrflow attack``."""
    from attrflow.models import load_model
    from attrflow.runner import run_lock

    check_outputs(args, directories=("out",))
    mine_selection = _selection(args.mine_selection, args.mine_sample, "--mine-sample", "--mine-selection")
    eval_selection = _selection(args.eval_selection, args.eval_sample, "--eval-sample", "--eval-selection")
    out = Path(args.out)
    with run_lock(out):
        model = load_model(model_for_data(args.model, args.data), device=args.device)
        mine_data = load_data(args, args.mine_split)
        eval_data = load_data(args, args.eval_split)
        model.check_dataset(mine_data)  # before mining: the classes must be the data's
        return _attack(args, model, mine_data, eval_data, mine_selection, eval_selection)


def _attack(
    args: argparse.Namespace,
    model: Model,
    mine_data: Dataset,
    eval_data: Dataset,
    mine_selection: Selection,
    eval_selection: Selection,
) -> int:
    from attrflow.analysis.triggers import attack, mine_patterns
    from attrflow.errors import MissingDependencyError

    out = Path(args.out)
    patterns = mine_patterns(
        model,
        mine_data,
        examples=args.mine_examples,
        selection=mine_selection,
        seed=args.seed,
        steps=args.steps,
        rule=args.rule,
        min_score=args.min_score,
        min_tokens=args.min_tokens,
        run=run_options_value(args, out_dir=out / "mining"),
    )
    report = attack(
        model,
        eval_data,
        patterns,
        top=args.top,
        control=not args.no_control,
        control_seeds=args.control_seeds,
        seed=args.seed,
        examples=args.eval_examples,
        selection=eval_selection,
        progress=not args.no_progress,
    )
    html_path = out / "attack.html"
    report.to_html(html_path)
    written = [
        patterns.to_parquet(out / "patterns.parquet"),
        report.to_json(out / "attack.json"),
        report.save(out / "attack.safetensors"),
        html_path,
    ]
    try:
        figure = report.plot()
    except MissingDependencyError:
        print("(no figure: install attrflow[viz] for attack.png)")
    else:
        from attrflow.viz.plots import save_figure

        written.append(save_figure(figure, out / "attack.png", dpi=150))

    print(f"model:    {model.name}; mined {len(patterns)} examples of {args.data}:{args.mine_split}")
    print(f"attacked: {report.settings['examples']} examples of {args.data}:{args.eval_split}")
    for index, trigger in enumerate(report.triggers):
        label = report.label_name(trigger.label)
        print(f"trigger #{index}: {trigger.describe()}  (score {trigger.score:.4g}, source predicted {label})")
    print()
    frame = report.to_frame()[
        [
            "trigger",
            "tokens",
            "label",
            "count",
            "accuracy_before",
            "accuracy_after",
            "control_accuracy_after",
            "control_std",
        ]
    ]
    print(frame.to_string(index=False, float_format=lambda x: "nan" if math.isnan(x) else f"{x:.3f}"))
    print()
    for path in written:
        print(f"wrote {path}")
    return 0


def _selection(value: Selection, deprecated: Selection | None, old_flag: str, new_flag: str) -> Selection:
    """The selection, or the one the deprecated flag gave (with a warning)."""
    if deprecated is None:
        return value
    message = f"{old_flag} is deprecated and goes in the next release; use {new_flag} (default: random)"
    warnings.warn(message, DeprecationWarning, stacklevel=2)  # the command line prints it as one line
    return deprecated
