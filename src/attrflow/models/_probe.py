"""Finding out what a model is, from the model itself: its task (head class), its encoder (encoder–decoders), and
one probing forward pass for its attention sites, head count, causality, layer blocks and whether layer replay
gives the model's own outputs.

Sizes come from running the model, never from its name: DistilBERT, ALBERT and ViT modules carry no ``layer_idx``
and ALBERT reuses one module for every layer, so sites are numbered by call order.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from attrflow.errors import NonFiniteError, UnsupportedModelError
from attrflow.models._finite import describe_cause, describe_values
from attrflow.models._interface import Session, active_session
from attrflow.models._replay import candidate_blocks, counting_hooks, eval_mode

if TYPE_CHECKING:
    from attrflow.models._model import Model

logger = logging.getLogger(__name__)

Task = Literal["sequence-classification", "causal-lm", "image-classification"]
TASKS: tuple[Task, ...] = ("sequence-classification", "causal-lm", "image-classification")

TASK_SUFFIXES: tuple[tuple[str, Task], ...] = (
    ("ForSequenceClassification", "sequence-classification"),
    ("ForCausalLM", "causal-lm"),
    ("LMHeadModel", "causal-lm"),
    ("ForImageClassification", "image-classification"),
    ("ForImageClassificationWithTeacher", "image-classification"),
)


def task_of(class_name: str) -> Task | None:
    """The task of a transformers head class (by its name's suffix), or None for a model without a known head."""
    for suffix, task in TASK_SUFFIXES:
        if class_name.endswith(suffix):
            return task
    return None


@dataclass
class Probe:
    """What one probing forward pass revealed about the model's attention."""

    num_sites: int
    num_heads: int
    causal: bool
    blocks: list[nn.Module] = field(default_factory=list)
    site_block_call: list[int] = field(default_factory=list)
    replay_ok: bool = False
    site_names: tuple[str, ...] = ()
    other_sites: tuple[str, ...] = ()
    # attention modules whose calls are sites (the encoder's, for encoder-decoders); None = every call
    site_modules: frozenset[int] | None = None


def encoder_of(model: nn.Module, task: Task) -> nn.Module | None:
    """The encoder stack of an encoder-decoder model (None for encoders, decoders and ViTs)."""
    if not getattr(model.config, "is_encoder_decoder", False):
        return None
    getter = getattr(model, "get_encoder", None)
    encoder = getter() if callable(getter) else None
    if not isinstance(encoder, nn.Module) or encoder is model:
        raise UnsupportedModelError(
            f"{type(model).__name__} is an encoder-decoder model without a separate encoder (get_encoder()); "
            "attrflow explains the encoder self-attention of encoder-decoder models and cannot find it here"
        )
    if task != "sequence-classification":
        raise UnsupportedModelError(
            f"{type(model).__name__}: attrflow explains encoder-decoder models with a sequence-classification head "
            f"(e.g. BartForSequenceClassification, T5ForSequenceClassification), not task={task!r}"
        )
    return encoder


def site_names(model: nn.Module, modules: Sequence[nn.Module]) -> list[str]:
    """Module path of each attention call; ``[k]`` numbers the calls of a module that runs more than once."""
    paths = {id(module): name for name, module in model.named_modules()}
    total: dict[int, int] = {}
    for module in modules:
        total[id(module)] = total.get(id(module), 0) + 1
    seen: dict[int, int] = {}
    names = []
    for module in modules:
        key = id(module)
        name = paths.get(key, type(module).__name__) or type(module).__name__
        if total[key] > 1:
            name = f"{name}[{seen.get(key, 0)}]"
            seen[key] = seen.get(key, 0) + 1
        names.append(name)
    return names


def dummy_inputs(model: Any, task: Task, *, encoder_decoder: bool) -> dict[str, torch.Tensor]:
    """A small plain input for ``model`` (six token ids, or one seeded random image), on the CPU."""
    config = model.config
    if task == "image-classification":
        size = getattr(config, "image_size", 224)
        size = size if isinstance(size, int) else size[0]
        channels = getattr(config, "num_channels", 3)
        generator = torch.Generator().manual_seed(0)
        return {"pixel_values": torch.randn(1, channels, size, size, generator=generator)}
    vocab = int(config.get_text_config().vocab_size)
    ids = torch.arange(5, 5 + 6) % vocab
    eos = getattr(config, "eos_token_id", None)
    if encoder_decoder and isinstance(eos, int):
        ids[-1] = eos  # BART/T5 classification heads read the hidden state at the end-of-sequence token
    return {"input_ids": ids.view(1, -1), "attention_mask": torch.ones(1, ids.numel(), dtype=torch.long)}


def _half(dtype: torch.dtype) -> bool:
    return dtype in (torch.float16, torch.bfloat16)


def _tolerance(dtype: torch.dtype) -> float:
    """How far attrflow's outputs may be from the reference: float32 rounding, or 4 steps of a half type."""
    return 4 * torch.finfo(dtype).eps if _half(dtype) else 1e-4


@contextlib.contextmanager
def _eager_if_half(wrapper: Model) -> Iterator[None]:
    """For half-precision models, the reference runs transformers' eager attention: attrflow computes the same
    operations (float32 softmax, probabilities in the model's type), while fused kernels round differently by
    more than a half type's step after a few layers."""
    if not _half(next(wrapper.model.parameters()).dtype):
        yield
        return
    original = wrapper.model.config._attn_implementation
    wrapper._set_impl("eager")
    try:
        yield
    finally:
        wrapper._set_impl(original)


def check_head(wrapper: Model, output: Any) -> None:
    """Refuse a model whose output is not the ``[1, C]`` logits (``[1, n, V]`` for causal LMs) of its task: a base
    model without a head (``BertModel``) wrapped with ``task=...`` returns hidden states, which are not classes."""
    model = wrapper.model
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, (tuple, list)) and output and not hasattr(output, "keys"):
        logits = output[0]
    config = model.config
    if wrapper.task == "causal-lm":
        expected, size = 3, int(config.get_text_config().vocab_size)
    else:
        expected, size = 2, int(getattr(config, "num_labels", 0) or 0)
    shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else None
    if shape is not None and len(shape) == expected and (size == 0 or shape[-1] == size):
        return
    what = "no logits" if logits is None else f"logits of shape {shape}"
    fields = ", ".join(getattr(output, "keys", lambda: [])()) or type(output).__name__
    raise UnsupportedModelError(
        f"{type(model).__name__} has no {wrapper.task} head: its output has {what} ({fields}), not the "
        f"{'[batch, n, vocabulary]' if expected == 3 else '[batch, classes]'} logits of that task; load the model "
        "with its head, e.g. AutoModelForSequenceClassification, AutoModelForCausalLM or "
        "AutoModelForImageClassification"
    )


def probe_model(wrapper: Model) -> Probe:
    """Check that attention routes through attrflow and gives the model's own outputs; find sites and blocks.

    Sets ``wrapper``'s site modules (encoder-decoders) before checking layer replay, which depends on them.

    Raises:
        UnsupportedModelError: the model fails on a plain input, has no head for its task, bypasses
            AttentionInterface, computes attention attrflow does not reproduce, or has layers with different head
            counts.
        NonFiniteError: the model's own output on a plain input is NaN or infinite.
    """
    model = wrapper.model
    dummy = dummy_inputs(model, wrapper.task, encoder_decoder=wrapper.is_encoder_decoder)
    dummy = {key: value.to(wrapper.device) for key, value in dummy.items()}
    try:
        with eval_mode(model), torch.no_grad(), _eager_if_half(wrapper):
            output = model(**dummy)
    except Exception as exc:  # any failure of the model's own code on a plain input: say which, keep the cause
        raise UnsupportedModelError(
            f"{type(model).__name__} fails on a plain {', '.join(dummy)} input before attrflow changes "
            f"anything ({type(exc).__name__}: {exc}); check the model's config"
        ) from exc
    check_head(wrapper, output)
    reference = wrapper._logits(output)
    if not bool(torch.isfinite(reference).all()):
        raise NonFiniteError(
            f"{type(model).__name__}: the model's own output is not finite on a plain {', '.join(dummy)} input, "
            f"before attrflow changes anything ({describe_values(reference)}){describe_cause(wrapper, dummy)}"
        )
    session = Session(record=True)
    blocks = candidate_blocks(model)
    with wrapper.engaged(), torch.no_grad(), counting_hooks(blocks, session), active_session(session):
        session.reset()
        ours = wrapper._logits(model(**dummy))
    probe = _describe(wrapper, session, ours, reference)
    probe.blocks = blocks
    wrapper._site_modules = probe.site_modules
    probe.replay_ok = check_replay(wrapper, probe, dummy, ours)
    logger.debug(
        "probed %s: %d sites, %d heads, replay=%s",
        type(model).__name__,
        probe.num_sites,
        probe.num_heads,
        probe.replay_ok,
    )
    return probe


def _describe(wrapper: Model, session: Session, ours: torch.Tensor, reference: torch.Tensor) -> Probe:
    """The probe's findings from the recorded pass (``session``), or why the model is not supported."""
    arch = type(wrapper.model).__name__
    names = site_names(wrapper.model, session.modules)
    selected = list(range(session.count))
    encoder = wrapper._encoder
    if encoder is not None:
        inside = {id(module) for module in encoder.modules()}
        selected = [i for i, module in enumerate(session.modules) if id(module) in inside]
        if session.count and not selected:
            raise UnsupportedModelError(
                f"{arch}: none of its attention calls is inside the encoder ({type(encoder).__name__}); "
                "attrflow explains the encoder self-attention of encoder-decoder models"
            )
    if session.count == 0:
        raise UnsupportedModelError(
            f"{arch} computes attention inline and bypasses transformers' AttentionInterface, so attrflow "
            "cannot read or replace its attention probabilities. Supported: BERT, RoBERTa, DistilBERT, ALBERT, "
            "ELECTRA, GPT-2, Llama-family, ViT and other models that use AttentionInterface."
        )
    tolerance = _tolerance(ours.dtype)
    if not torch.allclose(ours, reference, rtol=tolerance, atol=tolerance):
        diff = float((ours - reference).abs().max())
        raise UnsupportedModelError(
            f"{arch}: outputs through attrflow's attention differ from the model's own by {diff:.2e}; "
            "its attention does something attrflow does not reproduce, so results would be wrong"
        )
    records = [session.records[i] for i in selected]
    heads = {int(r.shape[1]) for r in records}
    if len(heads) != 1:
        raise UnsupportedModelError(f"{arch}: layers have different head counts {sorted(heads)}")
    chosen = set(selected)
    return Probe(
        num_sites=len(selected),
        num_heads=heads.pop(),
        causal=all(bool((r.triu(diagonal=1) == 0).all()) for r in records) and records[0].shape[-1] > 1,
        site_block_call=[session.site_block_call[i] for i in selected],
        site_names=tuple(names[i] for i in selected),
        other_sites=tuple(name for i, name in enumerate(names) if i not in chosen),
        site_modules=None if encoder is None else frozenset(id(session.modules[i]) for i in selected),
    )


def check_replay(wrapper: Model, probe: Probe, dummy: Mapping[str, torch.Tensor], clean: torch.Tensor) -> bool:
    """Whether branching rows off at a block (reusing the layers below) gives the model's outputs."""
    if not probe.blocks or any(call < 0 for call in probe.site_block_call):
        return False
    if len(set(probe.site_block_call)) != probe.num_sites:
        return False  # several sites in one block: rows could not branch at the site's own block
    site = probe.num_sites - 1
    try:
        ones = torch.ones(2, device=wrapper.device)
        with wrapper.engaged(), torch.no_grad():
            out, _ = wrapper._branched(dummy, {site: ones}, probe=probe, replay=True)
    except (RuntimeError, ValueError, IndexError) as exc:
        logger.debug("layer replay unavailable: %s", exc)
        return False
    # rows of one batch agree to float32 rounding; a half type rounds each layer's output to its own step
    rtol, atol = (1e-5, 1e-6) if not _half(out.dtype) else (_tolerance(out.dtype), _tolerance(out.dtype))
    return bool(out.shape[0] == 3 and torch.allclose(out, clean.expand_as(out), rtol=rtol, atol=atol))
