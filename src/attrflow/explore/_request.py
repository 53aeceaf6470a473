"""What a client may ask the explorer for, checked before any work starts.

Every problem with a request is a :class:`RequestError` carrying its HTTP status and a message that names the
problem (an unknown model or method, an empty text, a wrong type, an unknown field); nothing from the request is
ever evaluated.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from attrflow.errors import InvalidInputError
from attrflow.explore._limits import DEFAULT_MAX_CHARS
from attrflow.methods.registry import get_method, method_names
from attrflow.viz.explore import ENCODINGS, MatrixEncoding

__all__ = ["ExplainRequest", "RequestError", "parse_explain_request"]


_FIELDS = (
    "text",
    "text_pair",
    "model",
    "methods",
    "target",
    "blank",
    "truncation",
    "options",
    "heads",
    "encoding",
)


class RequestError(Exception):
    """A request the explorer refuses, with the HTTP status to answer and a message naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ExplainRequest:
    """One checked ``POST /api/explain`` body.

    Attributes:
        model: the name of a loaded model.
        text: the input text (non-empty).
        text_pair: the optional second text.
        methods: registered method names (canonical), or None for ``explain``'s defaults.
        target: the output to explain: None (the prediction), a class index or vocabulary id, or a string (a class
            label, or one next token for causal LMs).
        blank: token positions to blank out (replaced by the tokenizer's UNK token) before explaining.
        truncation: cut a text over the model's maximum length instead of refusing it.
        options: per-method options, passed to ``explain(options=...)``.
        heads: send per-head attention and attribution (``"auto"``: while they are small).
        encoding: how matrices travel (``attrflow.viz.explore.MatrixEncoding``).
    """

    model: str
    text: str
    text_pair: str | None = None
    methods: tuple[str, ...] | None = None
    target: int | str | None = None
    blank: tuple[int, ...] = ()
    truncation: bool = False
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    heads: bool | Literal["auto"] = "auto"
    encoding: MatrixEncoding = "exact"

    def key(self) -> str:
        """A digest of everything that changes the computation (not how it is sent): equal requests, equal key."""
        what = {
            "model": self.model,
            "text": self.text,
            "text_pair": self.text_pair,
            "methods": self.methods,
            "target": self.target,
            "blank": self.blank,
            "truncation": self.truncation,
            "options": self.options,
        }
        text = json.dumps(what, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _expect(name: str, value: Any, kinds: type | tuple[type, ...], words: str) -> None:
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise RequestError(400, f"{name} must be {words}, got a boolean")
    if not isinstance(value, kinds):
        raise RequestError(400, f"{name} must be {words}, got {_json_type(value)}")


def _json_type(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _methods(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [part for part in value.split(",")]
    _expect("methods", value, list, "a list of method names")
    names: list[str] = []
    for item in value:
        _expect("each entry of methods", item, str, "a method name (a string)")
        if not item.strip():
            continue
        try:
            name = get_method(item).name
        except InvalidInputError as exc:
            raise RequestError(422, str(exc)) from None
        if name not in names:
            names.append(name)
    if not names:
        raise RequestError(422, f"methods is empty; choose from {', '.join(method_names())}")
    return tuple(names)


def _options(value: Any) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    _expect("options", value, dict, 'an object of per-method options, e.g. {"rollout": {"head_fusion": "max"}}')
    out: dict[str, dict[str, Any]] = {}
    for name, options in value.items():
        try:
            canonical = get_method(name).name
        except InvalidInputError as exc:
            raise RequestError(422, f"options: {exc}") from None
        _expect(f"options[{name!r}]", options, dict, "an object of option values")
        for key, item in options.items():
            if not isinstance(item, (str, int, float, bool, list)) and item is not None:
                raise RequestError(400, f"options[{name!r}][{key!r}] must be a plain value, got {_json_type(item)}")
        out[canonical] = dict(options)
    return out


def _target(value: Any) -> int | str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RequestError(400, f"target must be null, a whole number or a string, got {_json_type(value)}")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return value


def _blank(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    _expect("blank", value, list, "a list of token positions")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int):
            raise RequestError(400, f"each entry of blank must be a token position (a whole number), got {item!r}")
    return tuple(sorted(set(value)))


def parse_explain_request(body: Any, *, models: Sequence[str], max_chars: int = DEFAULT_MAX_CHARS) -> ExplainRequest:
    """Check a decoded JSON body against the loaded models and the method registry.

    Raises:
        RequestError: 400 for wrong types or unknown fields, 413 for a text over ``max_chars`` characters, 422 for
            an unknown model or method or an empty text.
    """
    if not isinstance(body, dict):
        raise RequestError(400, f"the request body must be a JSON object, got {_json_type(body)}")
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise RequestError(400, f"unknown field {', '.join(map(repr, unknown))}; the fields are {', '.join(_FIELDS)}")
    if "text" not in body:
        raise RequestError(400, 'text is missing: send the input as {"text": "..."}')
    text, pair = body["text"], body.get("text_pair")
    _expect("text", text, str, "a string")
    if pair is not None:
        _expect("text_pair", pair, str, "a string or null")
    if not text.strip():
        raise RequestError(422, "text is empty; type a sentence")
    if pair is not None and not pair.strip():
        pair = None
    size = len(text) + len(pair or "")
    if size > max_chars:
        raise RequestError(413, f"the input has {size} characters; this explorer takes at most {max_chars}")
    model = body.get("model", models[0] if models else None)
    _expect("model", model, str, "a model name")
    assert isinstance(model, str)
    if model not in models:
        raise RequestError(422, f"unknown model {model!r}; this explorer serves {', '.join(models)}")
    truncation = body.get("truncation", False)
    _expect("truncation", truncation, bool, "true or false")
    heads = body.get("heads", "auto")
    if heads != "auto" and not isinstance(heads, bool):
        raise RequestError(400, f'heads must be true, false or "auto", got {_json_type(heads)}')
    encoding = body.get("encoding", "exact")
    if encoding not in ENCODINGS:
        raise RequestError(422, f"encoding must be one of {', '.join(ENCODINGS)}; got {encoding!r}")
    return ExplainRequest(
        model=model,
        text=text,
        text_pair=pair,
        methods=_methods(body.get("methods")),
        target=_target(body.get("target")),
        blank=_blank(body.get("blank")),
        truncation=truncation,
        options=_options(body.get("options")),
        heads=heads,
        encoding=encoding,
    )
