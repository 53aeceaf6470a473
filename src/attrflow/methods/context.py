"""One input of one model, with the work that several methods share computed once.

Every registered method computes from an :class:`ExplainContext`: the encoding, the output position and target
being explained, and lazily cached shared work — the recorded attention of every layer (one forward pass), the
self-attention attribution, the embedding gradients (and integrated gradients), the blank-out probabilities. When
``explain``, the report, faithfulness or the leaderboard run several methods on one example, each expensive piece
runs once.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import torch

from attrflow.errors import InvalidInputError
from attrflow.methods.targets import Target, TargetLike, prepare_target
from attrflow.models import Encoding, KeyCache, Model, Recording, load_model
from attrflow.validation import resolve_index, resolve_layers

if TYPE_CHECKING:
    from torch import nn

    from attrflow.methods.attribution import KeepLike
    from attrflow.methods.gradients import EmbeddingGradients
    from attrflow.methods.quadrature import Rule
    from attrflow.results import AttentionAttribution, Summary, TokenScores

__all__ = ["MATERIALISE_LIMIT_BYTES", "ExplainContext"]

_T = TypeVar("_T")

MATERIALISE_LIMIT_BYTES = 512 * 2**20
"""Above this size of an input's float32 ``[L, H, n, n]`` attention, attention-derived methods (raw attention,
rollout, flow bounds, the sink share) compute from attention rows recomputed block by block from one pass's
queries and keys (:meth:`ExplainContext.streaming`) instead of recording it. Same numbers; the per-layer matrices
are then not kept. Set it (e.g. in tests) to move the switch."""


class ExplainContext:
    """One input of one model being explained, with shared work cached.

    Args:
        model: an :class:`attrflow.Model` (a transformers model is wrapped).
        inputs: a string, a ``(text, text_pair)`` tuple, a dict of batch-1 tensors, or an ``Encoding``.
        target: the output to explain, F (:mod:`attrflow.methods.targets`): a class index or next-token id
            (default the prediction; F its probability); for causal LMs also a continuation (a string or a list of
            ids, appended to the input: F its summed log-probability) or a pair ``(a, b)`` of single next tokens
            (F = log p(a) − log p(b)).
        position: the output position whose row attention-derived methods read; default the model's explained
            position (``[CLS]`` for BERT-style classifiers, the last token for decoders). Methods that explain the
            model's output need the default.
        truncation: cut over-long text with a warning (False raises).
    """

    def __init__(
        self,
        model: Model | nn.Module,
        inputs: Any,
        *,
        target: TargetLike = None,
        position: int | None = None,
        truncation: bool = True,
    ) -> None:
        self.model: Model = model if isinstance(model, Model) else load_model(model)
        self.encoding: Encoding
        self.encoding, self._objective = prepare_target(self.model, inputs, target, truncation=truncation)
        self._target = target
        self.position: int = (
            self.encoding.output_position
            if position is None
            else resolve_index("position", position, self.encoding.length)
        )
        self._cache: dict[Hashable, Any] = {}

    # ------------------------------------------------------------------ facts
    @property
    def n(self) -> int:
        """Number of real tokens."""
        return self.encoding.length

    @property
    def tokens(self) -> tuple[str, ...]:
        """The real tokens."""
        return self.encoding.tokens

    def shared(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        """``compute()`` once per context and ``key``; later calls return the cached value."""
        if key not in self._cache:
            self._cache[key] = compute()
        value: _T = self._cache[key]
        return value

    def cached(self, key: Hashable) -> Any:
        """A value computed through :meth:`shared`, or None."""
        return self._cache.get(key)

    @property
    def recording(self) -> Recording:
        """One clean forward pass with every layer's attention (cached)."""
        return self.shared("recording", lambda: self.model.record(self.encoding))

    @property
    def attentions(self) -> torch.Tensor:
        """float32 ``[L, H, n, n]`` attention probabilities over the real tokens."""
        return self.recording.attentions

    @property
    def attention_bytes(self) -> int:
        """Bytes of the float32 ``[L, H, n, n]`` attention of this input."""
        return self.model.num_layers * self.model.num_heads * self.n * self.n * 4

    @property
    def streaming(self) -> bool:
        """Whether attention-derived methods work from attention rows (:attr:`keys`) rather than the recording:
        the recorded attention would exceed :data:`MATERIALISE_LIMIT_BYTES` and has not been recorded anyway."""
        return self.cached("recording") is None and self.attention_bytes > MATERIALISE_LIMIT_BYTES

    @property
    def keys(self) -> KeyCache:
        """One clean forward pass that kept every layer's queries and keys (cached): attention rows on demand in
        ``O(L·n·d)`` memory (:meth:`attrflow.Model.capture_keys`)."""
        return self.shared("keys", lambda: self.model.capture_keys(self.encoding))

    def _clean_pass(self) -> Recording | KeyCache:
        """The clean pass already made, preferring none that would materialise long attention."""
        recording = self.cached("recording")
        if recording is None and (self.cached("keys") is not None or self.streaming):
            return self.keys
        return self.recording

    @property
    def probabilities(self) -> torch.Tensor:
        """float64 ``[C]`` output probabilities at the explained position."""
        return self._clean_pass().probabilities

    @property
    def predicted(self) -> int:
        """The model's prediction (class index or next-token id)."""
        return self._clean_pass().predicted

    @property
    def objective(self) -> Target:
        """The explained output F, resolved (the prediction filled in when no target was given)."""
        return self.shared("objective", lambda: self._objective.resolved(self._first_prediction()))

    @property
    def target(self) -> int:
        """The explained class index or token id (a span's first token, a contrast's a; see :attr:`objective`)."""
        return self.objective.index

    @property
    def value(self) -> float:
        """F on the input: the target's probability, or the span's / contrast's log-probability (cached)."""
        return self.shared("value", self._value)

    def _value(self) -> float:
        objective = self.objective
        if objective.kind == "output":
            return float(self.probabilities[objective.index])
        with torch.no_grad():
            logits = self.model.run(self.encoding, positions=objective.positions)
        return float(objective.values(logits)[0])

    def _first_prediction(self) -> int:
        """The prediction at the first position F reads (a span: the greedy next token after the prompt)."""
        positions = self._objective.positions
        if positions is None or positions[0] == self.encoding.output_position:
            return self.predicted
        with torch.no_grad():
            logits = self.model.run(self.encoding, positions=positions[:1])
        return int(torch.softmax(logits[0, 0].double(), dim=-1).argmax())

    @property
    def target_given(self) -> bool:
        """Whether the target was chosen by the caller (not the prediction)."""
        return self._target is not None

    def require_output_position(self, method: str) -> None:
        """Refuse a position other than the model's output position for a method that explains the output."""
        if self.position != self.encoding.output_position:
            raise InvalidInputError(
                f"method {method!r} explains the model's output, which is read at position "
                f"{self.encoding.output_position}; position={self.position} applies to attention-derived methods only"
            )

    def layers(self, layers: int | Sequence[int] | None) -> tuple[int, ...]:
        """A layer selection resolved against the model (None: all, bottom to top)."""
        return resolve_layers(layers, self.model.num_layers)

    # ------------------------------------------------------------------ shared work
    def attribution(
        self,
        *,
        layers: int | Sequence[int] | None = None,
        steps: int | Literal["auto"] = "auto",
        rule: Rule = "gauss-lobatto",
        batch_size: int | None = None,
        tolerance: float = 1e-3,
        keep: KeepLike | Literal["auto"] = "full",
    ) -> AttentionAttribution:
        """Self-attention attribution of the target (cached per settings; ``batch_size`` never changes it).

        ``keep="auto"`` keeps the full tensors when their estimated memory fits what is available, else the token
        and head totals (see :func:`attrflow.attribute`)."""
        from attrflow.methods.attribution import attribute, fits_full

        chosen = self.layers(layers)
        if keep == "auto":
            keep = "full" if fits_full(self.model, self.encoding, chosen, steps) else "tokens"
        key = ("attribution", chosen, steps, rule, tolerance, keep)
        self._cache["last_attribution"] = key
        return self.shared(
            key,
            lambda: attribute(
                self.model,
                self.encoding,
                target=self.objective,
                steps=steps,
                rule=rule,
                layers=list(chosen),
                batch_size=batch_size,
                tolerance=tolerance,
                keep=keep,
            ),
        )

    @property
    def last_attribution(self) -> AttentionAttribution | None:
        """The attribution computed most recently through :meth:`attribution` (None if none was)."""
        key = self._cache.get("last_attribution")
        return None if key is None else self._cache.get(key)

    def gradients(
        self,
        *,
        steps: int | Literal["auto"] | None = None,
        rule: Rule = "gauss-lobatto",
        batch_size: int | None = None,
        tolerance: float = 1e-3,
    ) -> EmbeddingGradients:
        """Embedding gradients at the input; with ``steps`` also integrated gradients (cached; a cached run with
        integrated gradients serves later plain-gradient requests)."""
        from attrflow.methods.gradients import embedding_gradients

        planned = self._cache.get("planned_gradients")
        if steps is None and planned is not None:
            return self.gradients(**planned)
        if steps is None:
            for key, value in self._cache.items():
                if isinstance(key, tuple) and key[0] == "gradients":
                    found: EmbeddingGradients = value
                    return found
            key_plain = ("gradients", 0, rule, tolerance)
            return self.shared(
                key_plain, lambda: embedding_gradients(self.model, self.encoding, target=self.objective, steps=0)
            )
        key = ("gradients", steps, rule, tolerance)
        return self.shared(
            key,
            lambda: embedding_gradients(
                self.model,
                self.encoding,
                target=self.objective,
                steps=steps,
                rule=rule,
                batch_size=batch_size,
                tolerance=tolerance,
            ),
        )

    def plan_gradients(
        self,
        *,
        steps: int | Literal["auto"],
        rule: Rule = "gauss-lobatto",
        batch_size: int | None = None,
        tolerance: float = 1e-3,
    ) -> None:
        """Announce that integrated gradients with these settings will run: the plain gradients at the input then
        come from the same pass (one backward fewer, and the same numbers whichever method asks first)."""
        self._cache["planned_gradients"] = {
            "steps": steps,
            "rule": rule,
            "batch_size": batch_size,
            "tolerance": tolerance,
        }

    def blankout_probabilities(self, *, replacement: str = "unk", batch_size: int = 32) -> torch.Tensor:
        """float64 ``[1 + n, C]``: the input, then the input with token i blanked out (cached per replacement)."""
        from attrflow.methods.occlusion import blankout_probabilities

        return self.shared(
            ("blankout", replacement),
            lambda: blankout_probabilities(self.model, self.encoding, replacement, batch_size),  # type: ignore[arg-type]
        )

    def blankout_values(self, *, replacement: str = "unk", batch_size: int = 32) -> torch.Tensor:
        """float64 ``[1 + n]``: F on the input, then F with token i blanked out (cached per replacement)."""
        from attrflow.methods.occlusion import blankout_values

        objective = self.objective
        if objective.kind == "output":
            return self.blankout_probabilities(replacement=replacement, batch_size=batch_size)[:, objective.index]
        return self.shared(
            ("blankout-values", replacement),
            lambda: blankout_values(self.model, self.encoding, objective, replacement, batch_size),  # type: ignore[arg-type]
        )

    # ------------------------------------------------------------------ results
    def result(
        self,
        method: str,
        scores: torch.Tensor,
        description: str,
        *,
        layers: Sequence[int] = (),
        summary: Summary = "last",
        matrices: torch.Tensor | None = None,
        reads_output: bool = True,
        position: int | None = None,
        completeness_gap: float | None = None,
        diagnostics: dict[str, float] | None = None,
        settings: dict[str, Any] | None = None,
        bounds: torch.Tensor | None = None,
    ) -> TokenScores:
        """A :class:`~attrflow.TokenScores` for this input, with the context's facts filled in."""
        from attrflow.results import TokenScores

        objective = self.objective if reads_output else None
        target = None if objective is None else objective.index
        probability = None if objective is None else self.value
        if objective is not None and objective.kind != "output":
            description = f"{description} — {objective.describe(self.model)} (here p(target) reads F)"
        extra = {} if objective is None else {"objective": objective.to_dict(self.model)}
        if not torch.isfinite(scores).all():
            half = next(self.model.model.parameters()).dtype == torch.float16
            hint = (
                "; float16 overflows above 65504 (in gradients too): load the model in bfloat16 or float32"
                if half
                else ""
            )
            raise InvalidInputError(
                f"method {method!r} gave non-finite scores for this input (NaN or infinity); the model's output or "
                f"its attention is not finite here{hint}"
            )
        return TokenScores(
            method=method,
            tokens=self.tokens,
            scores=scores,
            description=description,
            position=self.position if position is None else position,
            layers=tuple(layers),
            summary=summary,
            matrices=matrices,
            target=target,
            target_label=None if objective is None else objective.label(self.model),
            predicted=self.predicted,
            probability=probability,
            special_mask=self.encoding.special_mask,
            completeness_gap=completeness_gap,
            diagnostics=diagnostics or {},
            settings={"model": self.model.name, **extra, **(settings or {})},
            bounds=bounds,
        )

    def where(self) -> str:
        """The explained position in words ("[CLS]" or "position 7 (amazing)")."""
        p = self.position
        if p == 0 and not self.model.causal and self.encoding.output_position == 0:
            return f"[CLS] ({self.tokens[0]})" if self.tokens[0] != "[CLS]" else "[CLS]"
        return f"position {p} ({self.tokens[p]})"
