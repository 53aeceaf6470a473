""":func:`leaderboard`: every registered method that applies to a model, and the two baselines, on one protocol
over a dataset — faithfulness (Spearman, AOPC, normalised AOPC), ground truth, sanity and cost."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import nn

from attrflow.analysis.faithfulness.evaluate import dataset_name, select_examples, shared_options
from attrflow.analysis.faithfulness.metrics import DEFAULT_BINS, Removal, check_bins
from attrflow.analysis.faithfulness.naopc import DEFAULT_BEAM_WIDTH, DEFAULT_EXACT_MAX
from attrflow.analysis.leaderboard.options import REFERENCES, LeaderboardOptions
from attrflow.analysis.leaderboard.result import Leaderboard
from attrflow.analysis.leaderboard.task import LeaderboardTask
from attrflow.data import sample
from attrflow.errors import InvalidInputError
from attrflow.methods.registry import get_method, method_names
from attrflow.models import Model, load_model
from attrflow.runner import RunOptions, run_dataset
from attrflow.validation import Selection, TargetRule, check_choice, check_int, target_rule

__all__ = ["Depths", "leaderboard", "leaderboard_methods"]

Depths = Sequence[int] | Literal["cascade", "full"]


def leaderboard_methods(model: Model, methods: Sequence[str] | str | None = "all") -> tuple[str, ...]:
    """The methods a leaderboard evaluates: those chosen (default every registered method that can explain
    ``model``), then the baselines and the references that are not among them."""
    if methods is None or methods == "all":
        chosen = [n for n in method_names() if get_method(n).unsupported(model) is None]
    else:
        items = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
        chosen = [get_method(m).name for m in items if m]
        if not chosen:
            raise InvalidInputError(f"methods is empty; choose from {', '.join(method_names())}")
        for name in chosen:
            get_method(name).check(model)
    floors = [n for n in method_names() if get_method(n).baseline]
    return tuple(dict.fromkeys([*chosen, *floors, *REFERENCES.values()]))


def _depths(depths: Depths, num_layers: int) -> tuple[int, ...]:
    if depths == "cascade":
        return tuple(range(1, num_layers + 1))
    if depths == "full":
        return (num_layers,)
    if isinstance(depths, str):
        raise InvalidInputError(f"sanity_depths must be 'cascade', 'full' or a list of layer counts, got {depths!r}")
    chosen = tuple(sorted({check_int("sanity depth", d, minimum=1) for d in depths}))
    if not chosen or chosen[-1] > num_layers:
        raise InvalidInputError(f"sanity_depths must be layer counts in 1 … {num_layers}, got {list(depths)}")
    return chosen


def _subsample(ids: Sequence[int], count: int | None, seed: int, salt: int) -> frozenset[int]:
    """``count`` of the sampled ids (all when None), drawn with their own seed so that the subsamples of the sanity
    check, the timing and the normalised AOPC are random parts of the sample (the built-in splits are sorted)."""
    if count is None or count >= len(ids):
        return frozenset(int(i) for i in ids)
    if count <= 0:
        return frozenset()
    rng = np.random.default_rng([seed, salt])
    return frozenset(int(i) for i in rng.choice(np.asarray(ids, dtype=np.int64), size=count, replace=False))


def leaderboard(
    model: str | os.PathLike[str] | Model | nn.Module,
    dataset: Any,
    *,
    methods: Sequence[str] | str | None = "all",
    examples: int | Sequence[int] | None = None,
    selection: Selection = "random",
    seed: int = 0,
    balanced: bool = False,
    target: TargetRule = "label",
    bins: Sequence[float] = DEFAULT_BINS,
    removal: Removal = "delete",
    magnitude: bool = True,
    exclude_special: bool = False,
    naopc_examples: int | None = None,
    exact_max: int = DEFAULT_EXACT_MAX,
    beam_width: int = DEFAULT_BEAM_WIDTH,
    sanity_examples: int | None = 100,
    sanity_depths: Depths = "cascade",
    sanity_threshold: float = 0.8,
    timing_examples: int | None = 50,
    tree: bool = True,
    tree_threshold: float = 0.4,
    random_draws: int = 5,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    run: RunOptions | None = None,
    device: str | None = None,
    batch_size: int = 64,
    **options: Any,
) -> Leaderboard:
    """Which explanation can be trusted, for this model and these data: every method on one protocol.

    Every registered method that can explain the model (or those named), the baselines ``random`` and
    ``position``, and the references ``blankout`` and ``gradient_l2`` are computed on each example from one shared
    context, then judged by: Spearman with blank-out and with the gradient (Abnar & Zuidema 2020; per layer for
    per-layer methods), ERASER's AOPC comprehensiveness and sufficiency (DeYoung et al. 2020), normalised AOPC (Edin
    et al. 2024; exact limits up to ``exact_max`` removable tokens, beam search beyond), the ground truth of the
    agreement data (how often the subject outranks every other noun, by attractor count; the share of the score on
    attractors), the model-randomisation sanity check (Adebayo et al. 2018) and the cost of each method alone. The
    attribution tree's interactions (Hao et al. 2021, §4.3) are masked next to top-attention, top-rollout and random
    ones. Means come with 95 % bootstrap intervals; :meth:`Leaderboard.comparisons` says where one method beats
    another (Wilcoxon signed-rank, Holm-corrected).

    Args:
        model: a built-in name or checkpoint directory (any engine), or a loaded model (local engine only).
        dataset: a sequence of examples (e.g. ``attrflow.load_dataset("agreement", split="test")``).
        methods: ``"all"`` (default) or registered names; the baselines and references are always added.
        examples: how many examples (drawn by ``selection`` with ``seed``), or a list of positions; default all.
        selection: ``"random"`` (default; the built-in splits are sorted by label) or ``"first"``.
        seed: the seed of the sample, of its subsamples, of the random baseline and of the random maskings.
        balanced: draw the same number of examples of every label (``selection="random"``).
        target: the explained class: the gold ``"label"`` (default) or the ``"predicted"`` one.
        bins, removal: the ERASER AOPC protocol (``removal`` serves the normalised AOPC too).
        magnitude: judge signed methods by ``|s|`` in the Spearman, ground-truth and sanity metrics.
        exclude_special: Spearman over the non-special tokens only.
        naopc_examples: how many examples get the normalised AOPC (default all; its limits cost up to
            ``2^exact_max`` variants, or about ``beam_width · m²`` for m removable tokens).
        exact_max, beam_width: exact limits up to this many removable tokens; a beam of this width beyond.
        sanity_examples: how many examples get the randomisation test (0: none; None: all).
        sanity_depths: ``"cascade"`` (1, 2, …, L top layers re-initialised), ``"full"`` (all L) or layer counts;
            ``sanity_spearman`` is the mean Spearman over the steps (the area under the cascade curve).
        sanity_threshold: a method whose median ``sanity_spearman`` exceeds this is flagged.
        timing_examples: how many examples time each method alone (0: none; None: all).
        tree, tree_threshold, random_draws: the attribution tree's masking experiment (needs ``attattr``).
        method_options: options for one method only, e.g. ``{"integrated_gradients": {"steps": 32}}``.
        run: the dataset runner's options (``out_dir`` to resume, ``engine="ray"``, progress).
        device: torch device of a model loaded from a name or path.
        batch_size: rows per forward pass of the erasure variants (speed only).
        **options: method options shared by every method that has them (``steps=4``, ``head_fusion="max"``, ...).

    Returns:
        A :class:`Leaderboard` (``export(dir)`` writes the JSON, Parquet, HTML, Markdown and figures).
    """
    run_options = run or RunOptions()
    loaded = model if isinstance(model, Model) else None
    if isinstance(model, nn.Module):
        loaded = model = load_model(model)
    if not isinstance(model, (Model, str, os.PathLike)):
        raise InvalidInputError(f"model must be a name, a path or a loaded model, got {type(model).__name__}")
    if loaded is not None and run_options.engine != "local":
        raise InvalidInputError("engine='ray' needs the model as a built-in name or a checkpoint directory")
    probe = loaded if loaded is not None else load_model(model, device=device)  # type: ignore[arg-type]
    probe.check_dataset(dataset)  # before any work: a model judged on data it was not trained for means nothing
    chosen = leaderboard_methods(probe, methods)
    per_method = {get_method(m).name: dict(o) for m, o in (method_options or {}).items()}
    check_int("beam_width", beam_width, minimum=1)
    check_int("exact_max", exact_max, minimum=0)
    if isinstance(examples, (list, tuple, np.ndarray)):
        subset = select_examples(dataset, examples, selection, seed)
    else:
        count = None if examples is None else check_int("examples", examples, minimum=1)
        subset = sample(dataset, count, selection=selection, seed=seed, balanced=balanced)
    ids = list(subset.example_ids)
    board = LeaderboardOptions(
        methods=chosen,
        target=target_rule(target),
        bins=check_bins(bins),
        removal=check_choice("removal", removal, Removal),
        magnitude=bool(magnitude),
        exclude_special=bool(exclude_special),
        options=shared_options(options, chosen),
        method_options=per_method,
        naopc_ids=_subsample(ids, naopc_examples, seed, 1),
        exact_max=exact_max,
        beam_width=beam_width,
        sanity_ids=_subsample(ids, sanity_examples, seed, 2),
        sanity_depths=_depths(sanity_depths, probe.num_layers),
        timing_ids=_subsample(ids, timing_examples, seed, 3),
        tree=bool(tree) and "attattr" in chosen,
        tree_threshold=float(tree_threshold),
        random_draws=check_int("random_draws", random_draws, minimum=1),
        seed=check_int("seed", seed),
        batch_size=check_int("batch_size", batch_size, minimum=1),
    )
    for name in chosen:
        get_method(name).check_options(board.options_for(name))
    # the local engine reuses the model loaded here; Ray workers load their own replica from the name
    preloaded = probe if run_options.engine == "local" else None
    task = LeaderboardTask(model, board, device=device, preloaded=preloaded)
    with contextlib.ExitStack() as stack:
        out_dir = run_options.out_dir
        if out_dir is None:
            out_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="attrflow-leaderboard-"))) / "run"
        result = run_dataset(task, subset, out_dir=out_dir, **run_options.kwargs())
        board_result = Leaderboard.from_run(result, dataset=dataset_name(dataset))
    settings = dict(board_result.settings)
    settings["sanity_threshold"] = float(sanity_threshold)
    return Leaderboard(
        methods=board_result.methods,
        example_ids=board_result.example_ids,
        values=board_result.values,
        layer_values=board_result.layer_values,
        curves=board_result.curves,
        sanity=board_result.sanity,
        examples=board_result.examples,
        settings=settings,
    )
