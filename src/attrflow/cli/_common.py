"""Options shared by several subcommands, defined once."""

from __future__ import annotations

import argparse

from attrflow.methods.quadrature import RULES

DEFAULT_MODEL = "sentiment"


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def steps_value(text: str) -> int | str:
    """argparse type: ``auto`` or a whole number >= 1."""
    return "auto" if text == "auto" else positive_int(text)


def add_model_option(parser: argparse.ArgumentParser) -> None:
    """``--model``: a built-in model name or a local checkpoint directory."""
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="NAME_OR_PATH",
        help="built-in model ('sentiment', 'agreement') or a local transformers checkpoint directory "
        f"(default: {DEFAULT_MODEL}); nothing is downloaded",
    )
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")


def add_attribution_options(parser: argparse.ArgumentParser) -> None:
    """``--steps``, ``--rule``, ``--batch-size`` for self-attention attribution."""
    from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_STEPS

    parser.add_argument(
        "--steps",
        type=steps_value,
        default=DEFAULT_STEPS,
        help=f"quadrature points per layer, or 'auto': refine each layer until its completeness gap is small "
        f"(default: {DEFAULT_STEPS})",
    )
    parser.add_argument(
        "--rule",
        choices=RULES,
        default=DEFAULT_RULE,
        help=f"quadrature rule (default: {DEFAULT_RULE}); riemann-left = official code, riemann-right = paper",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="most interpolation points per forward pass (memory only; results do not change)",
    )
