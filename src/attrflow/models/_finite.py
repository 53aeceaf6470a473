"""No answer from a non-finite output: the one check at the seam where logits come back from the model.

A NaN in one embedding row, an overflow in half precision or a damaged weight makes the model's output NaN; the
argmax of NaN is class 0, so without this check attrflow would explain a prediction the model never made. Every
pass of :class:`~attrflow.models.Model` that returns logits calls :func:`check_logits`, which raises
:class:`~attrflow.errors.NonFiniteError` saying where the values appeared: the output rows, and the first cause it
can find (the input tokens whose embeddings are not finite, non-finite input tensors, or non-finite weights).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from attrflow.errors import AttrflowError, NonFiniteError

if TYPE_CHECKING:
    from attrflow.models._model import Model

__all__ = ["check_items", "check_logits", "describe_cause", "describe_values"]

# how many offending tokens / parameters a message names
_NAMED = 4


def describe_values(values: torch.Tensor, *, unit: str = "outputs") -> str:
    """``"NaN in 2 of 2 outputs"``, ``"infinite values in rows 3, 5 of 8"``: what is not finite and where."""
    flat = values.detach().reshape(values.shape[0], -1) if values.dim() > 1 else values.detach().reshape(1, -1)
    bad = ~torch.isfinite(flat)
    kinds = []
    if bool(torch.isnan(flat).any()):
        kinds.append("NaN")
    if bool(torch.isinf(flat).any()):
        kinds.append("infinite values")
    kind = " and ".join(kinds) or "non-finite values"
    rows = torch.nonzero(bad.any(dim=1)).flatten().tolist()
    if flat.shape[0] == 1:
        return f"{kind} in {int(bad.sum())} of {flat.shape[1]} {unit}"
    shown = ", ".join(str(r) for r in rows[:_NAMED]) + (", ..." if len(rows) > _NAMED else "")
    return f"{kind} in row{'s' if len(rows) > 1 else ''} {shown} of {flat.shape[0]}"


def describe_cause(wrapper: Model, inputs: Mapping[str, Any]) -> str:
    """The first cause of a non-finite output that can be named, as a clause to append to a message."""
    ids = inputs.get("input_ids")
    if isinstance(ids, torch.Tensor) and ids.numel() and not ids.is_floating_point():
        found = _embedding_rows(wrapper, ids)
        if found:
            return f"; the input embeddings of {found} are not finite: check the model's weights"
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return f"; the input {key!r} holds NaN or infinite values"
    names = [name for name, p in wrapper.model.named_parameters() if not bool(torch.isfinite(p.detach()).all())]
    if names:
        shown = ", ".join(names[:_NAMED]) + (f" and {len(names) - _NAMED} more" if len(names) > _NAMED else "")
        return f"; these weights are not finite: {shown}"
    dtype = next(wrapper.model.parameters()).dtype
    if dtype in (torch.float16, torch.bfloat16):
        return f"; inputs and weights are finite, so the values overflow inside the {dtype} model: try float32"
    return "; inputs and weights are finite, so the values turn non-finite inside the model"


def _embedding_rows(wrapper: Model, ids: torch.Tensor) -> str:
    """``"'amazing' (id 6429)"`` for the token ids whose input-embedding rows are not finite ("" when none)."""
    try:
        weight = getattr(wrapper.input_embedding_module(), "weight", None)
    except AttrflowError:
        return ""
    if not isinstance(weight, torch.Tensor):
        return ""
    unique = torch.unique(ids.detach().flatten()).to(weight.device)
    unique = unique[(unique >= 0) & (unique < weight.shape[0])]
    rows = weight.detach().index_select(0, unique)
    bad = [int(i) for i in unique[~torch.isfinite(rows).all(dim=-1)].tolist()]
    if not bad:
        return ""
    tokenizer = wrapper.tokenizer
    names = tokenizer.convert_ids_to_tokens(bad) if hasattr(tokenizer, "convert_ids_to_tokens") else bad
    shown = ", ".join(f"{str(name)!r} (id {i})" for name, i in zip(names[:_NAMED], bad[:_NAMED], strict=False))
    return shown + (f" and {len(bad) - _NAMED} more" if len(bad) > _NAMED else "")


def check_logits(
    wrapper: Model, logits: torch.Tensor, inputs: Mapping[str, Any], *, what: str = "the model's output for this input"
) -> None:
    """Raise :class:`NonFiniteError` when ``logits`` holds NaN or infinite values, naming where and why.

    Args:
        wrapper: the model (to name the cause).
        logits: ``[rows, C]`` (or ``[rows, k, C]``) as the pass returned them.
        inputs: the model inputs of the pass.
        what: the subject of the message.
    """
    if bool(torch.isfinite(logits.detach()).all()):
        return
    values = logits
    if logits.dim() > 1 and logits.shape[0] > 1:
        if bool(torch.isfinite(logits[0].detach()).all()):
            # row 0 of a branching pass is the clean input: only the rows with replaced attention went wrong
            what = f"{what}, with a layer's attention replaced (the clean input's row is finite),"
        else:
            values = logits[:1]  # the clean input (or identical rows): say it of the input
    raise NonFiniteError(
        f"{what} is not finite ({describe_values(values)}){describe_cause(wrapper, inputs)}; attrflow does not "
        "explain an output it cannot compute"
    )


def check_items(wrapper: Model, probabilities: torch.Tensor, features: list[Any]) -> None:
    """Raise :class:`NonFiniteError` when a row of a batched prediction (one per item) is not finite."""
    bad = torch.nonzero(~torch.isfinite(probabilities).all(dim=-1)).flatten().tolist()
    if not bad:
        return
    shown = ", ".join(str(i) for i in bad[:_NAMED]) + (", ..." if len(bad) > _NAMED else "")
    first = {"input_ids": torch.tensor([list(features[bad[0]]["input_ids"])])}
    raise NonFiniteError(
        f"the model's output for item{'s' if len(bad) > 1 else ''} {shown} of {len(features)} is not finite"
        f"{describe_cause(wrapper, first)} (item {bad[0]}); attrflow does not score an output it cannot compute"
    )
