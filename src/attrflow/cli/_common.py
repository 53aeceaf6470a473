"""Options shared by several subcommands, defined once, and the checks every subcommand makes before it works.

- Option values: whole numbers, steps, lists (``--methods a,b`` and ``--methods a b`` alike, everywhere).
- ``--model``: a built-in name or a checkpoint directory; dataset commands default to the built-in model trained on
  a built-in ``--data`` (:func:`model_for_data`).
- ``--data`` and how a file's columns are read (``--text-column``, ``--label-column``, ...); the data loader's hints
  name these options (:data:`CLI_SPELLING`).
- Output paths (``--out``, ``--json``, ``--save``, a run directory) are checked before any computation
  (:func:`check_output_path`): a directory where a file goes, a path under a file, a folder that cannot be
  written are one line and exit status 1, not a traceback after the work.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrflow.errors import InvalidInputError
from attrflow.methods.quadrature import RULES

if TYPE_CHECKING:
    from attrflow.data import Dataset

DEFAULT_MODEL = "sentiment"

STDOUT = "-"
"""An output path that means standard output (``--json -``)."""

CLI_SPELLING: dict[str, str] = {
    "text": "--text-column",
    "text_pair": "--pair-column",
    "label": "--label-column",
    "label_names": "--label-names",
    "format": "--format",
    "encoding": "--encoding",
    "device": "--device",
    "model": "--model",
    "target": "--target",
}
"""How the library's keywords are spelled on the command line (:func:`attrflow.validation.option_hint`)."""


# ---------------------------------------------------------------------------------------------- value types
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


def split_list(values: str | Sequence[str] | None) -> list[str]:
    """The items of a list option: ``["a,b", "c"]`` (or ``"a, b c"``) → ``["a", "b", "c"]``; commas and spaces
    both separate, in every list option of every command."""
    if values is None:
        return []
    parts = [values] if isinstance(values, str) else list(values)
    return [item for part in parts for chunk in part.split(",") for item in chunk.split() if item]


def add_list_option(parser: Any, flag: str, *, help: str, metavar: str = "M", **kwargs: Any) -> None:
    """A list option that takes ``--flag a,b``, ``--flag a b`` or both (read it with :func:`split_list`)."""
    parser.add_argument(flag, nargs="+", metavar=f"{metavar}[,{metavar}...]", help=help, **kwargs)


def method_names(values: Sequence[str] | None) -> list[str] | None:
    """``--methods`` as registered names in the given order (None: not given, or ``all``).

    Raises:
        InvalidInputError: an unknown name (the message lists the registered ones).
    """
    from attrflow.methods.registry import get_method

    names = split_list(values)
    if not names or names == ["all"]:
        return None
    return list(dict.fromkeys(get_method(name).name for name in names))


# ---------------------------------------------------------------------------------------------- model
def add_model_option(parser: argparse.ArgumentParser, *, dataset: bool = False) -> None:
    """``--model`` (a built-in name or a local checkpoint directory) and ``--device``.

    With ``dataset``, the default is the built-in model trained on a built-in ``--data`` (see
    :func:`model_for_data`).
    """
    default = (
        f"the built-in model of a built-in --data ('agreement' for agreement, 'sentiment' for tweets-sentiment), "
        f"else {DEFAULT_MODEL}"
        if dataset
        else DEFAULT_MODEL
    )
    parser.add_argument(
        "--model",
        default=None if dataset else DEFAULT_MODEL,
        metavar="NAME_OR_PATH",
        help=f"built-in model ('sentiment', 'agreement') or a local transformers checkpoint directory (default: "
        f"{default}); nothing is downloaded",
    )
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")


def model_for_data(model: str | None, data: str) -> str:
    """The model a dataset command runs: ``--model`` when given, else the built-in model trained on the built-in
    dataset ``data``, else :data:`DEFAULT_MODEL`. Every dataset command (evaluate, heads, attack, leaderboard)
    resolves its model here; the library then refuses a model whose classes are not the dataset's."""
    if model is not None:
        return model
    from attrflow.zoo import BUILTIN_MODELS, builtin_info

    for name in BUILTIN_MODELS:
        if builtin_info(name).dataset == data:
            return name
    return DEFAULT_MODEL


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


def target_word(text: str) -> str:
    """argparse type of the dataset commands' ``--target``: ``label`` or ``predicted`` (``gold``, the old word for
    ``label``, is read as ``label`` with a deprecation warning)."""
    from attrflow.validation import target_rule

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            rule: str = target_rule(text)
        except InvalidInputError:
            raise argparse.ArgumentTypeError(f"expected label or predicted, got {text!r}") from None
    for warning in caught:  # a deprecation meant for the person at the terminal: shown (FutureWarning)
        warnings.warn(str(warning.message), FutureWarning, stacklevel=2)
    return rule


def add_target_option(parser: argparse.ArgumentParser, *, default: str = "label", about: str) -> None:
    """``--target label|predicted``: the same words in every dataset command (``about``: what the class is for)."""
    parser.add_argument(
        "--target",
        type=target_word,
        default=default,
        metavar="{label,predicted}",
        help=f"class {about}: the example's gold label or the model's prediction (default: {default})",
    )


# ---------------------------------------------------------------------------------------------- data
def add_data_options(parser: argparse.ArgumentParser, *, help: str | None = None) -> None:
    """``--data`` and how a file's columns and labels are read (``--text-column``, ``--pair-column``,
    ``--label-column``, ``--label-names``, ``--format``, ``--encoding``)."""
    parser.add_argument(
        "--data",
        required=True,
        metavar="NAME_OR_FILE",
        help=help
        or "built-in dataset ('tweets-sentiment', 'agreement'), a labelled CSV/TSV/JSONL file or a folder of them",
    )
    group = parser.add_argument_group("data files", "how a CSV/TSV/JSONL file is read (default: found from the header)")
    group.add_argument("--text-column", default=None, metavar="NAME", help="the column holding the text")
    group.add_argument(
        "--pair-column", default=None, metavar="NAME", help="the column of the second text of sentence pairs"
    )
    group.add_argument(
        "--label-column", default=None, metavar="NAME", help="the column holding the gold label ('none': no labels)"
    )
    group.add_argument(
        "--label-names",
        default=None,
        metavar="A,B,...",
        help="the class names in the model's order, when the file's labels are names (or to name indices)",
    )
    group.add_argument("--format", default=None, choices=("csv", "tsv", "jsonl"), help="when the suffix does not say")
    group.add_argument("--encoding", default="utf-8", help="the file's text encoding (default: utf-8)")


def load_data(args: argparse.Namespace, split: str | None) -> Dataset:
    """The dataset of ``--data`` (one ``split``), read with the column options of :func:`add_data_options`."""
    from attrflow.data import load_dataset

    options: dict[str, Any] = {}
    column = getattr(args, "text_column", None)
    if column is not None:
        options["text"] = column
    pair = getattr(args, "pair_column", None)
    if pair is not None:
        options["text_pair"] = None if pair.lower() == "none" else pair
    label = getattr(args, "label_column", None)
    if label is not None:
        options["label"] = None if label.lower() == "none" else label
    names = getattr(args, "label_names", None)
    if names is not None:
        options["label_names"] = split_list(names)
    if getattr(args, "format", None) is not None:
        options["format"] = args.format
    if getattr(args, "encoding", "utf-8") != "utf-8":
        options["encoding"] = args.encoding
    return load_dataset(args.data, split=split, **options)


# ---------------------------------------------------------------------------------------------- outputs
def check_output_path(
    path: str | os.PathLike[str] | None, *, option: str, directory: bool = False, stdout: bool = False
) -> None:
    """Refuse an output path that cannot be written, before any work: one clear line instead of a traceback after
    the computation.

    Args:
        path: the path given (None: the option was not given; nothing to check).
        option: the option's name for the message (``"--out"``).
        directory: the path is a directory to create or reuse (a run directory), not a file.
        stdout: ``-`` means standard output.

    Raises:
        InvalidInputError: the path is a directory where a file goes (or a file where a directory goes), lies
            under a file (``/dev/null/x.html``), or its folder cannot be written.
    """
    if path is None or (stdout and str(path) == STDOUT):
        return
    target = Path(path)
    if str(path) == "":
        raise InvalidInputError(f"{option}: the path is empty")
    if directory and target.exists() and not target.is_dir():
        raise InvalidInputError(f"{option} {path}: exists and is not a directory; give a directory")
    if not directory and target.is_dir():
        raise InvalidInputError(f"{option} {path}: is a directory; give a file name (e.g. {target / 'out'})")
    if not directory and target.exists() and not os.access(target, os.W_OK):
        raise InvalidInputError(f"{option} {path}: the file exists and cannot be overwritten (permission denied)")
    if directory and target.is_dir():
        if not os.access(target, os.W_OK | os.X_OK):
            raise InvalidInputError(f"{option} {path}: cannot write into this directory (permission denied)")
        return
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InvalidInputError(f"{option} {path}: {parent} is not a directory, so nothing can be written under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInputError(f"{option} {path}: cannot write into {parent} (permission denied)")


def check_outputs(args: argparse.Namespace, files: Sequence[str] = (), directories: Sequence[str] = ()) -> None:
    """:func:`check_output_path` for each named option of ``args`` (``files``: file outputs, ``-`` allowed for
    ``json``; ``directories``: run or export directories). Call it first thing in a subcommand."""
    for name in files:
        check_output_path(getattr(args, name, None), option=f"--{name.replace('_', '-')}", stdout=name == "json")
    for name in directories:
        check_output_path(getattr(args, name, None), option=f"--{name.replace('_', '-')}", directory=True)
