"""Low-rank adaptation (LoRA; Hu et al., ICLR 2022), just enough to fine-tune and ship a compact delta.

Training wraps chosen ``nn.Linear`` layers as ``W x + b + s·B A x`` with ``A ∈ R^{r×in}``, ``B ∈ R^{out×r}``
(B starts at zero, so training starts from the base model) and ``s = alpha / r``. Loading merges the factors
back, ``W ← W + s·B A``, so the shipped model is a plain transformers model with no extra modules: attention
hooks and attribution see exactly the architecture they expect.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

__all__ = ["LoRALinear", "add_lora", "lora_factors", "merge_lora"]


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update.

    Args:
        base: the layer to adapt (its weight is frozen; its bias keeps its own ``requires_grad``).
        rank: r, the rank of the update.
        alpha: the update is scaled by ``alpha / rank``.
        dropout: dropout on the input of the low-rank path only.
    """

    def __init__(self, base: nn.Linear, *, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.base = base
        base.weight.requires_grad_(False)
        self.rank = rank
        self.scaling = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, dtype=base.weight.dtype))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = nn.functional.linear(nn.functional.linear(self.dropout(x), self.lora_a), self.lora_b)
        output: torch.Tensor = self.base(x) + self.scaling * update
        return output


def add_lora(model: nn.Module, targets: Iterable[str], *, rank: int, alpha: float, dropout: float = 0.0) -> list[str]:
    """Replace every ``nn.Linear`` whose qualified name ends with one of ``targets`` by a :class:`LoRALinear`.

    Returns:
        The qualified names of the wrapped layers, in module order.
    """
    suffixes = tuple(targets)
    names = [
        name for name, module in model.named_modules() if isinstance(module, nn.Linear) and name.endswith(suffixes)
    ]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(getattr(parent, child), rank=rank, alpha=alpha, dropout=dropout))
    return names


def lora_factors(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The trained ``(A, B)`` of every :class:`LoRALinear` in ``model``, by the adapted layer's name."""
    return {
        name: (module.lora_a.detach(), module.lora_b.detach())
        for name, module in model.named_modules()
        if isinstance(module, LoRALinear)
    }


@torch.no_grad()
def merge_lora(model: nn.Module, factors: Mapping[str, tuple[torch.Tensor, torch.Tensor]], *, scaling: float) -> None:
    """Add ``scaling · B A`` to the weight of each named plain ``nn.Linear`` of ``model`` (in float32)."""
    for name, (a, b) in factors.items():
        layer = model.get_submodule(name)
        if not isinstance(layer, nn.Linear):
            raise TypeError(f"{name} is a {type(layer).__name__}, not a Linear layer")
        update = scaling * (b.to(torch.float32) @ a.to(torch.float32))
        if update.shape != layer.weight.shape:
            raise ValueError(f"{name}: update {tuple(update.shape)} does not fit weight {tuple(layer.weight.shape)}")
        layer.weight.add_(update.to(layer.weight.dtype))
