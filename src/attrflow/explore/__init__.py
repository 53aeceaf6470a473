"""``attrflow explore``: an interactive, offline explorer of how information flows — type a sentence, click a token.

A local web app (Starlette on uvicorn, the optional extra ``pip install 'attrflow[explore]'``) that loads the
models once and serves one page and a JSON API, everything shipped in the package: no CDN, no fonts or scripts
from the network, no build step. The page lists and runs whatever methods are registered
(:func:`attrflow.list_methods`) and never names one itself.

API (what the page uses; scripts can call it too):

- ``GET /api/models``: each model's facts, output labels, and which methods can explain it.
- ``GET /api/methods``: the method registry (``default`` marks what ``explain`` runs when none are named).
- ``POST /api/explain`` with ``{"text", "text_pair", "model", "methods", "target", "blank", "truncation",
  "options", "heads", "encoding"}`` → tokens, prediction, each method's token scores and per-layer matrices (the
  values of ``attrflow.explain(...).to_dict()``), the attention (and attribution) per layer, settings and
  completeness gaps. With ``Accept: application/x-ndjson`` the answer streams progress lines first; closing the
  connection cancels the work.
- ``GET`` / ``DELETE /api/jobs/{id}``: a running request's progress; cancel it.
- ``GET /api/heads/{result}?kind=attention&layer=3``: per-head matrices on demand (long inputs).
- ``GET /api/report/{result}``: the self-contained HTML report of a result.

    >>> from attrflow.explore import serve
    >>> serve(["sentiment"], port=8765, ready=print)          # until Ctrl-C
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from attrflow.explore._limits import DEFAULT_HOST, DEFAULT_MAX_CHARS, DEFAULT_PORT

# public name -> module that defines it (loaded on first use: the CLI's parser imports this package)
_EXPORTS: dict[str, str] = {
    "JobCancelledError": "attrflow.explore._service",
    "Computed": "attrflow.explore._service",
    "Explorer": "attrflow.explore._service",
    "Job": "attrflow.explore._service",
    "ExplainRequest": "attrflow.explore._request",
    "RequestError": "attrflow.explore._request",
    "parse_explain_request": "attrflow.explore._request",
    "allowed_hosts": "attrflow.explore._server",
    "load_models": "attrflow.explore._server",
    "serve": "attrflow.explore._server",
    "Stopped": "attrflow.explore._server",
    "create_app": "attrflow.explore._app",
    "decode_array": "attrflow.viz.explore",
    "explanation_data": "attrflow.viz.explore",
}

__all__ = ["DEFAULT_HOST", "DEFAULT_MAX_CHARS", "DEFAULT_PORT", *sorted(_EXPORTS)]

if TYPE_CHECKING:
    from attrflow.explore._app import create_app as create_app
    from attrflow.explore._request import ExplainRequest as ExplainRequest
    from attrflow.explore._request import RequestError as RequestError
    from attrflow.explore._request import parse_explain_request as parse_explain_request
    from attrflow.explore._server import Stopped as Stopped
    from attrflow.explore._server import allowed_hosts as allowed_hosts
    from attrflow.explore._server import load_models as load_models
    from attrflow.explore._server import serve as serve
    from attrflow.explore._service import Computed as Computed
    from attrflow.explore._service import Explorer as Explorer
    from attrflow.explore._service import Job as Job
    from attrflow.explore._service import JobCancelledError as JobCancelledError
    from attrflow.viz.explore import decode_array as decode_array
    from attrflow.viz.explore import explanation_data as explanation_data


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'attrflow.explore' has no attribute {name!r}")
    if module == "attrflow.explore._app":  # needs the optional extra
        from attrflow.dependencies import require

        require("starlette")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
