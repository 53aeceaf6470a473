"""``attrflow zoo``: list, train and evaluate the built-in models."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from attrflow.errors import InvalidInputError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``attrflow zoo {list,train,evaluate}``."""
    parser = subparsers.add_parser(
        "zoo",
        help="list, train and evaluate the built-in models",
        description="The models shipped with attrflow (sentiment: MiniLM-L6 fine-tuned on labelled tweets; "
        "agreement: a 6-layer encoder trained on a subject-verb agreement grammar): list them with their measured "
        "accuracy, retrain them with their recipes, or evaluate them on their datasets. Nothing is downloaded.",
    )
    commands = parser.add_subparsers(title="zoo commands", metavar="ZOO_COMMAND")

    def usage(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=usage)

    listing = commands.add_parser("list", help="the built-in models and their measured accuracy")
    listing.set_defaults(func=_list)

    train = commands.add_parser(
        "train",
        help="train a built-in model with its recipe (uses a GPU when one is present)",
        description="Train a built-in model with its shipped recipe. Writes the weights and training.json "
        "(recipe, time, validation and test accuracy) to --out; `attrflow zoo evaluate NAME --weights DIR` "
        "and attrflow.zoo.load_builtin(NAME, weights=DIR) use them.",
    )
    train.add_argument("name", help="sentiment | agreement")
    train.add_argument("--out", type=Path, default=None, help="output folder (default: ./zoo-out/NAME)")
    train.add_argument("--epochs", type=int, default=None, help="override the recipe's number of epochs")
    train.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    train.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: GPU when present)")
    train.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)

    evaluate = commands.add_parser("evaluate", help="accuracy of a built-in model on its dataset")
    evaluate.add_argument("name", help="sentiment | agreement")
    evaluate.add_argument("--split", default="test", choices=("train", "validation", "test"))
    evaluate.add_argument("--weights", type=Path, default=None, help="a folder from `zoo train` (default: shipped)")
    evaluate.add_argument("--limit", type=int, default=None, help="only the first N examples of the split")
    evaluate.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    evaluate.add_argument("--json", action="store_true", help="print the figures as JSON")
    evaluate.set_defaults(func=_evaluate)


def _threads(count: int | None) -> None:
    if count is not None:
        import torch

        if count < 1:
            raise InvalidInputError(f"--threads must be at least 1, got {count}")
        torch.set_num_threads(count)


def _list(_args: argparse.Namespace) -> int:
    from attrflow.zoo import BUILTIN_MODELS, builtin_info, shipped_report

    for name in BUILTIN_MODELS:
        info = builtin_info(name)
        report = shipped_report(name)
        figures = ""
        if report is not None:
            figures = f"  test accuracy {report['test_accuracy']:.4f}, validation {report['validation_accuracy']:.4f}"
        print(f"{name:<10} {info.description}")
        print(f"{'':<10} {info.architecture}")
        print(f"{'':<10} trained on the built-in dataset {info.dataset!r}{figures}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from attrflow.zoo import train_builtin

    _threads(args.threads)
    out = args.out or Path("zoo-out") / args.name
    report = train_builtin(
        args.name, out, epochs=args.epochs, seed=args.seed, device=args.device, progress=not args.no_progress
    )
    print(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from attrflow.data import load_dataset
    from attrflow.zoo import builtin_info, evaluate, load_builtin

    _threads(args.threads)
    info = builtin_info(args.name)
    dataset = load_dataset(info.dataset, split=args.split)
    if args.limit is not None:
        dataset = dataset[: args.limit]
    model, tokenizer = load_builtin(args.name, weights=args.weights)
    accuracy, predictions = evaluate(model, tokenizer, dataset, max_length=tokenizer.model_max_length, progress=True)
    figures: dict[str, float | int | str] = {
        "model": args.name,
        "split": args.split,
        "examples": len(dataset),
        "accuracy": round(accuracy, 5),
        "majority_baseline": round(max(dataset.label_counts().values()) / len(dataset), 5),
    }
    for label, name in enumerate(dataset.label_names):
        hits = [p == e.label for p, e in zip(predictions, dataset, strict=True) if e.label == label]
        figures[f"accuracy_{name}"] = round(sum(hits) / max(len(hits), 1), 5)
    if info.dataset == "agreement":
        hits = [p == e.label for p, e in zip(predictions, dataset, strict=True) if e.meta["attractors"] > 0]
        figures["attractor_examples"] = len(hits)
        figures["attractor_accuracy"] = round(sum(hits) / max(len(hits), 1), 5)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
    return 0
