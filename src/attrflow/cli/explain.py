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
    parser.add_argument(
        "--methods",
        default=None,
        metavar="M[,M...]",
        help="registered methods to run, comma-separated (`attrflow methods` lists them; default: attattr, "
        "attention, rollout, flow)",
    )
    parser.add_argument("--out", default=None, metavar="FILE.html", help="write the self-contained HTML report")
    parser.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="write every method's scores (and the full attribution, when attattr ran) as JSON",
    )
    parser.add_argument("--save", default=None, metavar="FILE", help="write the result as .safetensors (reloadable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``attrflow explain``."""
    import attrflow
    from attrflow.analysis.explanation import default_methods, explain
    from attrflow.methods.registry import get_method
    from attrflow.results import AttentionAttribution

    methods = [get_method(m).name for m in (args.methods or ",".join(default_methods())).split(",") if m.strip()]
    if args.save and "attattr" not in methods:
        raise attrflow.InvalidInputError("--save writes the attribution: include attattr in --methods")
    model = attrflow.load_model(args.model, device=args.device)
    inputs = args.text if args.pair is None else (args.text, args.pair)
    explanation = explain(model, inputs, methods=methods, target=args.target, steps=args.steps, rule=args.rule)
    result = explanation.result
    print(
        f"model:      {model.name} ({type(model.model).__name__}, {model.num_layers} layers x {model.num_heads} heads)"
    )
    if model.is_encoder_decoder:
        print(
            f"layers:     the encoder's self-attention ({model.site_names[0]} ...); the decoder's "
            f"{len(model.other_sites)} self-/cross-attention calls run unchanged and are not explained"
        )
    print(f"tokens:     {' '.join(result.tokens)}")
    if isinstance(result, AttentionAttribution):
        predicted = model.label_name(result.predicted) or str(result.predicted)
        target = result.target_label or str(result.target)
        print(f"prediction: {predicted}   explained: {target} (p = {result.probability:.4f})")
        gap = float(result.completeness_gap.abs().max())
        rule, steps = result.settings["rule"], result.settings["steps"]
        print(f"method:     AttAttr, {rule} with {steps} points; max |completeness gap| = {gap:.2e}")
        print()
        table = result.top_interactions(args.top)
        print(f"strongest interactions (query token attends to key token; score = attribution to p({target})):")
        columns = ["layer", "head", "from_token", "to_token", "score"]
        print(table[columns].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    else:
        print(f"prediction: {result.predicted_label or result.predicted} (p = {result.probability:.4f})")
    width = max((len(name) for name in explanation.scores), default=9) + 2
    for name, scores in explanation.scores.items():
        print(f"{name + ':':{width}s} " + ", ".join(f"{token} {score:.3g}" for _, token, score in scores.top(5)))
    if args.out:
        print(f"\nreport:     {explanation.write(args.out)}")
    if args.json:
        from attrflow.storage import atomic_write_json

        data = explanation.to_dict()
        if isinstance(result, AttentionAttribution):
            data["attribution"] = result.to_dict()
        print(f"wrote {atomic_write_json(args.json, data, indent=None)}")
    if args.save and isinstance(result, AttentionAttribution):
        print(f"wrote {result.save(args.save)}")
    return 0
