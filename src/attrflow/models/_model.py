"""The model wrapper: loading, encoding inputs, and running forward passes with attention interventions.

This module (with ``_interface``) is the only place that touches transformers internals. A wrapped model is
switched to attrflow's attention implementation only inside :meth:`Model.engaged`, which restores the original
implementation, the training flag and every hook on exit, also after an exception.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn

from attrflow.errors import InvalidInputError, UnsupportedModelError
from attrflow.models._interface import IMPL_NAME, Session, active_session, ensure_registered, site_modules

logger = logging.getLogger(__name__)

Task = Literal["sequence-classification", "causal-lm", "image-classification"]
TASKS: tuple[Task, ...] = ("sequence-classification", "causal-lm", "image-classification")

_TASK_SUFFIXES: tuple[tuple[str, Task], ...] = (
    ("ForSequenceClassification", "sequence-classification"),
    ("ForCausalLM", "causal-lm"),
    ("LMHeadModel", "causal-lm"),
    ("ForImageClassification", "image-classification"),
    ("ForImageClassificationWithTeacher", "image-classification"),
)

InputLike = Any  # str | tuple[str, str] | Mapping[str, Tensor] | Encoding

# the head gate set by the innermost Model.gate_heads (None outside)
_GATE: ContextVar[torch.Tensor | None] = ContextVar("attrflow_gate", default=None)
# the interaction masks set by the innermost Model.mask_interactions (None outside)
_EDITS: ContextVar[dict[int, torch.Tensor] | None] = ContextVar("attrflow_edits", default=None)


@dataclass(frozen=True)
class Encoding:
    """One input, ready for the model.

    Attributes:
        inputs: model keyword arguments, batch size 1 (``input_ids``, ``attention_mask``, ... or ``pixel_values``).
        tokens: the names of the n real positions (tokens, or patches for images).
        positions: ``[n]`` indices of the real positions inside the padded sequence.
        special_mask: True for special tokens.
        input_ids: the n token ids (empty for images).
        segment_ids: segment of each real token, if the model has token types.
        output_position: index (among the n real positions) whose output the model's prediction reads.
        truncated: whether the text was cut to the model's maximum length.
    """

    inputs: Mapping[str, torch.Tensor]
    tokens: tuple[str, ...]
    positions: torch.Tensor
    special_mask: tuple[bool, ...]
    input_ids: tuple[int, ...] = ()
    segment_ids: tuple[int, ...] | None = None
    output_position: int = 0
    truncated: bool = False

    @property
    def length(self) -> int:
        """Number of real positions n."""
        return len(self.tokens)


@dataclass(frozen=True, eq=False)
class Recording:
    """One clean forward pass of one input, with every layer's attention probabilities.

    Attributes:
        encoding: the input.
        logits: ``[C]`` the model's output at the explained position (class logits, or next-token logits).
        attentions: float32 ``[L, H, n, n]`` over the n real positions (row = query, column = key), on the CPU.
    """

    encoding: Encoding
    logits: torch.Tensor
    attentions: torch.Tensor

    @property
    def probabilities(self) -> torch.Tensor:
        """``[C]`` softmax of the logits (float64)."""
        return torch.softmax(self.logits.double(), dim=-1)

    @property
    def predicted(self) -> int:
        """The predicted class (or next-token id)."""
        return int(self.logits.argmax())


SPECIAL_SEGMENT = -1
"""The segment of a special token ([CLS], [SEP], ...) in :attr:`TokenizedText.segments`."""


@dataclass(frozen=True)
class TokenizedText:
    """A text (or text pair) tokenised exactly as the model's own encoding does, as plain lists of ints.

    Attributes:
        input_ids: the token ids, special tokens included.
        token_type_ids: the token types, when the tokenizer produces them.
        segments: per position 0 (first text), 1 (second text) or -1 (:data:`SPECIAL_SEGMENT`) for special tokens.
    """

    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...] | None
    segments: tuple[int, ...]

    def features(self) -> dict[str, list[int]]:
        """A tokenised item for :meth:`Model.predict_batch` / ``Model.prepare``."""
        out = {"input_ids": list(self.input_ids), "attention_mask": [1] * len(self.input_ids)}
        if self.token_type_ids is not None:
            out["token_type_ids"] = list(self.token_type_ids)
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        """Batch-1 tensors for :meth:`Model.prepare`."""
        return {key: torch.tensor([value], dtype=torch.long) for key, value in self.features().items()}


def _segments(tokenizer: Any, encoded: Any, ids: Sequence[int], has_pair: bool) -> tuple[int, ...]:
    """The segment (0, 1, or -1 for special tokens) of every position of a tokenised input."""
    try:
        sequence_ids = encoded.sequence_ids(0)
    except (ValueError, AttributeError, TypeError):
        sequence_ids = None
    if sequence_ids is not None and len(sequence_ids) == len(ids):
        return tuple(SPECIAL_SEGMENT if s is None else int(s) for s in sequence_ids)
    # slow tokenizers: the non-special tokens form one run per segment, separated by special tokens
    special = tokenizer.get_special_tokens_mask(list(ids), already_has_special_tokens=True)
    segments, segment, previous_special = [], -1, True
    for is_special in special:
        if is_special:
            segments.append(SPECIAL_SEGMENT)
        else:
            if previous_special:
                segment += 1
            segments.append(min(segment, 1 if has_pair else 0))
        previous_special = bool(is_special)
    return tuple(segments)


@dataclass
class _Probe:
    """What one probing forward pass revealed about the model's attention."""

    num_sites: int
    num_heads: int
    causal: bool
    blocks: list[nn.Module] = field(default_factory=list)
    site_block_call: list[int] = field(default_factory=list)
    replay_ok: bool = False
    site_names: tuple[str, ...] = ()
    other_sites: tuple[str, ...] = ()


def _task_of(model: nn.Module) -> Task | None:
    name = type(model).__name__
    for suffix, task in _TASK_SUFFIXES:
        if name.endswith(suffix):
            return task
    return None


class Model:
    """A 🤗 transformers model (+ tokenizer) that attrflow can read and intervene on.

    Build it with :func:`load_model`. ``model`` is the wrapped transformers model, returned to its original state
    after every attrflow call.
    """

    def __init__(self, model: nn.Module, tokenizer: Any = None, *, task: Task | None = None, name: str | None = None):
        if not isinstance(model, nn.Module) or not hasattr(model, "config"):
            raise InvalidInputError(f"expected a transformers PreTrainedModel, got {type(model).__name__}")
        config = model.config
        resolved = task or _task_of(model)
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
        self._saved: tuple[Any, bool] | None = None
        self._encoder = _encoder_of(model, resolved)
        # attention modules whose calls are sites; None = every call (set by the probe for encoder-decoders)
        self._site_modules: frozenset[int] | None = None
        ensure_registered()
        self._probe = self._run_probe()

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
        return next(self.model.parameters()).device

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
        """Route the model's attention through attrflow and switch to eval mode; restore both on exit."""
        if self._depth == 0:
            config = self.model.config
            original = config._attn_implementation
            was_training = self.model.training
            if original != IMPL_NAME:
                self._set_impl(IMPL_NAME)
            self._saved = (original, was_training)
            self.model.eval()
        self._depth += 1
        try:
            with site_modules(self._site_modules):
                yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self._saved is not None:
                original, was_training = self._saved
                self._saved = None
                if original != IMPL_NAME:
                    self._set_impl(original)
                self.model.train(was_training)

    def _set_impl(self, name: str) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.model.set_attn_implementation(name)
        except (ValueError, KeyError, AttributeError, NotImplementedError) as exc:
            raise UnsupportedModelError(
                f"{type(self.model).__name__}: cannot route attention through attrflow ({exc})"
            ) from exc

    # ------------------------------------------------------------------ probing
    def _dummy_inputs(self) -> dict[str, torch.Tensor]:
        config = self.model.config
        if self.task == "image-classification":
            size = getattr(config, "image_size", 224)
            size = size if isinstance(size, int) else size[0]
            channels = getattr(config, "num_channels", 3)
            generator = torch.Generator().manual_seed(0)
            return {"pixel_values": torch.randn(1, channels, size, size, generator=generator)}
        vocab = int(config.get_text_config().vocab_size)
        ids = torch.arange(5, 5 + 6) % vocab
        eos = getattr(config, "eos_token_id", None)
        if self.is_encoder_decoder and isinstance(eos, int):
            ids[-1] = eos  # BART/T5 classification heads read the hidden state at the end-of-sequence token
        return {"input_ids": ids.view(1, -1), "attention_mask": torch.ones(1, ids.numel(), dtype=torch.long)}

    def _run_probe(self) -> _Probe:
        """Check that attention routes through attrflow and gives the model's own outputs; find the blocks."""
        dummy = {k: v.to(self.device) for k, v in self._dummy_inputs().items()}
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                reference = self._logits(self.model(**dummy))
        except Exception as exc:  # any failure of the model's own code on a plain input: say which, keep the cause
            raise UnsupportedModelError(
                f"{type(self.model).__name__} fails on a plain {', '.join(dummy)} input before attrflow changes "
                f"anything ({type(exc).__name__}: {exc}); check the model's config"
            ) from exc
        finally:
            self.model.train(was_training)
        session = Session(record=True)
        blocks = _candidate_blocks(self.model)
        with self.engaged(), torch.no_grad(), _counting_hooks(blocks, session), active_session(session):
            session.reset()
            ours = self._logits(self.model(**dummy))
        arch = type(self.model).__name__
        names = _site_names(self.model, session.modules)
        selected = list(range(session.count))
        if self._encoder is not None:
            inside = {id(module) for module in self._encoder.modules()}
            selected = [i for i, module in enumerate(session.modules) if id(module) in inside]
            if session.count and not selected:
                raise UnsupportedModelError(
                    f"{arch}: none of its attention calls is inside the encoder ({type(self._encoder).__name__}); "
                    "attrflow explains the encoder self-attention of encoder-decoder models"
                )
        if session.count == 0:
            raise UnsupportedModelError(
                f"{arch} computes attention inline and bypasses transformers' AttentionInterface, so attrflow "
                "cannot read or replace its attention probabilities. Supported: BERT, RoBERTa, DistilBERT, ALBERT, "
                "ELECTRA, GPT-2, Llama-family, ViT and other models that use AttentionInterface."
            )
        if not torch.allclose(ours, reference, rtol=1e-4, atol=1e-4):
            diff = float((ours - reference).abs().max())
            raise UnsupportedModelError(
                f"{arch}: outputs through attrflow's attention differ from the model's own by {diff:.2e}; "
                "its attention does something attrflow does not reproduce, so results would be wrong"
            )
        records = [session.records[i] for i in selected]
        heads = {int(r.shape[1]) for r in records}
        if len(heads) != 1:
            raise UnsupportedModelError(f"{arch}: layers have different head counts {sorted(heads)}")
        causal = all(bool((r.triu(diagonal=1) == 0).all()) for r in records) and records[0].shape[-1] > 1
        probe = _Probe(num_sites=len(selected), num_heads=heads.pop(), causal=causal)
        probe.blocks = blocks
        probe.site_block_call = [session.site_block_call[i] for i in selected]
        probe.site_names = tuple(names[i] for i in selected)
        chosen = set(selected)
        probe.other_sites = tuple(name for i, name in enumerate(names) if i not in chosen)
        if self._encoder is not None:
            self._site_modules = frozenset(id(session.modules[i]) for i in selected)
        probe.replay_ok = self._check_replay(probe, dummy, ours)
        logger.debug(
            "probed %s: %d sites, %d heads, replay=%s", arch, probe.num_sites, probe.num_heads, probe.replay_ok
        )
        return probe

    def _check_replay(self, probe: _Probe, dummy: Mapping[str, torch.Tensor], clean: torch.Tensor) -> bool:
        """Whether branching rows off at a block (reusing the layers below) gives the model's outputs."""
        if not probe.blocks or any(call < 0 for call in probe.site_block_call):
            return False
        if len(set(probe.site_block_call)) != probe.num_sites:
            return False  # several sites in one block: rows could not branch at the site's own block
        site = probe.num_sites - 1
        try:
            ones = torch.ones(2, device=self.device)
            with self.engaged(), torch.no_grad():
                out, _ = self._branched(dummy, {site: ones}, probe=probe, replay=True)
        except (RuntimeError, ValueError, IndexError) as exc:
            logger.debug("layer replay unavailable: %s", exc)
            return False
        return bool(out.shape[0] == 3 and torch.allclose(out, clean.expand_as(out), rtol=1e-5, atol=1e-6))

    # ------------------------------------------------------------------ running
    def _logits(self, output: Any, position: int | None = None) -> torch.Tensor:
        logits = output.logits if hasattr(output, "logits") else output[0]
        if self.task == "causal-lm":
            logits = logits[:, -1 if position is None else position]
        return cast(torch.Tensor, logits)

    def _forward(
        self,
        inputs: Mapping[str, torch.Tensor],
        session: Session,
        *,
        batch: int = 1,
        position: int | None = None,
    ) -> torch.Tensor:
        """Logits ``[batch, C]`` of the explained position, with ``session`` active (call inside ``engaged``)."""
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
        position: int | None = None,
        probe: _Probe | None = None,
        replay: bool | None = None,
    ) -> tuple[torch.Tensor, Session]:
        """One forward pass: row 0 clean, then per site (ascending) one row per alpha with that site replaced.

        With replay, the rows of a site branch off row 0 at the block holding the site, so the layers below run
        once; otherwise every row runs the whole model from identical inputs (same numbers, more work).
        """
        probe = probe or self._probe
        replay = probe.replay_ok if replay is None else replay
        session = Session(record=record, require_grad=require_grad, clean_leaves=clean_leaves, gate=_GATE.get())
        plan: dict[int, int] = {}
        total = 1
        for site in sorted(branches):
            spec = branches[site]
            alphas, grad_rows = spec if isinstance(spec, tuple) else (spec, int(spec.shape[0]))
            session.branches[site] = (total, alphas, grad_rows)
            plan[probe.site_block_call[site]] = int(alphas.shape[0])
            total += int(alphas.shape[0])
        session.reset()
        if replay and self._encoder is not None and total > 1:
            # the decoder and the head need every row (they read the branched encoder states and input_ids), the
            # encoder only row 0 below the branch points: it gets row 0 and grows rows at the branching blocks
            expanded = {k: v.expand(total, *v.shape[1:]) for k, v in inputs.items()}
            with (
                _first_row_into(self._encoder, total),
                _branching_hooks(probe.blocks, session, plan),
                active_session(session),
            ):
                out = self.model(**expanded)
        elif replay:
            with _branching_hooks(probe.blocks, session, plan), active_session(session):
                out = self.model(**inputs)
        else:
            expanded = {k: v.expand(total, *v.shape[1:]) for k, v in inputs.items()}
            with active_session(session):
                out = self.model(**expanded)
        logits = self._logits(out, position)
        if logits.shape[0] != total:
            raise RuntimeError(f"expected {total} output rows, got {logits.shape[0]}")
        return logits, session

    def _position(self, encoding: Encoding) -> int | None:
        return int(encoding.positions[encoding.output_position]) if self.task == "causal-lm" else None

    def run(
        self,
        encoding: Encoding,
        session: Session | None = None,
        *,
        batch: int = 1,
    ) -> torch.Tensor:
        """Logits ``[batch, C]`` at the explained position of ``encoding`` under ``session`` (grad as the caller set)."""
        session = session or Session()
        with self.engaged():
            return self._forward(encoding.inputs, session, batch=batch, position=self._position(encoding))

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

    def run_embeddings(self, encoding: Encoding, embeddings: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C]`` with the word embeddings of ``encoding`` replaced by ``embeddings`` ``[B, N, d]``.

        ``embeddings`` stands for the output of :meth:`input_embedding_module` (position and token-type embeddings
        are still added by the model); gradients flow back to it. Encoder-decoder models get the embeddings in the
        encoder only: their decoder and classification head still read the token ids.
        """
        batch = int(embeddings.shape[0])
        position = self._position(encoding)
        with self.engaged():
            if self._encoder is None:
                inputs = {key: value for key, value in encoding.inputs.items() if key != "input_ids"}
                inputs["inputs_embeds"] = embeddings
                return self._forward(inputs, Session(), batch=batch, position=position)
            with _embeddings_into(self._encoder, embeddings):
                return self._forward(encoding.inputs, Session(), batch=batch, position=position)

    def run_branches(
        self,
        encoding: Encoding,
        branches: Mapping[int, torch.Tensor | tuple[torch.Tensor, int]],
        *,
        require_grad: bool = False,
        clean_leaves: bool = False,
        record: bool = False,
    ) -> tuple[torch.Tensor, Session]:
        """One pass that evaluates many attention replacements at once (the work behind AttAttr).

        Args:
            encoding: the input.
            branches: ``{site: alphas [R]}`` or ``{site: (alphas, grad_rows)}``; for each site, R rows in which that
                site's probabilities A are replaced by ``alpha · A`` (the other sites compute normally).
            require_grad: make the replaced tensors of the first ``grad_rows`` rows (default all) of each site a
                grad-requiring leaf (``session.leaves[site]``, ``[grad_rows, H, N, N]``).
            clean_leaves: with ``require_grad``, also make row 0's probabilities at every site a leaf
                (``session.clean_row_leaves[site]``), giving ∂F/∂A at α = 1 for every layer in the same backward.
            record: keep every site's probabilities in ``session.records`` (row 0 is the clean input).

        Returns:
            ``(logits, session)``: logits ``[1 + Σ R, C]``, row 0 clean, then the rows of each site in ascending
            site order. Where the model allows it, rows branch off at the site's block and the layers below are
            computed once; results are the same either way.
        """
        with self.engaged():
            return self._branched(
                encoding.inputs,
                branches,
                require_grad=require_grad,
                clean_leaves=clean_leaves,
                record=record,
                position=self._position(encoding),
            )

    # ------------------------------------------------------------------ inputs
    def max_length(self) -> int | None:
        """Longest input in tokens the model accepts (None when unbounded or unknown)."""
        limits = []
        tokenizer_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tokenizer_max, int) and tokenizer_max < 1_000_000:
            limits.append(tokenizer_max)
        config = self.model.config.get_text_config()
        positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if isinstance(positions, int) and positions > 0:
            # RoBERTa-style position ids start after the padding index
            offset = (
                (config.pad_token_id + 1)
                if type(self.model).__name__.startswith(("Roberta", "XLMRoberta", "Camembert"))
                else 0
            )
            limits.append(positions - offset)
        return min(limits) if limits else None

    def encode(self, text: str, text_pair: str | None = None, *, truncation: bool = True) -> Encoding:
        """Tokenise ``text`` (and ``text_pair``) into an :class:`Encoding` of batch size 1.

        Args:
            text: the input text; must not be empty or only whitespace.
            text_pair: optional second segment (sentence-pair tasks).
            truncation: cut inputs longer than the model's maximum (with a warning); False raises instead.

        Raises:
            InvalidInputError: empty text, or too long with ``truncation=False``, or no tokenizer.
        """
        if self.tokenizer is None:
            raise InvalidInputError("this model has no tokenizer: pass inputs as a dict of tensors, or give tokenizer=")
        for label, value in (("text", text), ("text_pair", text_pair)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InvalidInputError(f"{label} is empty or only whitespace; give a non-empty string")
        limit = self.max_length()
        full = self.tokenizer(text, text_pair, truncation=False)
        length = len(full["input_ids"])
        truncated = False
        if limit is not None and length > limit:
            if not truncation:
                raise InvalidInputError(
                    f"the input has {length} tokens but the model accepts at most {limit}; shorten it or allow "
                    "truncation (truncation=True, the default)"
                )
            warnings.warn(f"input of {length} tokens truncated to the model's maximum of {limit}", stacklevel=2)
            truncated = True
        encoded = self.tokenizer(
            text, text_pair, truncation=truncated, max_length=limit if truncated else None, return_tensors="pt"
        )
        encoding = self.from_tensors(dict(encoded))
        return Encoding(**{**encoding.__dict__, "truncated": truncated})

    def from_tensors(self, inputs: Mapping[str, Any]) -> Encoding:
        """Wrap a dict of batch-1 tensors (``input_ids``/``attention_mask``/... or ``pixel_values``)."""
        tensors: dict[str, torch.Tensor] = {}
        for key, value in inputs.items():
            tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
            if tensor.dim() == 1 and key != "pixel_values":
                tensor = tensor.unsqueeze(0)
            if tensor.shape[0] != 1:
                raise InvalidInputError(
                    f"{key} has batch size {tensor.shape[0]}; attrflow explains one input at a time"
                )
            tensors[key] = tensor.to(self.device)
        if "pixel_values" in tensors:
            return self._image_encoding(tensors)
        ids = tensors.get("input_ids")
        if ids is None:
            raise InvalidInputError("inputs need 'input_ids' (text models) or 'pixel_values' (image models)")
        if ids.numel() == 0:
            raise InvalidInputError("input_ids is empty")
        vocab = int(self.model.config.get_text_config().vocab_size)
        if int(ids.max()) >= vocab or int(ids.min()) < 0:
            raise InvalidInputError(f"input_ids must lie in [0, {vocab}) for this model")
        mask = tensors.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(ids)
            tensors["attention_mask"] = mask
        positions = torch.nonzero(mask[0].bool(), as_tuple=False).flatten()
        if positions.numel() == 0:
            raise InvalidInputError("attention_mask masks every token")
        id_list = [int(i) for i in ids[0, positions]]
        tokens = self._token_names(id_list)
        special_ids = set(getattr(self.tokenizer, "all_special_ids", []) or [])
        special = tuple(i in special_ids for i in id_list)
        segments = tensors.get("token_type_ids")
        segment_ids = None if segments is None else tuple(int(s) for s in segments[0, positions])
        # decoders read the last position; encoder-decoder classifiers read the end-of-sequence token (last)
        output_position = (
            len(id_list) - 1 if (self.causal or self.task == "causal-lm" or self.is_encoder_decoder) else 0
        )
        return Encoding(
            inputs=tensors,
            tokens=tokens,
            positions=positions.cpu(),
            special_mask=special,
            input_ids=tuple(id_list),
            segment_ids=segment_ids,
            output_position=output_position,
        )

    def _token_names(self, ids: Sequence[int]) -> tuple[str, ...]:
        if self.tokenizer is None:
            return tuple(f"#{i}" for i in ids)
        return tuple(str(t) for t in self.tokenizer.convert_ids_to_tokens(list(ids)))

    def _image_encoding(self, tensors: dict[str, torch.Tensor]) -> Encoding:
        session = Session(record=True)
        with self.engaged(), torch.no_grad():
            self._forward(tensors, session)
        n = int(session.records[0].shape[-1])
        config = self.model.config
        patch = getattr(config, "patch_size", None)
        size = tensors["pixel_values"].shape[-1]
        grid = size // patch if isinstance(patch, int) and patch > 0 else 0
        extra = n - grid * grid if grid else 0
        names = ["[CLS]", "[DIST]"][:extra] + [f"[TOK{i}]" for i in range(2, extra)]
        names += [f"patch({r},{c})" for r in range(grid) for c in range(grid)] if grid else [f"#{i}" for i in range(n)]
        return Encoding(
            inputs=tensors,
            tokens=tuple(names[:n]),
            positions=torch.arange(n),
            special_mask=tuple(i < extra for i in range(n)),
            output_position=0,
        )

    def prepare(self, inputs: InputLike, *, truncation: bool = True) -> Encoding:
        """Turn any accepted input form into an :class:`Encoding`.

        Accepted: a string; a ``(text, text_pair)`` tuple; a dict of batch-1 tensors; an :class:`Encoding`.
        """
        if isinstance(inputs, Encoding):
            return inputs
        if isinstance(inputs, str):
            return self.encode(inputs, truncation=truncation)
        if isinstance(inputs, tuple) and len(inputs) == 2 and all(isinstance(x, str) for x in inputs):
            return self.encode(inputs[0], inputs[1], truncation=truncation)
        if isinstance(inputs, Mapping):
            return self.from_tensors(inputs)
        raise InvalidInputError(
            f"cannot explain an input of type {type(inputs).__name__}: give a string, a (text, text_pair) tuple, "
            "or a dict of tensors with batch size 1"
        )

    # ------------------------------------------------------------------ public interventions
    def record(self, inputs: InputLike, *, truncation: bool = True) -> Recording:
        """One forward pass of one input that keeps every layer's attention probabilities (no gradients).

        Works with SDPA/flash defaults: attrflow computes the probabilities itself and hands the model back with
        its own attention implementation. Heads gated by :meth:`gate_heads` stay gated.

        Returns:
            A :class:`Recording`: the encoding, the logits ``[C]`` and the attentions ``[L, H, n, n]`` (real tokens).
        """
        encoding = self.prepare(inputs, truncation=truncation)
        session = Session(record=True)
        with torch.no_grad():
            logits = self.run(encoding, session)[0]
        positions = encoding.positions.to(self.device)
        attentions = torch.stack(
            [r[0].index_select(-1, positions).index_select(-2, positions) for r in session.records]
        )
        return Recording(encoding=encoding, logits=logits.detach().cpu(), attentions=attentions.float().cpu())

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

    def tokenize(
        self, text: str, text_pair: str | None = None, *, max_length: int | Literal["model"] | None = "model"
    ) -> TokenizedText:
        """Tokenise like the model's own encoding (special tokens; truncation to ``max_length``), as plain ints.

        For dataset-level work that edits token ids before running them (trigger insertion, deletion for AOPC):
        the result's :meth:`TokenizedText.features` go to :meth:`predict_batch`. ``max_length="model"`` (default)
        truncates to :meth:`max_length`; an int truncates shorter (e.g. to leave room for inserted tokens); None
        never truncates.

        Raises:
            InvalidInputError: no tokenizer, an empty text, or a ``max_length`` below 1.
        """
        if self.tokenizer is None:
            raise InvalidInputError("this model has no tokenizer; give inputs as tensors")
        for label, value in (("text", text), ("text_pair", text_pair)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InvalidInputError(f"an example has an empty {label} ({value!r}); remove it from the dataset")
        limit = self.max_length() if max_length == "model" else max_length
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise InvalidInputError(f"max_length must be a whole number >= 1, 'model' or None; got {max_length!r}")
        encoded = self.tokenizer(text, text_pair, truncation=limit is not None, max_length=limit)
        ids = tuple(int(i) for i in encoded["input_ids"])
        types = encoded.get("token_type_ids")
        return TokenizedText(
            input_ids=ids,
            token_type_ids=None if types is None else tuple(int(t) for t in types),
            segments=_segments(self.tokenizer, encoded, ids, text_pair is not None),
        )

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
        """
        n_padded = (
            int(next(iter(encoding.inputs.values())).shape[1]) if "input_ids" in encoding.inputs else encoding.length
        )
        positions = encoding.positions.tolist()
        edits: dict[int, torch.Tensor] = {}
        for layer, pairs in interactions.items():
            if isinstance(layer, bool) or not isinstance(layer, int) or not -self.num_layers <= layer < self.num_layers:
                raise InvalidInputError(f"layer {layer!r} is out of range for a model with {self.num_layers} layers")
            mask = edits.get(layer % self.num_layers, torch.ones(n_padded, n_padded, device=self.device))
            for i, j in pairs:
                if not (0 <= i < encoding.length and 0 <= j < encoding.length):
                    raise InvalidInputError(f"interaction ({i}, {j}) is outside the {encoding.length} tokens")
                mask[positions[i], positions[j]] = 0.0
            edits[layer % self.num_layers] = mask
        outer = _EDITS.get()
        merged = dict(outer or {})
        for layer, mask in edits.items():
            merged[layer] = merged[layer] * mask if layer in merged else mask
        token = _EDITS.set(merged)
        try:
            yield
        finally:
            _EDITS.reset(token)

    # ------------------------------------------------------------------ conveniences
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
        example with trigger word-pieces inserted or tokens deleted.

        Padding never changes a row's result (checked in tests). Inputs longer than the model's maximum are
        truncated silently here (dataset-scale evaluation); heads gated by :meth:`gate_heads` stay gated.
        """
        if self.tokenizer is None:
            raise InvalidInputError("predict_batch needs a tokenizer; this model has none")
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        limit = self.max_length()
        features = []
        for item in texts:
            if isinstance(item, Mapping):
                ids = list(item["input_ids"])
                if not ids:
                    raise InvalidInputError("a tokenised item has no input_ids")
                feature = {key: list(value) for key, value in item.items()}
                feature.setdefault("attention_mask", [1] * len(ids))
                features.append(feature)
                continue
            first, second = (item, None) if isinstance(item, str) else (item[0], item[1])
            features.append(self.tokenizer(first, second, truncation=limit is not None, max_length=limit))
        # similar lengths together: less padding, same results (rows are independent). Encoder-decoder classifiers
        # (BART, T5) read every row's end-of-sequence tokens and need the same number of them within a batch.
        eos = getattr(self.model.config, "eos_token_id", None)

        def group(i: int) -> int:
            if not self.is_encoder_decoder or not isinstance(eos, int):
                return 0
            return list(features[i]["input_ids"]).count(eos)

        order = sorted(range(len(features)), key=lambda i: (group(i), len(features[i]["input_ids"])))
        chunks: list[list[int]] = []
        for i in order:
            if not chunks or len(chunks[-1]) == batch_size or group(chunks[-1][0]) != group(i):
                chunks.append([])
            chunks[-1].append(i)
        rows: list[torch.Tensor] = []
        with self.engaged(), torch.no_grad():
            for members in chunks:
                chunk = [features[i] for i in members]
                encoded = self.tokenizer.pad(chunk, return_tensors="pt")
                inputs = {k: v.to(self.device) for k, v in encoded.items()}
                session = Session(gate=_GATE.get())
                with active_session(session):
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
        return result

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


def _encoder_of(model: nn.Module, task: Task) -> nn.Module | None:
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


def _site_names(model: nn.Module, modules: Sequence[nn.Module]) -> list[str]:
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


@contextlib.contextmanager
def _embeddings_into(encoder: nn.Module, embeddings: torch.Tensor) -> Iterator[None]:
    """Run ``encoder`` on ``embeddings`` (as ``inputs_embeds``) instead of the token ids it is called with."""

    def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if args and isinstance(args[0], torch.Tensor):
            args = (None, *args[1:])  # input_ids given positionally
        else:
            kwargs["input_ids"] = None
        kwargs["inputs_embeds"] = embeddings
        return args, kwargs

    handle = encoder.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def _first_row_into(module: nn.Module, rows: int) -> Iterator[None]:
    """Give ``module`` only row 0 of every batch-``rows`` tensor argument (its other rows are copies of it).

    Only tensors of two or more dimensions are batches here (ids, masks, embeddings); a one-dimensional tensor
    (e.g. positions) whose length happens to equal ``rows`` is left alone.
    """

    def first_row(value: Any) -> Any:
        batched = isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[0] == rows
        return value[:1] if batched else value

    def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return tuple(first_row(a) for a in args), {k: first_row(v) for k, v in kwargs.items()}

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def _candidate_blocks(model: nn.Module) -> list[nn.Module]:
    """Modules that are elements of a ModuleList: the layer blocks of every transformers architecture."""
    blocks: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, nn.ModuleList):
            blocks.extend(module)
    return blocks


@contextlib.contextmanager
def _pre_hooks(blocks: Sequence[nn.Module], hook: Any, *, with_kwargs: bool = False) -> Iterator[None]:
    """Install ``hook`` as a forward pre-hook on every block; always removed on exit."""
    handles = [block.register_forward_pre_hook(hook, with_kwargs=with_kwargs) for block in blocks]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _counting_hooks(blocks: Sequence[nn.Module], session: Session) -> contextlib.AbstractContextManager[None]:
    """Count block calls into ``session.block_calls`` (maps each attention site to the block that runs it)."""

    def count(_module: nn.Module, _args: Any) -> None:
        session.block_calls += 1

    return _pre_hooks(blocks, count)


def _branching_hooks(
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
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' weight-loading progress bar (attrflow shows its own progress where it matters)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def load_model(
    source: str | Path | nn.Module,
    *,
    tokenizer: Any = None,
    device: str | torch.device | None = None,
    task: Task | None = None,
) -> Model:
    """Wrap a model for attrflow: a built-in name, a local checkpoint directory, or a loaded transformers model.

    Sequence classifiers, causal LMs and image classifiers are supported; for encoder-decoder classifiers (BART, T5,
    ...) the layers are the encoder's self-attention sites (:attr:`Model.site_names`).

    Args:
        source: ``"sentiment"`` / ``"agreement"`` (models shipped with attrflow), a local directory with
            ``config.json`` and weights, or a ``PreTrainedModel`` object. Nothing is downloaded from a hub.
        tokenizer: the tokenizer (or image processor); loaded from the directory when omitted.
        device: where to run (default: where the model is, or CPU for directories).
        task: override the task inferred from the model's head class.

    Returns:
        A :class:`Model`; the transformers model stays unchanged outside attrflow calls.

    Raises:
        InvalidInputError: the path does not exist or is not a checkpoint.
        UnsupportedModelError: the architecture bypasses AttentionInterface, has no explainable head (an
            encoder-decoder needs a sequence-classification head), or fails on a plain input.
    """
    if isinstance(source, nn.Module):
        model = source
        if device is not None:
            model = model.to(device)
        return Model(model, tokenizer, task=task)
    if isinstance(source, str) and not Path(source).exists():
        from attrflow import zoo

        builtins: tuple[str, ...] = tuple(getattr(zoo, "BUILTIN_MODELS", ()))
        if source in builtins:
            model, builtin_tokenizer = zoo.load_builtin(source, device=device)
            return Model(model, tokenizer or builtin_tokenizer, task=task, name=source)
        raise InvalidInputError(
            f"no model directory {source!r} and no built-in model of that name (built-in: "
            f"{', '.join(builtins) or 'none'}); attrflow never downloads from a hub"
        )
    return Model(*_load_directory(Path(source), tokenizer, device, task), task=task, name=str(source))


def _load_directory(
    path: Path, tokenizer: Any, device: str | torch.device | None, task: Task | None
) -> tuple[nn.Module, Any]:
    import transformers

    if not (path / "config.json").is_file():
        raise InvalidInputError(f"{path} is not a transformers checkpoint directory (no config.json)")
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    architecture = (getattr(config, "architectures", None) or [""])[0]
    auto = {
        "sequence-classification": transformers.AutoModelForSequenceClassification,
        "causal-lm": transformers.AutoModelForCausalLM,
        "image-classification": transformers.AutoModelForImageClassification,
    }
    chosen = task
    if chosen is None:
        for suffix, suffix_task in _TASK_SUFFIXES:
            if architecture.endswith(suffix):
                chosen = suffix_task
                break
    if chosen is None:
        raise UnsupportedModelError(
            f"{path}: the checkpoint's architecture {architecture or '(none)'} has no explainable head; pass task= "
            "('sequence-classification', 'causal-lm' or 'image-classification') to add one"
        )
    with _quiet_transformers():
        model = auto[chosen].from_pretrained(path, local_files_only=True)
    if device is not None:
        model = model.to(device)
    if tokenizer is None:
        try:
            if chosen == "image-classification":
                tokenizer = transformers.AutoImageProcessor.from_pretrained(path, local_files_only=True)
            else:
                tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            logger.warning("no tokenizer found in %s (%s); pass inputs as tensors or give tokenizer=", path, exc)
            tokenizer = None
    return model, tokenizer
