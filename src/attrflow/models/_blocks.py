"""Each layer's block, found from the model itself, and the two passes context mixing needs.

**Blocks.** The block of layer l is the outermost element of a ``ModuleList`` whose call runs exactly that layer's
attention site (BERT's ``encoder.layer[l]``, GPT-2's ``transformer.h[l]``, Llama's ``model.layers[l]``, T5's
``encoder.block[l]``; ALBERT's one shared layer group, called once per layer). Value zeroing (Mohebbi et al. 2023)
needs nothing else: :func:`capture_calls` keeps every block call of one clean pass, :func:`run_block` reruns block l
alone on its clean input with the value rows of chosen positions zeroed inside attrflow's attention function, one
batch row per position.

**Algebra.** The norm-based measures (attention-norm, GlobEnc, ALTI) also need the block's output projection,
residual and normalisations. They are found by structure and one probing pass, never by class name:

- the *output projection* is the innermost module inside the block called with one tensor, the attention function's
  output (``α·V``, heads concatenated); it must be affine, and its matrix is read by probing it, ``o(I) − o(0)``;
- the *value states* must be a slice of the output of a module inside the block (the value projection, bias
  included), so that the value of token j depends on token j alone;
- a *normalisation* is a module with a ``[d]`` weight and an epsilon whose output is LayerNorm or RMSNorm of its input;
- *post-norm* (BERT family): a normalisation reads ``x + attention`` and a later one gives the block's output, and
  the value projection reads ``x``; *pre-norm* (GPT-2, Llama, Qwen2, RoBERTa-PreLayerNorm, T5, ViT): a
  normalisation reads the block input ``x``, the value projection reads its output, and ``x + attention`` is the
  input of a later normalisation (the residual stream after attention, untouched).

A block that matches neither (parallel attention and MLP, a norm on the attention output, a value norm, …) is
refused with the reason, never answered with numbers that do not add up.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from attrflow.errors import UnsupportedModelError
from attrflow.flow.mixing import LayerTensors, Layout, Norm
from attrflow.models._encoding import Encoding
from attrflow.models._interface import Session, active_session
from attrflow.models._passes import Recording
from attrflow.models._replay import candidate_blocks

if TYPE_CHECKING:
    from attrflow.models._model import Model

__all__ = [
    "BlockCalls",
    "BlockStructure",
    "BlockTensors",
    "block_tensors",
    "capture_calls",
    "probe_blocks",
    "run_block",
]

_HIDDEN_KEYS = ("hidden_states", "x", "hidden_state")
_EPS_ATTRIBUTES = ("eps", "variance_epsilon", "epsilon", "layer_norm_eps")


@dataclass(frozen=True, eq=False)
class NormModule:
    """A normalisation found inside a block: the module, LayerNorm (centered) or RMSNorm, and its epsilon."""

    module: nn.Module
    centered: bool
    eps: float

    def parameters_at(self, inputs: torch.Tensor) -> Norm:
        """The flow-level :class:`~attrflow.flow.mixing.Norm` with the module's current γ, β and these inputs."""
        weight = getattr(self.module, "weight", None)
        bias = getattr(self.module, "bias", None)
        assert isinstance(weight, torch.Tensor)
        return Norm(
            weight=weight.detach(),
            bias=bias.detach() if isinstance(bias, torch.Tensor) else None,
            eps=self.eps,
            centered=self.centered,
            inputs=inputs,
        )


@dataclass(frozen=True, eq=False)
class BlockAlgebra:
    """What the probe found about one layer's block (see the module docstring)."""

    out_proj: nn.Module
    layout: Layout
    norm1: NormModule | None
    norm2: NormModule


@dataclass(frozen=True, eq=False)
class BlockStructure:
    """Each layer's block and, where it could be derived, its algebra.

    Attributes:
        blocks: per layer ``(block module, k)``: layer l is the k-th call of that module in a forward pass.
        blocks_unsupported: why blocks cannot be run alone (None when they can).
        algebra: per layer the :class:`BlockAlgebra`, or None.
        algebra_unsupported: why the block's algebra could not be derived (None when it was).
    """

    blocks: tuple[tuple[nn.Module, int], ...] = ()
    blocks_unsupported: str | None = None
    algebra: tuple[BlockAlgebra, ...] | None = None
    algebra_unsupported: str | None = None

    @property
    def layouts(self) -> tuple[Layout, ...]:
        """Each layer's layout (empty when the algebra is unknown)."""
        return tuple(a.layout for a in self.algebra or ())


# ---------------------------------------------------------------------------------------------- recording
@dataclass
class _Call:
    """One call of a module during the recorded pass."""

    module: nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    start: int
    first_site: int
    output: Any = None
    stop: int = -1
    last_site: int = -1


@dataclass
class _Recorder:
    """Forward hooks that keep the calls of the blocks (and of chosen submodules) of one pass, in order."""

    session: Session
    blocks: list[_Call] = field(default_factory=list)
    inner: list[_Call] = field(default_factory=list)
    clock: int = 0

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    @contextlib.contextmanager
    def installed(self, blocks: Sequence[nn.Module], inner: Sequence[nn.Module]) -> Iterator[None]:
        open_calls: dict[int, list[_Call]] = {}

        def enter(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            call = _Call(module, args, dict(kwargs), self.tick(), self.session.count)
            open_calls.setdefault(id(module), []).append(call)
            self.blocks.append(call)

        def leave(module: nn.Module, _args: Any, _kwargs: Any, output: Any) -> None:
            call = open_calls[id(module)].pop()
            call.output, call.stop, call.last_site = output, self.tick(), self.session.count

        def seen(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            call = _Call(module, args, dict(kwargs), self.tick(), self.session.count, output)
            call.stop = call.start
            self.inner.append(call)

        handles = []
        try:
            for block in dict.fromkeys(blocks):
                handles.append(block.register_forward_pre_hook(enter, with_kwargs=True))
                handles.append(block.register_forward_hook(leave, with_kwargs=True))
            for module in dict.fromkeys(inner):
                handles.append(module.register_forward_hook(seen, with_kwargs=True))
            yield
        finally:
            for handle in handles:
                handle.remove()


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    first = getattr(value, "to_tuple", None)
    if callable(first):
        return _first_tensor(first())
    return None


def _hidden(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> torch.Tensor | None:
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    for key in _HIDDEN_KEYS:
        value = kwargs.get(key)
        if isinstance(value, torch.Tensor):
            return value
    return None


def _layer_calls(calls: Sequence[_Call], num_sites: int) -> list[_Call] | str:
    """The block call of each layer: the outermost call that runs exactly that site, or why there is none."""
    chosen: list[_Call] = []
    for site in range(num_sites):
        own = [c for c in calls if c.first_site == site and c.last_site == site + 1]
        if not own:
            return f"layer {site}'s attention does not run in a block of its own (an element of a ModuleList)"
        chosen.append(min(own, key=lambda c: c.start))
    return chosen


def _occurrences(calls: Sequence[_Call], chosen: Sequence[_Call]) -> list[int]:
    return [sum(1 for c in calls if c.module is call.module and c.start < call.start) for call in chosen]


# ---------------------------------------------------------------------------------------------- probing
def probe_blocks(wrapper: Model, inputs: Mapping[str, torch.Tensor]) -> BlockStructure:
    """Find each layer's block and derive its algebra from one recorded pass on ``inputs`` (no gradients)."""
    model = wrapper.model
    candidates = candidate_blocks(model)
    inner = [m for block in candidates for m in block.modules() if m is not block]
    session = Session(record=True, capture_values=True)
    recorder = _Recorder(session)
    with wrapper.engaged(), torch.no_grad():
        with recorder.installed(candidates, inner), active_session(session):
            session.reset()
            model(**inputs)
        chosen = _layer_calls(recorder.blocks, session.count)
        if isinstance(chosen, str):
            return BlockStructure(blocks_unsupported=chosen, algebra_unsupported=chosen)
        blocks = tuple(zip((c.module for c in chosen), _occurrences(recorder.blocks, chosen), strict=True))
        replay = _check_replay(wrapper, chosen, session)
        algebra: list[BlockAlgebra] = []
        reason: str | None = None
        for layer, call in enumerate(chosen):
            inside = [c for c in recorder.inner if call.start < c.start < call.stop]
            found = _algebra(call, inside, session.records[layer], session.values[layer])
            if isinstance(found, str):
                reason = f"layer {layer} ({type(call.module).__name__}): {found}"
                break
            algebra.append(found)
    if reason is None:
        reason = _check_once(recorder, chosen, algebra)
    return BlockStructure(
        blocks=blocks,
        blocks_unsupported=replay,
        algebra=tuple(algebra) if reason is None else None,
        algebra_unsupported=reason,
    )


def _check_replay(wrapper: Model, chosen: Sequence[_Call], session: Session) -> str | None:
    """Why running each block alone on its recorded input does not give its recorded output (None if it does)."""
    for layer, call in enumerate(chosen):
        expected = _first_tensor(call.output)
        try:
            out = _rerun(call, layer, torch.full((1,), -1, dtype=torch.long), Session(gate=session.gate))
        except (RuntimeError, TypeError, ValueError, IndexError, UnsupportedModelError) as exc:
            return f"block {layer} ({type(call.module).__name__}) cannot be run alone ({type(exc).__name__}: {exc})"
        rtol = _tolerance(out, floor=1e-5)
        if expected is None or out.shape != expected.shape or not torch.allclose(out, expected, rtol=rtol, atol=rtol):
            return f"running block {layer} ({type(call.module).__name__}) alone does not reproduce its output"
    return None


def _check_once(recorder: _Recorder, chosen: Sequence[_Call], algebra: Sequence[BlockAlgebra]) -> str | None:
    """The modules found must run once per call of their block (their k-th call then belongs to layer k)."""
    for layer, (call, found) in enumerate(zip(chosen, algebra, strict=True)):
        calls_of_block = sum(1 for c in recorder.blocks if c.module is call.module)
        for module in (found.out_proj, found.norm2.module, *([found.norm1.module] if found.norm1 else [])):
            if sum(1 for c in recorder.inner if c.module is module) != calls_of_block:
                return f"layer {layer}: {type(module).__name__} does not run exactly once per block call"
    return None


def _tolerance(*tensors: torch.Tensor, floor: float) -> float:
    """``floor``, or more for half-precision tensors (a few units in their last place)."""
    eps = max(torch.finfo(t.dtype).eps if t.is_floating_point() else 0.0 for t in tensors)
    return max(floor, 16 * eps)


def _close(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None or a.shape != b.shape:
        return False
    scale = float(b.detach().abs().max()) if b.numel() else 0.0
    rtol = _tolerance(a, b, floor=1e-4)
    return bool(torch.allclose(a.double(), b.double(), rtol=rtol, atol=0.1 * rtol * max(1.0, scale)))


def _tensor_inputs(call: _Call) -> list[torch.Tensor]:
    values = [*call.args, *call.kwargs.values()]
    return [v for v in values if isinstance(v, torch.Tensor)]


def _algebra(call: _Call, inside: Sequence[_Call], probs: torch.Tensor, values: torch.Tensor) -> BlockAlgebra | str:
    """The algebra of one block call, or why it cannot be derived."""
    x = _hidden(call.args, call.kwargs)
    out = _first_tensor(call.output)
    if x is None or out is None:
        return "its input or output hidden states are not tensors"
    heads, kv_heads = int(probs.shape[1]), int(values.shape[1])
    attended = torch.matmul(probs, values.repeat_interleave(heads // kv_heads, dim=1))
    concatenated = attended.transpose(1, 2).reshape(*attended.shape[:1], attended.shape[2], -1)
    proj = _out_projection(inside, concatenated, x.shape[-1])
    if isinstance(proj, str):
        return proj
    attention = _first_tensor(proj.output)
    assert attention is not None
    residual = x + attention
    norms = [(c, kind) for c in inside if (kind := _norm_kind(c, x.shape[-1])) is not None]
    if not norms:
        return (
            "no LayerNorm or RMSNorm in it (a module with a [d] weight and an epsilon whose output is "
            "γ ⊙ (x − mean) / √(var + ε) (+ β) or γ ⊙ x / √(mean(x²) + ε) of its input)"
        )
    before = [(c, k) for c, k in norms if c.start < proj.start]
    after = [(c, k) for c, k in norms if c.start > proj.start]
    reading_residual = [(c, k) for c, k in after if _close(_first_tensor(c.args), residual)]
    if not reading_residual:
        return "no normalisation reads x + attention (the residual stream after the attention)"
    first_after, norm_after = reading_residual[0]
    closing = [(c, k) for c, k in after if c.start > first_after.start and _close(_first_tensor(c.output), out)]
    if closing and _reads_values(inside, values, x):
        return BlockAlgebra(out_proj=proj.module, layout="post-norm", norm1=norm_after, norm2=closing[-1][1])
    leading = [(c, k) for c, k in before if _close(_first_tensor(c.args), x)]
    if leading and _reads_values(inside, values, _first_tensor(leading[0][0].output)):
        return BlockAlgebra(out_proj=proj.module, layout="pre-norm", norm1=None, norm2=norm_after)
    return (
        "its normalisations fit neither a post-norm block (LN(x + attention), …, LN closing the block, values of x) "
        "nor a pre-norm block (values of LN(x), then x + attention into the next normalisation)"
    )


def _out_projection(inside: Sequence[_Call], concatenated: torch.Tensor, width: int) -> _Call | str:
    """The innermost module called with the attention output alone, checked to be affine."""
    found = [
        c
        for c in inside
        if len(_tensor_inputs(c)) == 1
        and _close(_tensor_inputs(c)[0], concatenated)
        and (o := _first_tensor(c.output)) is not None
        and o.shape[-1] == width
        and not _close(o, concatenated)  # an identity (dropout) is no projection
    ]
    modules = {id(c.module) for c in found}
    innermost = [c for c in found if not any(id(m) in modules for m in c.module.modules() if m is not c.module)]
    if len(innermost) != 1:
        what = "no module" if not innermost else f"{len(innermost)} modules"
        return f"{what} read(s) the attention output (α·V, heads concatenated) on its own: no output projection"
    call = innermost[0]
    weight, bias = affine_map(call.module, concatenated.shape[-1], concatenated)
    if not _close(concatenated @ weight + bias, _first_tensor(call.output)):
        return f"the output projection {type(call.module).__name__} is not affine"
    return call


_AFFINE: weakref.WeakKeyDictionary[nn.Module, tuple[Hashable, torch.Tensor, torch.Tensor]] = weakref.WeakKeyDictionary()


def cached_affine_map(module: nn.Module, width: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`affine_map`, probed again only when the module's parameters changed (storage or in-place version)."""
    key = (width, like.dtype, like.device, tuple((p.data_ptr(), p._version) for p in module.parameters()))
    cached = _AFFINE.get(module)
    if cached is None or cached[0] != key:
        cached = (key, *affine_map(module, width, like))
        _AFFINE[module] = cached
    return cached[1], cached[2]


def affine_map(module: nn.Module, width: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W [width, d], b [d])`` with ``module(z) = z W + b``, read by probing: ``b = module(0)``,
    ``W = module(I) − b`` (works for ``nn.Linear``, GPT-2's ``Conv1D`` and any other affine module)."""
    eye = torch.eye(width, dtype=like.dtype, device=like.device).unsqueeze(0)
    with torch.no_grad():
        bias = module(torch.zeros(1, 1, width, dtype=like.dtype, device=like.device))[0, 0]
        weight = module(eye)[0] - bias
    return weight, bias


def _norm_kind(call: _Call, width: int) -> NormModule | None:
    """A normalisation (LayerNorm or RMSNorm, checked on this call's tensors), or None."""
    weight = getattr(call.module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 1 or weight.shape[0] != width:
        return None
    eps = next(
        (float(v) for name in _EPS_ATTRIBUTES if isinstance(v := getattr(call.module, name, None), (int, float))), None
    )
    inputs, output = _first_tensor(call.args), _first_tensor(call.output)
    if eps is None or inputs is None or output is None or len(_tensor_inputs(call)) != 1:
        return None
    bias = getattr(call.module, "bias", None)
    for centered in (True, False):
        found = NormModule(call.module, centered, eps)
        norm = found.parameters_at(inputs.double())
        x = norm.center(inputs.double())
        expected = norm.weight.double() * x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps)
        if isinstance(bias, torch.Tensor):
            expected = expected + bias.double()
        if _close(expected, output):
            return found
    return None


def _reads_values(inside: Sequence[_Call], values: torch.Tensor, source: torch.Tensor | None) -> bool:
    """Whether the value states are a slice of the output of a module that reads ``source`` token by token."""
    if source is None:
        return False
    batch, kv_heads, length, head_dim = values.shape
    flat = values.transpose(1, 2).reshape(batch, length, kv_heads * head_dim)
    width = flat.shape[-1]
    for call in inside:
        out = _first_tensor(call.output)
        if out is None or out.dim() != 3 or out.shape[:2] != (batch, length) or out.shape[-1] % width:
            continue
        if not any(_close(t, source) for t in _tensor_inputs(call)):
            continue
        if any(_close(out[..., k : k + width], flat) for k in range(0, out.shape[-1], width)):
            return True
    return False


# ---------------------------------------------------------------------------------------------- passes
@dataclass(frozen=True, eq=False)
class BlockCalls:
    """Every layer's block call of one clean pass of one input (what :func:`run_block` reruns).

    Attributes:
        encoding: the input.
        calls: per layer, the recorded call (private).
        recording: the same pass as :meth:`Model.record` gives it (logits and attention).
        gate: the head gate in force during the pass (applied again on reruns).
        edits: the interaction masks in force during the pass (applied again on reruns).
    """

    encoding: Encoding
    calls: tuple[Any, ...]
    recording: Recording
    gate: torch.Tensor | None = None
    edits: Mapping[int, torch.Tensor] = field(default_factory=dict)

    def output(self, layer: int) -> torch.Tensor:
        """Block ``layer``'s clean output ``[n, d]`` at the real positions (the block's own, no final norm)."""
        out = _first_tensor(self.calls[layer].output)
        assert out is not None
        return out[0].index_select(0, self.encoding.positions.to(out.device))


def capture_calls(wrapper: Model, encoding: Encoding, blocks: Sequence[tuple[nn.Module, int]]) -> BlockCalls:
    """One clean pass of ``encoding`` keeping every layer's block call (inputs, keyword arguments, output)."""
    session = Session(record=True)
    recorder = _Recorder(session)
    with wrapper.engaged(), torch.no_grad(), recorder.installed([b for b, _ in blocks], []):
        logits = wrapper._forward(encoding.inputs, session, position=wrapper._position(encoding))
    per_module: dict[int, list[_Call]] = {}
    for call in recorder.blocks:
        per_module.setdefault(id(call.module), []).append(call)
    calls = tuple(per_module[id(block)][k] for block, k in blocks)
    recording = _recording(wrapper, encoding, logits, session)
    return BlockCalls(encoding, calls, recording, gate=session.gate, edits=dict(session.edits))


def _recording(wrapper: Model, encoding: Encoding, logits: torch.Tensor, session: Session) -> Recording:
    attentions = wrapper._real_attentions(session.records, encoding)
    return Recording(encoding=encoding, logits=logits[0].detach().cpu(), attentions=attentions.float().cpu())


def run_block(wrapper: Model, calls: BlockCalls, layer: int, positions: Sequence[int]) -> torch.Tensor:
    """Block ``layer`` alone on its clean input, one batch row per entry of ``positions`` (real token indices):
    row r with the value vectors of token ``positions[r]`` zeroed in every head (−1: nothing zeroed).

    Returns:
        ``[len(positions), n, d]`` the block's outputs at the real positions.

    Raises:
        UnsupportedModelError: the block did not run its attention site exactly once.
    """
    encoding = calls.encoding
    real = encoding.positions
    padded = torch.tensor([int(real[p]) if p >= 0 else -1 for p in positions], dtype=torch.long)
    session = Session(gate=calls.gate, edits=dict(calls.edits))
    with wrapper.engaged(), torch.no_grad():
        out = _rerun(calls.calls[layer], layer, padded, session)
    return out.index_select(1, real.to(out.device))


def _rerun(call: _Call, site: int, zeroed: torch.Tensor, session: Session) -> torch.Tensor:
    """Call the recorded block again with its batch grown to ``len(zeroed)`` rows (call inside ``engaged``)."""
    from transformers.cache_utils import Cache

    rows = int(zeroed.numel())
    hidden = _hidden(call.args, call.kwargs)

    def grow(value: Any) -> Any:
        if value is hidden and isinstance(value, torch.Tensor):
            return value.expand(rows, *value.shape[1:]).contiguous()
        if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[0] == 1:
            return value.expand(rows, *value.shape[1:])
        if isinstance(value, Cache):
            return None
        if isinstance(value, tuple):
            return tuple(grow(v) for v in value)
        return value

    args = tuple(grow(a) for a in call.args)
    kwargs = {k: grow(v) for k, v in call.kwargs.items()}
    if "use_cache" in kwargs:
        kwargs["use_cache"] = False
    session.zero_values = {site: zeroed.to(hidden.device if hidden is not None else "cpu")}
    session.reset()
    session.count = site  # the block's site keeps its number: gates and zeroing address it
    with active_session(session):
        output = call.module(*args, **kwargs)
    if session.count != site + 1:
        raise UnsupportedModelError(
            f"block {site} ran {session.count - site} attention sites when run alone (expected exactly 1)"
        )
    out = _first_tensor(output)
    if out is None:
        raise UnsupportedModelError(f"block {site} returns no hidden-state tensor")
    return out


@dataclass(frozen=True, eq=False)
class BlockTensors:
    """What the norm-based measures read from every layer of one input, and the pass's recording.

    Attributes:
        layers: per layer the :class:`~attrflow.flow.mixing.LayerTensors` over the real positions.
        recording: the same pass as :meth:`Model.record` gives it (logits and attention).
    """

    layers: tuple[LayerTensors, ...]
    recording: Recording


def block_tensors(wrapper: Model, encoding: Encoding, structure: BlockStructure) -> BlockTensors:
    """One pass of ``encoding`` keeping what the norm-based measures read from every layer (real positions only)."""
    algebra = structure.algebra
    assert algebra is not None
    session = Session(record=True, capture_values=True)
    recorder = _Recorder(session)
    watched = [m for a in algebra for m in (a.norm2.module, *([a.norm1.module] if a.norm1 else []))]
    with wrapper.engaged(), torch.no_grad():
        with recorder.installed([b for b, _ in structure.blocks], watched):
            logits = wrapper._forward(encoding.inputs, session, position=wrapper._position(encoding))
        layers = _collect(encoding, structure, recorder, session)
    return BlockTensors(layers, _recording(wrapper, encoding, logits, session))


def _collect(
    encoding: Encoding, structure: BlockStructure, recorder: _Recorder, session: Session
) -> tuple[LayerTensors, ...]:
    assert structure.algebra is not None
    positions = encoding.positions.to(session.records[0].device)
    by_module: dict[int, list[_Call]] = {}
    for call in [*recorder.blocks, *recorder.inner]:
        by_module.setdefault(id(call.module), []).append(call)

    def real(tensor: torch.Tensor | None) -> torch.Tensor:
        assert tensor is not None
        return tensor[0].index_select(0, positions)

    def input_of(module: nn.Module, k: int) -> torch.Tensor:
        return real(_first_tensor(by_module[id(module)][k].args))

    out: list[LayerTensors] = []
    for layer, ((block, k), found) in enumerate(zip(structure.blocks, structure.algebra, strict=True)):
        x = real(_hidden(by_module[id(block)][k].args, by_module[id(block)][k].kwargs))
        probs = session.records[layer][0].index_select(-1, positions).index_select(-2, positions)
        values = session.values[layer][0].index_select(1, positions)
        weight, bias = cached_affine_map(found.out_proj, probs.shape[0] * values.shape[-1], x)
        out.append(
            LayerTensors(
                inputs=x,
                attention=probs,
                values=values,
                out_weight=weight,
                out_bias=bias,
                layout=found.layout,
                norm1=None if found.norm1 is None else found.norm1.parameters_at(input_of(found.norm1.module, k)),
                norm2=found.norm2.parameters_at(input_of(found.norm2.module, k)),
            )
        )
    return tuple(out)
