"""The method registry: every explanation method is one small object registered under one name.

A method declares what it produces (token scores for an output position, one vector or one per layer; per-layer
token-to-token matrices; per-head interactions), what it needs (gradients, a tokenizer, an architecture it can
read) and has one verb, :meth:`Method.compute`, which turns an :class:`~attrflow.methods.context.ExplainContext`
(one input of one model, with its shared work cached) into a :class:`~attrflow.TokenScores`.

``explain``, the report, ``faithfulness`` / ``attrflow evaluate``, the leaderboard, ``attrflow explain --methods``
and the explorer iterate this registry; none of them names a method. Adding a method is one new module in
:mod:`attrflow.methods.scores` (discovered on first use) — or, from outside attrflow, one
:func:`register_method` call — plus its tests.

    >>> import attrflow
    >>> [m.name for m in attrflow.list_methods()]
    >>> attrflow.token_scores(model, "the food was amazing", method="rollout")
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import numpy as np

from attrflow.errors import InvalidInputError, UnsupportedModelError

if TYPE_CHECKING:
    import pandas as pd

    from attrflow.methods.context import ExplainContext
    from attrflow.models import Model
    from attrflow.results import Summary, TokenScores

__all__ = [
    "Method",
    "MethodInfo",
    "Produces",
    "get_method",
    "list_methods",
    "method_names",
    "register_method",
    "unregister_method",
]

Produces = Literal["token_scores", "layer_scores", "matrices", "interactions"]
"""What a method gives: ``token_scores`` (one vector ``[n]``), ``layer_scores`` (one vector per layer, ``[L, n]``),
``matrices`` (per-layer token-to-token ``[L, n, n]`` on the result), ``interactions`` (per-head ``[L, H, n, n]``,
e.g. AttAttr's attributions, on the method's own result type)."""

_REGISTRY: dict[str, Method] = {}
_DISCOVERED = False
_FIRST = ("attention", "attattr", "occlusion", "gradients")


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


class Method(ABC):
    """One explanation method. Subclass, set the class attributes, implement :meth:`compute`, decorate with
    :func:`register_method`.

    Class attributes:
        name: the registered name (``"rollout"``); ``-`` and ``_`` are interchangeable when looking it up.
        description: one line: what the score of token j means.
        paper: the reference (authors, venue, year).
        produces: what it gives (:data:`Produces`).
        summary: for per-layer methods, how the layers become one vector: ``"last"`` (cumulative methods) or
            ``"sum"`` (per-layer contributions).
        signed: whether scores carry a sign (faithfulness compares magnitudes by default).
        needs_gradients: whether it back-propagates (slower, and needs a differentiable model).
        reads_output: whether it explains the model's output (a target class or token) rather than a row of an
            attention-derived matrix that any position has.
        cost: the work per input, in words (e.g. ``"1 forward"``, ``"n forwards"``), for tables and the explorer.
        in_explain: shown by :func:`attrflow.explain` when no methods are named.
        baseline: a floor that reads nothing of the model (random scores, token position): the leaderboard evaluates
            it like every method; ``evaluate``'s and ``explain``'s defaults leave it out.
        reports: names of the numbers it reports about its own accuracy per input (``"completeness_gap"``, or a
            key of ``TokenScores.diagnostics``), kept per example by dataset-level evaluations.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    paper: ClassVar[str] = ""
    produces: ClassVar[frozenset[Produces]] = frozenset({"token_scores"})
    summary: ClassVar[Summary] = "last"
    signed: ClassVar[bool] = False
    needs_gradients: ClassVar[bool] = False
    reads_output: ClassVar[bool] = True
    cost: ClassVar[str] = ""
    in_explain: ClassVar[bool] = False
    baseline: ClassVar[bool] = False
    reports: ClassVar[tuple[str, ...]] = ()

    def report_values(self, scores: TokenScores) -> dict[str, float]:
        """The numbers named in :attr:`reports` for one result (``completeness_gap`` as its magnitude)."""
        values = {}
        for name in self.reports:
            if name == "completeness_gap":
                gap = scores.completeness_gap
                values[name] = math.nan if gap is None else abs(float(gap))
            else:
                values[name] = float(scores.diagnostics.get(name, math.nan))
        return values

    def caveat(self, values: Mapping[str, Any]) -> str | None:
        """A warning a reader of dataset-level results must see, from the :attr:`reports` numbers of every example
        (arrays by name), or None. Default: a completeness gap above 0.01 somewhere."""
        gaps = values.get("completeness_gap")
        if gaps is None or not len(gaps):
            return None
        worst = float(np.nanmax(np.asarray(gaps, dtype=np.float64))) if not np.isnan(gaps).all() else math.nan
        if worst > 1e-2:
            return f"{self.name}: the largest |completeness gap| is {worst:.2g}; raise steps for a more exact integral"
        return None

    @property
    def per_layer(self) -> bool:
        """Whether :meth:`compute` gives one score vector per layer."""
        return "layer_scores" in self.produces

    def unsupported(self, model: Model) -> str | None:
        """Why this method cannot explain ``model`` (None when it can). Default: every model."""
        return None

    def check(self, model: Model) -> None:
        """Raise :class:`UnsupportedModelError` naming the method when it cannot explain ``model``."""
        reason = self.unsupported(model)
        if reason:
            raise UnsupportedModelError(f"method {self.name!r} cannot explain {type(model.model).__name__}: {reason}")

    def options(self) -> dict[str, Any]:
        """The keyword options :meth:`compute` accepts, with their defaults."""
        signature = inspect.signature(self.compute)
        return {
            name: parameter.default
            for name, parameter in signature.parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        }

    def select_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of ``options`` this method accepts (shared settings such as ``steps`` reach only the
        methods that have them)."""
        accepted = self.options()
        return {key: value for key, value in options.items() if key in accepted}

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Refuse options this method does not accept (listing those it does) and option values it cannot use."""
        unknown = sorted(set(options) - set(self.options()))
        if unknown:
            accepted = ", ".join(sorted(self.options())) or "none"
            raise InvalidInputError(
                f"method {self.name!r} has no option {', '.join(map(repr, unknown))}; its options: {accepted}"
            )
        try:
            self.validate(**options)
        except InvalidInputError as exc:
            raise InvalidInputError(f"method {self.name!r}: {exc}") from None

    def validate(self, **options: Any) -> None:  # noqa: B027 - optional hook
        """Check option values before any work starts (raise :class:`InvalidInputError`). Default: nothing.

        Unknown option names are refused by :meth:`check_options`; this checks the values."""

    def prepare(self, context: ExplainContext, **options: Any) -> None:  # noqa: B027 - optional hook
        """Announce shared work before any method of a run computes (so that work is done once, in the form the
        most demanding method needs). Called with the same options as :meth:`compute`. Default: nothing."""

    @abstractmethod
    def compute(self, context: ExplainContext) -> TokenScores:
        """The token scores of the context's input (keyword-only options after ``context``)."""

    def info(self) -> MethodInfo:
        """The method's registry entry as plain data."""
        return MethodInfo(
            name=self.name,
            kind="per-layer" if self.per_layer else "token",
            description=self.description,
            paper=self.paper,
            produces=tuple(sorted(self.produces)),
            signed=self.signed,
            needs_gradients=self.needs_gradients,
            reads_output=self.reads_output,
            cost=self.cost,
            options=self.options(),
            baseline=self.baseline,
        )

    def __repr__(self) -> str:
        return f"<attrflow method {self.name!r}: {self.description}>"


@dataclass(frozen=True)
class MethodInfo:
    """A registry entry as data (what :func:`list_methods` returns).

    Attributes:
        name: the registered name.
        kind: ``"token"`` (one vector) or ``"per-layer"`` (one vector per layer).
        description: one line.
        paper: the reference.
        produces: what it gives (see :data:`Produces`).
        signed: whether scores carry a sign.
        needs_gradients: whether it back-propagates.
        reads_output: whether it explains the model's output (a target) rather than an attention row.
        cost: the work per input, in words.
        options: its keyword options and their defaults.
        baseline: a floor that reads nothing of the model (random, position).
    """

    name: str
    kind: str
    description: str
    paper: str
    produces: tuple[str, ...]
    signed: bool
    needs_gradients: bool
    reads_output: bool
    cost: str
    options: Mapping[str, Any]
    baseline: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (option defaults as strings where they are not plain values)."""
        plain = (str, int, float, bool, type(None))
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "paper": self.paper,
            "produces": list(self.produces),
            "signed": self.signed,
            "needs_gradients": self.needs_gradients,
            "reads_output": self.reads_output,
            "cost": self.cost,
            "options": {k: v if isinstance(v, plain) else repr(v) for k, v in self.options.items()},
            "baseline": self.baseline,
        }


_M = TypeVar("_M", bound=type[Method])


def register_method(cls: _M) -> _M:
    """Class decorator: register (an instance of) a :class:`Method` subclass under its ``name``.

    Raises:
        InvalidInputError: another method is registered under the same name (unregister it first).
    """
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError("register_method decorates subclasses of attrflow.methods.registry.Method")
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"{cls.__name__} needs a non-empty `name`")
    if not isinstance(getattr(cls, "description", None), str):
        raise TypeError(f"{cls.__name__} needs a one-line `description`")
    key = _key(name)
    existing = _REGISTRY.get(key)
    if existing is not None and type(existing) is not cls:
        raise InvalidInputError(f"a method named {name!r} is already registered ({type(existing).__name__})")
    _REGISTRY[key] = cls()
    return cls


def unregister_method(name: str) -> None:
    """Remove a registered method (tests and plug-ins); unknown names are ignored."""
    _REGISTRY.pop(_key(name), None)


def _discover() -> None:
    """Import every module of :mod:`attrflow.methods.scores` once: each registers its methods."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    package = importlib.import_module("attrflow.methods.scores")
    names = [m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")]
    # the papers' methods first (as tables list them), then everything else alphabetically
    names.sort(key=lambda name: (_FIRST.index(name) if name in _FIRST else len(_FIRST), name))
    for name in names:
        importlib.import_module(f"{package.__name__}.{name}")


def get_method(name: str | Method) -> Method:
    """The registered method called ``name`` (a :class:`Method` passes through).

    Raises:
        InvalidInputError: no such method; the message lists the registered ones.
    """
    if isinstance(name, Method):
        return name
    if not isinstance(name, str):
        raise InvalidInputError(f"a method is named by a string, got {type(name).__name__}")
    _discover()
    method = _REGISTRY.get(_key(name))
    if method is None:
        raise InvalidInputError(f"unknown method {name!r}; registered methods: {', '.join(method_names())}")
    return method


def method_names() -> tuple[str, ...]:
    """The registered names, in registration order (built-in methods first)."""
    _discover()
    return tuple(method.name for method in _REGISTRY.values())


def list_methods(*, model: Model | None = None) -> tuple[MethodInfo, ...]:
    """Every registered method as a :class:`MethodInfo` (name, kind, description, paper, ...).

    Args:
        model: only the methods that can explain this model.
    """
    _discover()
    return tuple(m.info() for m in _REGISTRY.values() if model is None or m.unsupported(model) is None)


def methods_frame(*, model: Model | None = None) -> pd.DataFrame:
    """:func:`list_methods` as a DataFrame (one row per method)."""
    import pandas as pd

    return pd.DataFrame([info.to_dict() for info in list_methods(model=model)]).set_index("name")
