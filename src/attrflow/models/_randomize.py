"""Model-parameter randomisation for the sanity check of Adebayo et al. (NeurIPS 2018, "Sanity Checks for Saliency
Maps", §3.1): a copy of the model whose top layers are re-initialised, cascading from the output down.

The copy is made with ``copy.deepcopy``; the user's model is never touched. Step k re-initialises everything the
forward pass runs after the first k of the explained layers counted from the top: the classification head, the
final norm and pooler, any decoder, and the top k layer blocks. The embeddings and the blocks below stay trained.
Each module is re-initialised by the model's own ``_init_weights`` (transformers' initialisation for that
architecture) or, for modules it does not know, their ``reset_parameters``; seeded, so a run is reproducible. A
weight tied to a module that stays trained (an LM head tied to the input embeddings) keeps its trained values.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from attrflow.errors import InvalidInputError, UnsupportedModelError
from attrflow.models._probe import dummy_inputs
from attrflow.models._replay import eval_mode

if TYPE_CHECKING:
    from attrflow.models._model import Model

__all__ = ["randomized_copy"]


def _block_path(site: str, modules: dict[str, nn.Module]) -> str:
    """The path of the layer block that holds the attention module ``site`` (an element of a ModuleList)."""
    parts = re.sub(r"\[\d+\]$", "", site).split(".")
    for cut in range(len(parts) - 1, 0, -1):
        parent = ".".join(parts[: cut - 1])
        if parts[cut - 1].isdigit() and isinstance(modules.get(parent), nn.ModuleList):
            return ".".join(parts[:cut])
    raise UnsupportedModelError(f"cannot find the layer block of the attention module {site!r}")


def _call_order(module: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[int, int]:
    """The order in which the modules of ``module`` are first called on ``inputs`` (by ``id``)."""
    order: dict[int, int] = {}

    def seen(hooked: nn.Module, _args: Any, _output: Any = None) -> None:
        order.setdefault(id(hooked), len(order))

    handles = [m.register_forward_pre_hook(seen) for m in module.modules()]
    try:
        with eval_mode(module), torch.no_grad():
            module(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return order


def _reinitialise(model: nn.Module, targets: list[nn.Module]) -> None:
    init = getattr(model, "_init_weights", None)
    chosen = {id(m) for m in targets}
    # a weight tied to a module that stays (an LM head tied to the input embeddings) keeps its trained values
    kept = {id(p) for m in model.modules() if id(m) not in chosen for p in m.parameters(recurse=False)}
    tied = [(p, p.detach().clone()) for m in targets for p in m.parameters(recurse=False) if id(p) in kept]
    for module in targets:
        own = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
        if not own:
            continue
        for tensor in own:
            # transformers skips tensors it marked as loaded from a checkpoint
            if hasattr(tensor, "_is_hf_initialized"):
                tensor._is_hf_initialized = False
        before = [t.detach().clone() for t in module.parameters(recurse=False)]
        if callable(init):
            with torch.no_grad():
                init(module)
        changed = any(not torch.equal(b, a) for b, a in zip(before, module.parameters(recurse=False), strict=True))
        reset = getattr(module, "reset_parameters", None)
        if not changed and callable(reset) and before:
            with torch.no_grad():
                reset()
    with torch.no_grad():
        for parameter, value in tied:
            parameter.copy_(value)


def _descendants(modules: list[nn.Module]) -> Iterator[nn.Module]:
    for module in modules:
        yield from module.modules()


def randomized_copy(model: Model, top: int, *, seed: int = 0) -> Model:
    """A copy of ``model`` with its top ``top`` layers and everything above them re-initialised.

    Args:
        model: the trained model (left unchanged).
        top: how many layer blocks to re-initialise, counted from the top (1 … ``model.num_layers``).
        seed: the seed of the new weights.

    Returns:
        A new :class:`Model` (the same tokenizer) named ``"<name> (top <top> layers re-initialised)"``.

    Raises:
        InvalidInputError: ``top`` out of range.
        UnsupportedModelError: layers share their weights (ALBERT), so they cannot be re-initialised one by one.
    """
    from attrflow.models._model import Model

    num_layers = model.num_layers
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= num_layers:
        raise InvalidInputError(f"top must be a whole number in 1 … {num_layers}, got {top!r}")
    clone = copy.deepcopy(model.model)
    modules = dict(clone.named_modules())
    paths = [_block_path(site, modules) for site in model.site_names]
    if len(set(paths)) != len(paths):
        raise UnsupportedModelError(
            f"{type(clone).__name__} shares one block between several layers; its layers cannot be re-initialised "
            "one at a time"
        )
    blocks = [modules[p] for p in paths]
    inputs = dummy_inputs(clone, model.task, encoder_decoder=model.is_encoder_decoder)
    order = _call_order(clone, {k: v.to(model.device) for k, v in inputs.items()})
    inside = {id(m) for m in _descendants(blocks)}
    last_block = max(order.get(id(b), -1) for b in blocks)
    above = [m for m in clone.modules() if id(m) not in inside and order.get(id(m), -1) > last_block]
    targets = list(_descendants(blocks[num_layers - top :])) + above
    device = model.device
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        _reinitialise(clone, targets)
    clone.eval()
    return Model(clone, model.tokenizer, task=model.task, name=f"{model.name} (top {top} layers re-initialised)")
