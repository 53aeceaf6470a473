"""``attrflow explain``: attribute one input and print the prediction and its strongest interactions."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from attrflow.cli._common import (
    STDOUT,
    add_attribution_options,
    add_list_option,
    add_model_option,
    check_outputs,
    method_names,
    positive_int,
)
from attrflow.errors import InvalidInputError

if TYPE_CHECKING:
    from attrflow.analysis.explanation import Explanation
    from attrflow.models import Model


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``explain`` subcommand."""
    parser = subparsers.add_parser(
        "explain",
        help="explain one input: prediction, strongest attention interactions (AttAttr)",
        description="Self-attention attribution (Hao et al., AAAI 2021) of one input: for every layer, head, "
        "query token and key token, how much the interaction 'query attends to key' contributes to the "
        "predicted probability. Prints the prediction and the strongest interactions.",
    )
    parser.add_argument("text", help="the input text")
    parser.add_argument("--pair", default=None, metavar="TEXT", help="second segment for sentence-pair models")
    add_model_option(parser)
    parser.add_argument(
        "--target",
        default=None,
        metavar="CLASS",
        help="output to explain: a class index or name (a token id or token for language models); default: the "
        "prediction",
    )
    add_attribution_options(parser)
    parser.add_argument("--top", type=positive_int, default=10, help="how many interactions to list (default: 10)")
    add_list_option(
        parser,
        "--methods",
        default=None,
        help="registered methods to run, commas or spaces (`attrflow methods` lists them; default: attattr, "
        "attention, rollout, flow); put the text before this option",
    )
    parser.add_argument("--out", default=None, metavar="FILE.html", help="write the self-contained HTML report")
    parser.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="write every method's scores (and the full attribution, when attattr ran) as JSON; '-' writes it to "
        "standard output (the summary then goes to standard error)",
    )
    parser.add_argument("--save", default=None, metavar="FILE", help="write the result as .safetensors (reloadable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``attrflow explain``."""
    import attrflow
    from attrflow.analysis.explanation import default_methods, explain
    from attrflow.results import AttentionAttribution

    check_outputs(args, files=("out", "json", "save"))
    methods = method_names(args.methods) or list(default_methods())
    if args.save and "attattr" not in methods:
        raise attrflow.InvalidInputError("--save writes the attribution: include attattr in --methods")
    model = attrflow.load_model(args.model, device=args.device)
    inputs = args.text if args.pair is None else (args.text, args.pair)
    target = target_value(model, args.target)
    explanation = explain(model, inputs, methods=methods, target=target, steps=args.steps, rule=args.rule)
    to_stdout = args.json == STDOUT
    say = functools.partial(print, file=sys.stderr if to_stdout else sys.stdout)
    _summary(say, model, explanation, args.top)
    result = explanation.result
    if args.out:
        say(f"\nreport:     {explanation.write(args.out)}")
    if args.json:
        data = explanation.to_dict()
        if isinstance(result, AttentionAttribution):
            data["attribution"] = result.to_dict()
        if to_stdout:
            json.dump(data, sys.stdout)
            sys.stdout.write("\n")
        else:
            from attrflow.storage import atomic_write_json

            say(f"wrote {atomic_write_json(args.json, data, indent=None)}")
    if args.save and isinstance(result, AttentionAttribution):
        say(f"wrote {result.save(args.save)}")
    return 0


def target_value(model: Model, text: str | None) -> int | None:
    """``--target``: a class index or name (a token id or a single token for language models)."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    if model.task == "causal-lm" and model.tokenizer is not None:
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            return int(ids[0])
        raise InvalidInputError(f"--target {text!r} is {len(ids)} tokens; give one token or a token id")
    names = {str(model.label_name(i)).lower(): i for i in range(model.num_outputs) if model.label_name(i)}
    if text.lower() in names:
        return names[text.lower()]
    known = ", ".join(f"{i} ({model.label_name(i)})" for i in range(model.num_outputs))
    raise InvalidInputError(f"--target {text!r} is not a class of this model; its classes are {known}")


def _summary(say: Callable[..., None], model: Model, explanation: Explanation, top: int) -> None:
    """The human-readable lines: model, tokens, prediction, strongest interactions, each method's top tokens."""
    from attrflow.results import AttentionAttribution

    result = explanation.result
    architecture = type(model.model).__name__
    say(f"model:      {model.name} ({architecture}, {model.num_layers} layers x {model.num_heads} heads)")
    if model.is_encoder_decoder:
        say(
            f"layers:     the encoder's self-attention ({model.site_names[0]} ...); the decoder's "
            f"{len(model.other_sites)} self-/cross-attention calls run unchanged and are not explained"
        )
    say(f"tokens:     {' '.join(result.tokens)}")
    if isinstance(result, AttentionAttribution):
        predicted = model.label_name(result.predicted) or str(result.predicted)
        target = result.target_label or str(result.target)
        say(f"prediction: {predicted}   explained: {target} (p = {result.probability:.4f})")
        gap = float(result.completeness_gap.abs().max())
        rule, steps = result.settings["rule"], result.settings["steps"]
        say(f"method:     AttAttr, {rule} with {steps} points; max |completeness gap| = {gap:.2e}")
        say()
        table = result.top_interactions(top)
        say(f"strongest interactions (query token attends to key token; score = attribution to p({target})):")
        columns = ["layer", "head", "from_token", "to_token", "score"]
        say(table[columns].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    else:
        say(f"prediction: {result.predicted_label or result.predicted} (p = {result.probability:.4f})")
    width = max((len(name) for name in explanation.scores), default=9) + 2
    for name, scores in explanation.scores.items():
        say(f"{name + ':':{width}s} " + ", ".join(f"{token} {score:.3g}" for _, token, score in scores.top(5)))
