"""Temporary changes to a model for one forward pass, each a context manager that undoes itself in ``finally``.

Forward pre-hooks on the layer blocks count block calls (which block runs which attention site) and grow the batch
at a block (layer replay: rows branch off row 0 there, so the layers below run once; :func:`run_rows`); pre-hooks on
an encoder give it only row 0, or embeddings instead of token ids. :func:`eval_mode` switches every module to eval mode and puts
back each module's own training flag.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from attrflow.models._interface import _SESSION, Session, active_session


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every module of ``model`` in eval mode; on exit restore each module's own ``training`` flag.

    ``model.train(was_training)`` would not do: a model in train mode with one submodule in eval (a frozen part)
    would come back with that submodule in train mode.
    """
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


@contextlib.contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Parameters stop requiring grad inside the block (each gets its own flag back on exit).

    Gradients by activations alone then keep no layer inputs for weight gradients: a backward through the
    model holds what the activation gradients need, no more.
    """
    thawed = [parameter for parameter in model.parameters() if parameter.requires_grad]
    for parameter in thawed:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in thawed:
            parameter.requires_grad_(True)


def candidate_blocks(model: nn.Module) -> list[nn.Module]:
    """Modules that are elements of a ModuleList: the layer blocks of every transformers architecture."""
    blocks: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, nn.ModuleList):
            blocks.extend(module)
    return blocks


@contextlib.contextmanager
def _pre_hooks(blocks: Sequence[nn.Module], hook: Callable[..., Any], *, with_kwargs: bool = False) -> Iterator[None]:
    """Install ``hook`` as a forward pre-hook on every block; always removed on exit."""
    handles = [block.register_forward_pre_hook(hook, with_kwargs=with_kwargs) for block in blocks]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def counting_hooks(blocks: Sequence[nn.Module], session: Session) -> contextlib.AbstractContextManager[None]:
    """Count block calls into ``session.block_calls`` (maps each attention site to the block that runs it)."""

    def count(_module: nn.Module, _args: Any) -> None:
        session.block_calls += 1

    return _pre_hooks(blocks, count)


def branching_hooks(
    blocks: Sequence[nn.Module], session: Session, plan: Mapping[int, int]
) -> contextlib.AbstractContextManager[None]:
    """At block call k in ``plan``, append ``plan[k]`` copies of row 0 to the hidden states entering the block."""

    def branch(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]] | None:
        call = session.block_calls
        session.block_calls += 1
        count = plan.get(call)
        if not count:
            return None

        def grow(hidden: torch.Tensor) -> torch.Tensor:
            # detached: gradients of the branch rows must not flow into row 0's leaves below the branch point
            return torch.cat([hidden, hidden[:1].detach().expand(count, *hidden.shape[1:])], dim=0)

        if args and isinstance(args[0], torch.Tensor):
            return (grow(args[0]), *args[1:]), kwargs
        for key in ("hidden_states", "x", "hidden_state"):
            value = kwargs.get(key)
            if isinstance(value, torch.Tensor):
                kwargs[key] = grow(value)
                return args, kwargs
        raise RuntimeError("could not find the hidden states entering the block")

    return _pre_hooks(blocks, branch, with_kwargs=True)


@contextlib.contextmanager
def first_row_into(module: nn.Module, rows: int) -> Iterator[None]:
    """Give ``module`` only row 0 of every batch-``rows`` tensor argument (its other rows are copies of it).

    Only tensors of two or more dimensions are batches here (ids, masks, embeddings); a one-dimensional tensor
    (e.g. positions) whose length happens to equal ``rows`` is left alone.
    """

    def first_row(value: Any) -> Any:
        batched = isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[0] == rows
        return value[:1] if batched else value

    def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return tuple(first_row(a) for a in args), {k: first_row(v) for k, v in kwargs.items()}

    with _pre_hooks([module], hook, with_kwargs=True):
        yield


@contextlib.contextmanager
def embeddings_into(encoder: nn.Module, embeddings: torch.Tensor) -> Iterator[None]:
    """Run ``encoder`` on ``embeddings`` (as ``inputs_embeds``) instead of the token ids it is called with."""

    def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if args and isinstance(args[0], torch.Tensor):
            args = (None, *args[1:])  # input_ids given positionally
        else:
            kwargs["input_ids"] = None
        kwargs["inputs_embeds"] = embeddings
        return args, kwargs

    with _pre_hooks([encoder], hook, with_kwargs=True):
        yield


@contextlib.contextmanager
def recomputed_blocks(
    blocks: Sequence[nn.Module],
    session: Session,
    plan: Mapping[int, int],
    engage: Callable[[], contextlib.AbstractContextManager[None]],
) -> Iterator[None]:
    """Activation checkpointing of the block calls that hold no branched site (``plan``'s calls run as usual).

    A checkpointed call keeps only its inputs for the backward and runs again during it, as it ran the first time:
    inside ``engage()`` (attrflow's attention, eval mode), with its parameters frozen, under a fresh streaming
    session (its attention fused, nothing recorded). Per row and block the backward then keeps N·d numbers instead
    of the block's activations. Needs the branching hooks' call count (``session.block_calls``).
    """
    from torch.utils.checkpoint import checkpoint

    def quietly(block: nn.Module, forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if _SESSION.get() is not None:
            return forward(*args, **kwargs)
        # the recomputation, during the backward
        with engage(), frozen_parameters(block), active_session(Session(stream=True)):
            return forward(*args, **kwargs)

    saved: list[tuple[nn.Module, Any]] = []
    for block in _flat(blocks):
        previous = block.__dict__.get("forward")
        forward = block.forward

        def wrapped(
            *args: Any, _block: nn.Module = block, _forward: Callable[..., Any] = forward, **kwargs: Any
        ) -> Any:
            if session.block_calls - 1 in plan or not torch.is_grad_enabled():
                return _forward(*args, **kwargs)
            return checkpoint(quietly, _block, _forward, *args, use_reentrant=False, **kwargs)

        block.forward = wrapped
        saved.append((block, previous))
    try:
        yield
    finally:
        for block, previous in saved:
            if previous is None:
                del block.forward
            else:
                block.forward = previous


def _flat(blocks: Sequence[nn.Module]) -> list[nn.Module]:
    """The blocks that neither hold nor sit inside another block (T5's and ALBERT's nested layer lists are left
    alone: a checkpointed call must run the same modules once, the same way, when it is recomputed)."""
    ids = {id(block) for block in blocks}
    inside = {id(m) for block in blocks for m in block.modules() if m is not block and id(m) in ids}
    holders = {id(block) for block in blocks if any(m is not block and id(m) in ids for m in block.modules())}
    return [block for block in blocks if id(block) not in inside and id(block) not in holders]


def run_rows(
    model: Any,
    inputs: Mapping[str, torch.Tensor],
    session: Session,
    rows: int,
    *,
    blocks: Sequence[nn.Module] | None,
    plan: Mapping[int, int],
    encoder: nn.Module | None,
    options: Mapping[str, Any] | None = None,
    engage: Callable[[], contextlib.AbstractContextManager[None]] | None = None,
    recompute: Sequence[nn.Module] = (),
) -> Any:
    """Run ``model`` on ``rows`` rows of the batch-1 ``inputs`` under ``session``; returns the model's output.

    With ``blocks`` (layer replay), only row 0 enters the model and block call k grows ``plan[k]`` rows off it, so
    the layers below a branch point run once; without, every row runs the whole model from identical inputs (same
    numbers, more work). ``options`` go to the model's forward as they are (e.g. ``logits_to_keep``). With
    ``engage``, a streaming session's calls of the ``recompute`` blocks that hold no branch are checkpointed
    (:func:`recomputed_blocks`, recomputed inside ``engage()``).
    """
    expanded = {key: value.expand(rows, *value.shape[1:]) for key, value in inputs.items()}
    with contextlib.ExitStack() as stack:
        if blocks is not None and encoder is not None and rows > 1:
            # the decoder and the head need every row (they read the branched encoder states and input_ids), the
            # encoder only row 0 below the branch points: it gets row 0 and grows rows at the branching blocks
            stack.enter_context(first_row_into(encoder, rows))
        elif blocks is not None:
            expanded = dict(inputs)
        checkpointed = session.stream and session.gate is None and not session.edits and engage is not None
        if blocks is not None:
            stack.enter_context(branching_hooks(blocks, session, plan))
        elif checkpointed and recompute:
            stack.enter_context(counting_hooks(recompute, session))  # which call holds a branch
        if checkpointed and recompute and engage is not None:
            stack.enter_context(recomputed_blocks(recompute, session, plan, engage))
        stack.enter_context(active_session(session))
        return model(**expanded, **(options or {}))
