"""``attrflow explain``: attribute one input and print the prediction and its strongest interactions."""

from __future__ import annotations

import argparse

from attrflow.cli._common import add_attribution_options, add_model_option, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
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
        "--target", type=int, default=None, help="class (or token id) to explain; default: the prediction"
    )
    add_attribution_options(parser)
    parser.add_argument("--top", type=positive_int, default=10, help="how many interactions to list (default: 10)")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the full result as JSON")
    parser.add_argument("--save", default=None, metavar="FILE", help="write the result as .safetensors (reloadable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``attrflow explain``."""
    import attrflow

    model = attrflow.load_model(args.model, device=args.device)
    inputs = args.text if args.pair is None else (args.text, args.pair)
    result = attrflow.attribute(
        model, inputs, target=args.target, steps=args.steps, rule=args.rule, batch_size=args.batch_size
    )
    predicted = model.label_name(result.predicted) or str(result.predicted)
    target = result.target_label or str(result.target)
    print(
        f"model:      {model.name} ({type(model.model).__name__}, {model.num_layers} layers x {model.num_heads} heads)"
    )
    print(f"tokens:     {' '.join(result.tokens)}")
    print(f"prediction: {predicted}   explained: {target} (p = {result.probability:.4f})")
    gap = float(result.completeness_gap.abs().max())
    print(
        f"method:     AttAttr, {result.settings['rule']} with {result.settings['steps']} points; max |completeness gap| = {gap:.2e}"
    )
    print()
    table = result.top_interactions(args.top)
    print(f"strongest interactions (query token attends to key token; score = attribution to p({target})):")
    print(
        table[["layer", "head", "from_token", "to_token", "score"]].to_string(
            index=False, float_format=lambda x: f"{x:.4g}"
        )
    )
    if args.json:
        print(f"\nwrote {result.to_json(args.json)}")
    if args.save:
        print(f"wrote {result.save(args.save)}")
    return 0
