"""The model wrapper: what attrflow knows about a model and the forward passes it runs with attention interventions.

With ``_interface`` (the attention function), ``_probe`` (what the model is), ``_replay`` (hooks), ``_encoding``
and ``_inputs`` (inputs) and ``_loading``, this package is the only place that touches transformers internals. A wrapped model is
switched to attrflow's attention implementation only inside :meth:`Model.engaged`, which restores the original
implementation, every module's own training flag and every hook on exit, also after an exception.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from attrflow.errors import InvalidInputError, UnsupportedModelError
from attrflow.models import _encoding, _finite, _labels
from attrflow.models._encoding import Encoding
from attrflow.models._inputs import InputLike, InputMethods
from attrflow.models._interface import (
    IMPL_NAME,
    Session,
    active_session,
    ensure_registered,
    site_modules,
    streaming_handler,
)
from attrflow.models._mixing import MixingPasses
from attrflow.models._passes import BranchPass, ForwardPass, Recording
from attrflow.models._probe import TASKS, Probe, Task, encoder_of, probe_model, task_of
from attrflow.models._replay import embeddings_into, eval_mode, frozen_parameters, run_rows
from attrflow.models._streaming import KeyCache, StreamingCapture, logits_only_at

# the head gate set by the innermost Model.gate_heads (None outside)
_GATE: ContextVar[torch.Tensor | None] = ContextVar("attrflow_gate", default=None)
# the interaction masks set by the innermost Model.mask_interactions (None outside)
_EDITS: ContextVar[dict[int, torch.Tensor] | None] = ContextVar("attrflow_edits", default=None)


class Model(InputMethods, MixingPasses):
    """A 🤗 transformers model (+ tokenizer) that attrflow can read and intervene on.

    Build it with :func:`load_model`. ``model`` is the wrapped transformers model, returned to its original state
    after every attrflow call.
    """

    def __init__(self, model: nn.Module, tokenizer: Any = None, *, task: Task | None = None, name: str | None = None):
        if not isinstance(model, nn.Module) or not hasattr(model, "config"):
            raise InvalidInputError(f"expected a transformers PreTrainedModel, got {type(model).__name__}")
        config = model.config
        resolved = task or task_of(type(model).__name__)
        if resolved is None:
            raise UnsupportedModelError(
                f"{type(model).__name__} has no head attrflow can explain; load it with a head, e.g. "
                "AutoModelForSequenceClassification, AutoModelForCausalLM or AutoModelForImageClassification, "
                "or pass task=..."
            )
        if resolved not in TASKS:
            raise InvalidInputError(f"task must be one of {TASKS}, got {resolved!r}")
        self.model: Any = model
        self.tokenizer = tokenizer
        self.task: Task = resolved
        self.name = name or getattr(config, "_name_or_path", "") or type(model).__name__
        self._depth = 0
        self._encoder = encoder_of(model, resolved)
        # attention modules whose calls are sites; None = every call (set by the probe for encoder-decoders)
        self._site_modules: frozenset[int] | None = None
        ensure_registered()
        self._probe: Probe = probe_model(self)

    # ------------------------------------------------------------------ facts
    @property
    def num_layers(self) -> int:
        """Number of attention sites (layers) in one forward pass."""
        return self._probe.num_sites

    @property
    def num_heads(self) -> int:
        """Number of attention heads per layer (query heads for grouped-query attention)."""
        return self._probe.num_heads

    @property
    def is_encoder_decoder(self) -> bool:
        """Whether the model is an encoder–decoder (BART, T5, ...): its layers are the encoder's self-attention."""
        return self._encoder is not None

    @property
    def site_names(self) -> tuple[str, ...]:
        """Module path of each layer's attention site, in call order (``[k]`` marks the k-th call of a shared module).

        For encoder–decoder models these are the encoder's self-attention modules only; the decoder's
        self-attention and cross-attention run unchanged and are listed in :attr:`other_sites`.
        """
        return self._probe.site_names

    @property
    def other_sites(self) -> tuple[str, ...]:
        """Attention calls that are not exposed as layers (decoder self- and cross-attention of encoder–decoders)."""
        return self._probe.other_sites

    @property
    def causal(self) -> bool:
        """Whether every layer's attention is causal (a decoder)."""
        return self._probe.causal

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        device: torch.device = next(self.model.parameters()).device
        return device

    @property
    def num_outputs(self) -> int:
        """Number of classes (or vocabulary size for causal LMs)."""
        config = self.model.config
        if self.task == "causal-lm":
            return int(config.get_text_config().vocab_size)
        return int(config.num_labels)

    def label_name(self, index: int) -> str | None:
        """Readable name of output ``index`` (``id2label`` or the decoded token)."""
        if self.task == "causal-lm":
            return None if self.tokenizer is None else str(self.tokenizer.decode([index]))
        id2label = getattr(self.model.config, "id2label", None) or {}
        return id2label.get(index)

    def __repr__(self) -> str:
        kind = ", encoder self-attention layers" if self.is_encoder_decoder else ""
        return (
            f"attrflow.Model({self.name!r}, task={self.task!r}, layers={self.num_layers}, heads={self.num_heads}, "
            f"architecture={type(self.model).__name__}{kind})"
        )

    # ------------------------------------------------------------------ engagement
    @contextlib.contextmanager
    def engaged(self) -> Iterator[None]:
        """Route the model's attention through attrflow and switch every module to eval mode.

        On exit (also after an exception) the attention implementation and each module's own ``training`` flag
        are put back. Nested calls engage once.
        """
        with contextlib.ExitStack() as stack:
            if self._depth == 0:
                stack.enter_context(eval_mode(self.model))
                stack.enter_context(self._attention_routed())
            self._depth += 1
            try:
                with site_modules(self._site_modules):
                    yield
            finally:
                self._depth -= 1

    @contextlib.contextmanager
    def _attention_routed(self) -> Iterator[None]:
        original = self.model.config._attn_implementation
        if original == IMPL_NAME:
            yield
            return
        self._set_impl(IMPL_NAME)
        try:
            yield
        finally:
            self._set_impl(original)

    def _set_impl(self, name: str) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.model.set_attn_implementation(name)
        except (ValueError, KeyError, AttributeError, NotImplementedError) as exc:
            raise UnsupportedModelError(
                f"{type(self.model).__name__}: cannot route attention through attrflow ({exc})"
            ) from exc

    # ------------------------------------------------------------------ running (internal)
    def _logits(self, output: Any, position: int | list[int] | None = None) -> torch.Tensor:
        logits = output.logits if hasattr(output, "logits") else output[0]
        if self.task == "causal-lm":
            # a copy, not a view: a view would keep every position's logits ([n, vocab]) alive
            logits = logits[:, -1 if position is None else position].clone()
        return cast(torch.Tensor, logits)

    def _position(self, encoding: Encoding) -> int | None:
        return int(encoding.positions[encoding.output_position]) if self.task == "causal-lm" else None

    def _read_at(self, encoding: Encoding, positions: Sequence[int] | None) -> int | list[int] | None:
        """The padded position whose logits are read; with ``positions`` (real indices), each of those."""
        if positions is None:
            return self._position(encoding)
        if self.task != "causal-lm":
            raise InvalidInputError("logits at other positions exist for causal language models only")
        for p in positions:
            if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not 0 <= p < encoding.length:
                raise InvalidInputError(f"position {p!r} is outside the {encoding.length} tokens")
        return [int(encoding.positions[int(p)]) for p in positions]

    def _forward(
        self,
        inputs: Mapping[str, torch.Tensor],
        session: Session,
        *,
        batch: int = 1,
        position: int | list[int] | None = None,
    ) -> torch.Tensor:
        """Logits ``[batch, C]`` of the explained position (``[batch, k, C]`` for a list of positions), with
        ``session`` active (call inside ``engaged``)."""
        session.reset()
        if session.gate is None:
            session.gate = _GATE.get()
        edits = _EDITS.get()
        if edits:
            session.edits = {**edits, **session.edits}
        if batch > 1:
            inputs = {k: v.expand(batch, *v.shape[1:]) for k, v in inputs.items()}
        with active_session(session):
            out = self.model(**inputs)
        logits = self._logits(out, position)
        _finite.check_logits(self, logits, inputs)
        if logits.shape[0] != batch:
            raise RuntimeError(f"expected {batch} output rows, got {logits.shape[0]}")
        return logits

    def _branched(
        self,
        inputs: Mapping[str, torch.Tensor],
        branches: Mapping[int, torch.Tensor | tuple[torch.Tensor, int]],
        *,
        require_grad: bool = False,
        clean_leaves: bool = False,
        record: bool = False,
        stream: bool = False,
        position: int | list[int] | None = None,
        probe: Probe | None = None,
        replay: bool | None = None,
    ) -> tuple[torch.Tensor, Session]:
        """One forward pass: row 0 clean, then per site (ascending) one row per alpha with that site replaced.

        With replay, the rows of a site branch off row 0 at the block holding the site, so the layers below run
        once; otherwise every row runs the whole model from identical inputs (same numbers, more work).
        """
        probe = probe or self._probe
        replay = probe.replay_ok if replay is None else replay
        session = Session(
            record=record, require_grad=require_grad, clean_leaves=clean_leaves, stream=stream, gate=_GATE.get()
        )
        plan: dict[int, int] = {}
        total = 1
        for site in sorted(branches):
            spec = branches[site]
            alphas, grad_rows = spec if isinstance(spec, tuple) else (spec, int(spec.shape[0]))
            session.branches[site] = (total, alphas, grad_rows)
            plan[probe.site_block_call[site]] = int(alphas.shape[0])
            total += int(alphas.shape[0])
        session.reset()
        blocks = probe.blocks if replay else None
        options: dict[str, Any] = {}
        if stream and position is not None and self._accepts("logits_to_keep"):
            # the LM head on the read positions only: [rows, N, vocab] logits (and their gradient) would dominate
            wanted = [position] if isinstance(position, int) else position
            options["logits_to_keep"] = torch.tensor(wanted, device=self.device)
            position = 0 if isinstance(position, int) else list(range(len(wanted)))
        if stream and self.task == "causal-lm" and self._accepts("use_cache"):
            options["use_cache"] = False  # no key/value cache: memory, and blocks recomputed in the backward
        with frozen_parameters(self.model) if stream else contextlib.nullcontext():
            out = run_rows(
                self.model,
                inputs,
                session,
                total,
                blocks=blocks,
                plan=plan,
                encoder=self._encoder,
                options=options,
                # encoder-decoders: the decoder's blocks run every row anyway and may keep a cache; not recomputed
                engage=self.engaged if self._encoder is None else None,
                recompute=probe.blocks,
            )
        logits = self._logits(out, position)
        _finite.check_logits(self, logits, inputs)
        if logits.shape[0] != total:
            raise RuntimeError(f"expected {total} output rows, got {logits.shape[0]}")
        return logits, session

    def _accepts(self, option: str) -> bool:
        """Whether the model's forward takes ``option`` (e.g. ``logits_to_keep``: its LM head can skip positions)."""
        return option in inspect.signature(self.model.forward).parameters

    def _real_attentions(self, records: Sequence[torch.Tensor], encoding: Encoding) -> torch.Tensor:
        """``[L, H, n, n]``: row 0 of each recorded ``[B, H, N, N]`` restricted to the real positions."""
        positions = encoding.positions.to(self.device)
        return torch.stack([r[0].index_select(-1, positions).index_select(-2, positions) for r in records])

    def _checked_gate(self, gate: torch.Tensor) -> torch.Tensor:
        """``gate`` on the model's device (differentiable), times the gate of any :meth:`gate_heads` in force."""
        if not isinstance(gate, torch.Tensor) or gate.shape != (self.num_layers, self.num_heads):
            shape = tuple(gate.shape) if isinstance(gate, torch.Tensor) else type(gate).__name__
            raise InvalidInputError(f"gate must be a [{self.num_layers}, {self.num_heads}] tensor, got {shape}")
        gate = gate.to(self.device)
        outer = _GATE.get()
        return gate if outer is None else outer * gate

    # ------------------------------------------------------------------ running
    def run(
        self,
        encoding: Encoding,
        session: Session | None = None,
        *,
        batch: int = 1,
        positions: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Logits ``[batch, C]`` at the explained position of ``encoding`` (gradients as the caller set them).

        Heads gated by :meth:`gate_heads` and interactions masked by :meth:`mask_interactions` apply. For the
        attention probabilities, or to differentiate by a head gate, use :meth:`forward_pass`.

        Args:
            encoding: the input.
            session: deprecated; the pass's internal state. Use :meth:`forward_pass` instead.
            batch: how many identical rows to run (the logits repeat).
            positions: causal LMs: read the logits at these real positions instead, ``[batch, k, C]`` (e.g. the
                positions that predict a continuation's tokens).
        """
        if session is not None:
            warnings.warn(
                "Model.run(encoding, session) is deprecated: use Model.forward_pass(encoding, gate=...) for "
                "recorded attention and head gates, Model.record(inputs) for a stored recording",
                DeprecationWarning,
                stacklevel=2,
            )
        position = self._read_at(encoding, positions)
        with self.engaged():
            return self._forward(encoding.inputs, session or Session(), batch=batch, position=position)

    def forward_pass(self, encoding: Encoding, *, gate: torch.Tensor | None = None) -> ForwardPass:
        """One forward pass of ``encoding`` that keeps every layer's attention probabilities.

        Gradients are as the caller set them: under ``torch.enable_grad()`` the logits are part of the graph, so
        one backward differentiates by ``gate`` (Taylor head importance, Michel et al. 2019). Heads gated by
        :meth:`gate_heads` and interactions masked by :meth:`mask_interactions` apply.

        Args:
            encoding: the input.
            gate: ``[L, H]`` multipliers of each head's attention probabilities (1 keeps a head, 0 prunes it); may
                require grad. It multiplies the gate of any :meth:`gate_heads` block in force.

        Returns:
            A :class:`ForwardPass`: logits ``[C]`` and attentions ``[L, H, n, n]`` over the real positions, on the
            model's device and in its dtype.

        Raises:
            InvalidInputError: ``gate`` is not an ``[L, H]`` tensor.
        """
        session = Session(record=True, gate=None if gate is None else self._checked_gate(gate))
        with self.engaged():
            logits = self._forward(encoding.inputs, session, position=self._position(encoding))
        return ForwardPass(logits=logits[0], attentions=self._real_attentions(session.records, encoding))

    def record(self, inputs: InputLike, *, truncation: bool = True) -> Recording:
        """One forward pass of one input that keeps every layer's attention probabilities (no gradients).

        Works with SDPA/flash defaults: attrflow computes the probabilities itself and hands the model back with
        its own attention implementation. Heads gated by :meth:`gate_heads` stay gated.

        Returns:
            A :class:`Recording`: the encoding, the logits ``[C]`` and the attentions ``[L, H, n, n]`` (real tokens).
        """
        encoding = self.prepare(inputs, truncation=truncation)
        with torch.no_grad():
            clean = self.forward_pass(encoding)
        attentions = clean.attentions.cpu()
        # half-precision probabilities stay in their type: exact either way, and their row sums' rounding is known
        attentions = attentions if attentions.dtype in (torch.float16, torch.bfloat16) else attentions.float()
        return Recording(encoding=encoding, logits=clean.logits.detach().cpu(), attentions=attentions)

    def capture_keys(self, inputs: InputLike, *, truncation: bool = True) -> KeyCache:
        """One forward pass that keeps every layer's queries and keys, not its attention: ``O(L·n·d)`` memory.

        For long inputs, where :meth:`record`'s ``[L, H, n, n]`` would not fit: attention outputs come from torch's
        fused scaled-dot-product attention, and :meth:`KeyCache.attention_rows` recomputes any block of attention
        rows later, equal to the recorded ones (same mask, scaling, grouped-query heads, softcap and position
        bias). Causal LMs compute logits only at the explained position. Heads gated by :meth:`gate_heads` and
        interactions masked by :meth:`mask_interactions` apply.
        """
        encoding = self.prepare(inputs, truncation=truncation)
        capture = StreamingCapture(gate=_GATE.get(), edits=_EDITS.get() or {})
        position = self._position(encoding)
        only = logits_only_at(self.model, position)
        with self.engaged(), torch.no_grad(), streaming_handler(capture):
            output = self.model(**encoding.inputs, **only)
        logits = self._logits(output, 0 if only else position)
        if len(capture.sites) != self.num_layers:
            raise RuntimeError(f"expected {self.num_layers} attention sites, the pass had {len(capture.sites)}")
        return KeyCache(encoding=encoding, logits=logits[0].detach().cpu(), sites=tuple(capture.sites))

    def input_embedding_module(self) -> nn.Module:
        """The module that turns token ids into word embeddings (the encoder's own, for encoder-decoders).

        Raises:
            UnsupportedModelError: the model exposes none (``get_input_embeddings``).
        """
        owner = self._encoder if self._encoder is not None else self.model
        getter = getattr(owner, "get_input_embeddings", None)
        module = getter() if callable(getter) else getattr(owner, "embed_tokens", None)
        if not isinstance(module, nn.Module):
            raise UnsupportedModelError(
                f"{type(self.model).__name__} exposes no input-embedding module (get_input_embeddings); "
                "gradient token scores need one"
            )
        return module

    def run_embeddings(
        self, encoding: Encoding, embeddings: torch.Tensor, *, positions: Sequence[int] | None = None
    ) -> torch.Tensor:
        """Logits ``[B, C]`` with the word embeddings of ``encoding`` replaced by ``embeddings`` ``[B, N, d]``.

        ``embeddings`` stands for the output of :meth:`input_embedding_module` (position and token-type embeddings
        are still added by the model); gradients flow back to it. Encoder-decoder models get the embeddings in the
        encoder only: their decoder and classification head still read the token ids. ``positions`` (causal LMs):
        the logits at those real positions, ``[B, k, C]``.
        """
        batch = int(embeddings.shape[0])
        position = self._read_at(encoding, positions)
        with self.engaged():
            if self._encoder is None:
                inputs = {key: value for key, value in encoding.inputs.items() if key != "input_ids"}
                inputs["inputs_embeds"] = embeddings
                return self._forward(inputs, Session(), batch=batch, position=position)
            with embeddings_into(self._encoder, embeddings):
                return self._forward(encoding.inputs, Session(), batch=batch, position=position)

    def run_branches(
        self,
        encoding: Encoding,
        branches: Mapping[int, torch.Tensor | tuple[torch.Tensor, int]],
        *,
        require_grad: bool = False,
        clean_leaves: bool = False,
        record: bool = False,
        stream: bool = False,
        positions: Sequence[int] | None = None,
    ) -> BranchPass:
        """One pass that evaluates many attention replacements at once (the work behind AttAttr).

        Args:
            encoding: the input.
            branches: ``{site: alphas [R]}`` or ``{site: (alphas, grad_rows)}``; for each site, R rows in which that
                site's probabilities A are replaced by ``alpha · A`` (the other sites compute normally).
            require_grad: make the replaced tensors of the first ``grad_rows`` rows (default all) of each site a
                grad-requiring leaf (:attr:`BranchPass.leaves`, ``[grad_rows, H, N, N]``).
            clean_leaves: with ``require_grad``, also make row 0's probabilities at every site a tensor to
                differentiate by (:attr:`BranchPass.clean_row_leaves`), giving ∂F/∂A at α = 1 for every layer in
                the same backward.
            record: keep every site's clean (row 0) probabilities in :attr:`BranchPass.attentions`.
            stream: memory-bounded: the sites without a branch run fused (their probabilities are never
                materialised), the blocks without a branch are checkpointed (recomputed in the backward: it keeps
                O(N·d) per row and block), the parameters stop requiring grad, and each branched site's clean
                probabilities come back in :attr:`BranchPass.bases`. Same numbers up to the fused kernel's
                rounding. Run the backward inside :meth:`engaged` (the recomputation engages by itself, at a cost).
            positions: causal LMs: logits at these real positions, ``[rows, k, C]``.

        Returns:
            A :class:`BranchPass`: logits ``[1 + Σ R, C]``, row 0 clean, then the rows of each site in ascending
            site order (first rows in :attr:`BranchPass.row_starts`). Where the model allows it, rows branch off at
            the site's block and the layers below are computed once; results are the same either way.
        """
        with self.engaged():
            logits, session = self._branched(
                encoding.inputs,
                branches,
                require_grad=require_grad,
                clean_leaves=clean_leaves,
                record=record,
                stream=stream,
                position=self._read_at(encoding, positions),
            )
        return BranchPass(
            logits=logits,
            row_starts={site: start for site, (start, _, _) in session.branches.items()},
            leaves=dict(session.leaves),
            clean_row_leaves=dict(session.clean_row_leaves),
            attentions=torch.stack([r[0] for r in session.records]) if record else None,
            bases=dict(session.bases),
        )

    # ------------------------------------------------------------------ interventions
    @contextlib.contextmanager
    def gate_heads(self, mask: torch.Tensor) -> Iterator[None]:
        """Multiply each head's attention probabilities by ``mask[layer, head]`` inside the block.

        This replaces ``head_mask``, which transformers v5 removed: a gated head's output is zero before the
        output projection (bias and residual still pass). Use 0 to prune a head, 1 to keep it.
        """
        gate = torch.as_tensor(mask, dtype=torch.float32, device=self.device)
        if gate.shape != (self.num_layers, self.num_heads):
            raise InvalidInputError(f"head mask must be [{self.num_layers}, {self.num_heads}], got {tuple(gate.shape)}")
        outer = _GATE.get()
        token = _GATE.set(gate if outer is None else outer * gate)
        try:
            yield
        finally:
            _GATE.reset(token)

    @contextlib.contextmanager
    def mask_interactions(
        self, interactions: Mapping[int, Sequence[tuple[int, int]]], encoding: Encoding
    ) -> Iterator[None]:
        """Zero the attention entries ``(query i, key j)`` of the given layers in every head, for ``encoding``.

        Args:
            interactions: ``{layer: [(i, j), ...]}`` over the real tokens of ``encoding`` (negative layers count from
                the end).
            encoding: the input the indices refer to (padding positions are mapped for you).

        Inside the block, :meth:`run` (and everything built on it) computes with those probabilities set to 0
        (no renormalisation), as Hao et al. §4.3 mask the tree's interactions.

        Raises:
            InvalidInputError: a layer or a token index is out of range.
        """
        n_padded = encoding.padded_length
        positions = encoding.positions.tolist()
        edits: dict[int, torch.Tensor] = {}
        for layer, pairs in interactions.items():
            if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
                raise InvalidInputError(f"layers must be integers, got {layer!r}")
            if not -self.num_layers <= layer < self.num_layers:
                raise InvalidInputError(f"layer {layer!r} is out of range for a model with {self.num_layers} layers")
            site = int(layer) % self.num_layers
            mask = edits.get(site, torch.ones(n_padded, n_padded, device=self.device))
            for i, j in pairs:
                if not (0 <= i < encoding.length and 0 <= j < encoding.length):
                    raise InvalidInputError(f"interaction ({i}, {j}) is outside the {encoding.length} tokens")
                mask[positions[i], positions[j]] = 0.0
            edits[site] = mask
        outer = _EDITS.get()
        merged = dict(outer or {})
        for layer, mask in edits.items():
            merged[layer] = merged[layer] * mask if layer in merged else mask
        token = _EDITS.set(merged)
        try:
            yield
        finally:
            _EDITS.reset(token)

    def randomized(self, top: int, *, seed: int = 0) -> Model:
        """A copy with its top ``top`` layers and everything above them re-initialised (this model is unchanged).

        The model-parameter randomisation test of Adebayo et al. (NeurIPS 2018), cascading from the top: the head,
        the final norm and the top ``top`` layer blocks get the architecture's own fresh initialisation (seeded);
        the embeddings and the layers below keep their trained weights. See :mod:`attrflow.models._randomize`.
        """
        from attrflow.models._randomize import randomized_copy

        return randomized_copy(self, top, seed=seed)

    def check_dataset(self, dataset: Any) -> None:
        """Refuse a labelled dataset whose classes are not this model's (their number, or their names in order).

        Every dataset-level analysis calls this before any work; the message names the model's classes and the
        dataset's labels.

        Raises:
            InvalidInputError: the model and the dataset disagree.
        """
        _labels.check_labels(self, dataset)

    def resolve_target(self, target: int | None, predicted: int) -> int:
        """``target`` checked against the model's outputs (a class index, or a vocabulary id for causal LMs), or
        ``predicted`` when None."""
        if target is None:
            return int(predicted)
        limit = self.num_outputs
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or not 0 <= target < limit:
            what = "vocabulary id" if self.task == "causal-lm" else "class index"
            raise InvalidInputError(f"target must be a {what} in [0, {limit}), got {target!r}")
        return int(target)

    # ------------------------------------------------------------------ predictions
    def predict_proba(self, inputs: InputLike) -> torch.Tensor:
        """Output probabilities ``[C]`` (softmax over classes or the next-token vocabulary) for one input."""
        encoding = self.prepare(inputs)
        with torch.no_grad():
            return torch.softmax(self.run(encoding).float(), dim=-1)[0]

    def predict_batch(
        self,
        texts: Sequence[str | tuple[str, str | None] | Mapping[str, Sequence[int]]],
        *,
        batch_size: int = 32,
    ) -> torch.Tensor:
        """Output probabilities ``[len(texts), C]`` for many inputs, batched.

        Items may be texts, ``(text, text_pair)`` tuples, or already tokenised inputs: mappings with
        ``input_ids`` (and optionally ``token_type_ids``/``attention_mask``) as lists of ints, e.g. a tokenised
        example with trigger word-pieces inserted or tokens deleted (:meth:`tokenize`).

        Padding never changes a row's result (checked in tests). Inputs longer than the model's maximum are
        truncated silently here (dataset-scale evaluation); heads gated by :meth:`gate_heads` stay gated.
        """
        if self.tokenizer is None:
            raise InvalidInputError("predict_batch needs a tokenizer; this model has none")
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        features = _encoding.batch_features(self.tokenizer, texts, limit=self.max_length())
        # encoder-decoder classifiers (BART, T5) need the same number of end-of-sequence tokens within a batch
        eos = getattr(self.model.config, "eos_token_id", None)
        eos = eos if self.is_encoder_decoder and isinstance(eos, int) else None
        order, chunks = _encoding.length_chunks(features, batch_size, eos=eos)
        rows: list[torch.Tensor] = []
        with self.engaged(), torch.no_grad():
            for members in chunks:
                inputs = _encoding.pad(self.tokenizer, [features[i] for i in members], self.device)
                with active_session(Session(gate=_GATE.get())):
                    output = self.model(**inputs)
                logits = output.logits if hasattr(output, "logits") else output[0]
                if self.task == "causal-lm":
                    mask = inputs["attention_mask"]
                    # last real position per row, for right or left padding
                    last = mask.shape[1] - 1 - mask.flip(1).float().argmax(dim=1)
                    logits = logits[torch.arange(logits.shape[0], device=logits.device), last]
                rows.append(torch.softmax(logits.float(), dim=-1).cpu())
        if not rows:
            return torch.empty(0, self.num_outputs)
        result = torch.empty(len(order), rows[0].shape[-1])
        result[torch.tensor(order)] = torch.cat(rows)
        _finite.check_items(self, result, features)
        return result
