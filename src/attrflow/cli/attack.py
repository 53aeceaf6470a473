"""``attrflow attack``: mine adversarial triggers from attribution patterns and measure what they do (paper §5).

Writes ``DIR/attack.json``, ``DIR/patterns.parquet``, ``DIR/attack.html`` (and ``DIR/attack.png`` when matplotlib
is installed); the mining run itself lives in ``DIR/mining`` and resumes when the command is run again.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from attrflow.cli._common import add_model_option, positive_int, steps_value
from attrflow.cli._run_options import add_run_arguments, run_options


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``attack`` subcommand."""
    from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_STEPS
    from attrflow.methods.quadrature import RULES

    parser = subparsers.add_parser(
        "attack",
        help="mine adversarial triggers from attribution patterns and evaluate them against a random control",
        description="Adversarial triggers from self-attention attribution (Hao et al., AAAI 2021, §5): mine each "
        "example's strongest attention pattern on one split, insert the top patterns' word-pieces into every "
        "example of another split at the same relative positions, and compare the accuracy per gold label with "
        "the clean inputs and with random tokens at the same positions.",
    )
    add_model_option(parser)
    parser.add_argument(
        "--data",
        required=True,
        metavar="NAME_OR_PATH",
        help="a built-in dataset ('tweets-sentiment', 'agreement'), a labelled CSV/TSV/JSONL file or a directory",
    )
    parser.add_argument("--mine-split", default="train", help="split to mine patterns on (default: train)")
    parser.add_argument(
        "--mine-examples",
        type=positive_int,
        default=500,
        metavar="N",
        help="mine N examples of the split (default: 500, as the paper)",
    )
    parser.add_argument(
        "--mine-sample",
        choices=("first", "random"),
        default="first",
        help="mine the first N examples (as the official scripts; default) or N drawn at random with --seed "
        "(for datasets sorted by label, such as the built-in tweets)",
    )
    parser.add_argument("--eval-split", default="test", help="split to attack (default: test)")
    parser.add_argument(
        "--eval-examples",
        type=positive_int,
        default=None,
        metavar="N",
        help="attack N examples (default: all)",
    )
    parser.add_argument(
        "--eval-sample",
        choices=("first", "random"),
        default="first",
        help="with --eval-examples: the first N (default) or N drawn at random with --seed",
    )
    parser.add_argument("--top", type=positive_int, default=3, metavar="K", help="triggers to evaluate (default: 3)")
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
    parser.add_argument(
        "--control-seeds",
        type=positive_int,
        default=5,
        metavar="N",
        help="random-token draws per trigger (default: 5)",
    )
    parser.add_argument("--no-control", action="store_true", help="skip the random-token control")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random control and of --mine-sample random (default: 0)"
    )
    add_run_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``attrflow attack``."""
    import attrflow
    from attrflow.analysis.triggers import attack, mine_patterns
    from attrflow.data import load_dataset  # type: ignore[attr-defined, unused-ignore]
    from attrflow.errors import MissingDependencyError

    out = Path(args.out)
    model = attrflow.load_model(args.model, device=args.device)
    mine_data = load_dataset(args.data, split=args.mine_split)
    eval_data = load_dataset(args.data, split=args.eval_split)
    options = run_options(args)
    options["out_dir"] = out / "mining"
    patterns = mine_patterns(
        model,
        mine_data,
        examples=args.mine_examples,
        sample=args.mine_sample,
        seed=args.seed,
        steps=args.steps,
        rule=args.rule,
        min_score=args.min_score,
        min_tokens=args.min_tokens,
        **options,
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
        sample=args.eval_sample,
        progress=not args.no_progress,
    )
    written = [patterns.to_parquet(out / "patterns.parquet"), report.save(out / "attack.json")]
    html_path = out / "attack.html"
    html_path.write_text(report.to_html(), encoding="utf-8")
    written.append(html_path)
    try:
        figure = report.plot()
    except MissingDependencyError:
        print("(no figure: install attrflow[viz] for attack.png)")
    else:
        figure.savefig(out / "attack.png", dpi=150)
        written.append(out / "attack.png")

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
