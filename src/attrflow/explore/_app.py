"""The explorer's web layer: a Starlette app serving the page, its static files and the JSON API.

Every response carries a Content-Security-Policy that allows only this server's own scripts, styles and API;
requests whose Host header is not the bound host are refused (DNS rebinding), as are cross-origin writes and bodies
over the size limit. Errors are JSON ``{"error": ...}`` with a 4xx status naming the problem; an unexpected failure
is a 500 whose body says only that (the details go to the server's log), never a stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from attrflow.errors import AttrflowError
from attrflow.explore._limits import DEFAULT_MAX_CHARS
from attrflow.explore._request import RequestError, parse_explain_request
from attrflow.explore._service import Computed, Explorer, Job, JobCancelledError
from attrflow.viz.explore import app_page, explanation_data, head_block
from attrflow.viz.page import static_text

__all__ = ["CSP", "create_app"]

logger = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_STATIC = {
    "explore.js": "text/javascript; charset=utf-8",
    "explore.css": "text/css; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
}
_SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_PROGRESS_EVERY = 0.1  # seconds between progress lines of a streamed request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _hostname(value: str) -> str:
    """The host part of a Host header or an origin's authority (no port, IPv6 brackets kept), lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class _Guard:
    """ASGI middleware: Host and Origin checks, the body-size limit and the security headers on every response."""

    def __init__(self, app: ASGIApp, *, hosts: Iterable[str], max_body: int) -> None:
        self.app = app
        self.hosts = {_hostname(h) for h in hosts}
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        host = _hostname(headers.get("host", ""))
        if host not in self.hosts:
            allowed = ", ".join(sorted(self.hosts))
            await _refuse(scope, receive, secured, 400, f"host {host or '(none)'!r} is not served here ({allowed})")
            return
        origin = headers.get("origin")
        if scope["method"] not in ("GET", "HEAD") and origin is not None:
            authority = re.sub(r"^[a-z][a-z0-9+.-]*://", "", origin.lower()).split("/")[0]
            if _hostname(authority) not in self.hosts:
                await _refuse(scope, receive, secured, 403, f"requests from origin {origin!r} are refused")
                return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _refuse(scope, receive, secured, 413, f"the request body is over {self.max_body} bytes")
            return
        await self.app(scope, _limited(receive, self.max_body), secured)


def _limited(receive: Receive, limit: int) -> Receive:
    """``receive`` that stops a body growing past ``limit`` bytes (chunked bodies have no Content-Length)."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise RequestError(413, f"the request body is over {limit} bytes")
        return message

    return wrapped


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
    await JSONResponse({"error": message}, status_code=status)(scope, receive, send)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"cache-control": "no-store"})


def _json(data: Any) -> Response:
    body = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    return Response(body, media_type="application/json", headers={"cache-control": "no-store"})


async def _body(request: Request) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise RequestError(415, "send the request body as JSON with Content-Type: application/json")
    raw = await request.body()
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"the request body is not valid JSON ({exc})") from None


def _payload(computed: Computed, heads: Any, encoding: str) -> bytes:
    """The serialised response of a finished computation (memoised per ``(heads, encoding)``)."""
    cached = computed.payloads.get((heads, encoding))
    if cached is not None:
        return cached
    request = computed.request
    data = explanation_data(computed.explanation, encoding=encoding, heads=heads)  # type: ignore[arg-type]
    data.update(
        {
            "id": request.key(),
            "model": request.model,
            "text": request.text,
            "text_pair": request.text_pair,
            "blank": list(request.blank),
            "requested_target": request.target,
            "truncated": computed.truncated,
            "seconds": round(computed.seconds, 4),
            "outputs": computed.outputs,
        }
    )
    body = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    computed.payloads[(heads, encoding)] = body
    return body


def _failure(error: BaseException) -> tuple[int, str]:
    if isinstance(error, RequestError):
        return error.status, error.message
    if isinstance(error, JobCancelledError):
        return 409, f"the request was cancelled ({error})"
    if isinstance(error, AttrflowError):
        return 422, str(error)
    logger.error("explore: computation failed", exc_info=error)
    return 500, f"internal error ({type(error).__name__}); see the server's log"


class _Endpoints:
    """The routes' handlers, over one explorer."""

    def __init__(self, explorer: Explorer, max_chars: int) -> None:
        self.explorer = explorer
        self.names = list(explorer.models)
        self.max_chars = max_chars

    async def page(self, request: Request) -> Response:
        return HTMLResponse(app_page(), headers={"cache-control": "no-store"})

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return _error(404, f"no static file {name!r}")
        return Response(static_text(name), media_type=_STATIC[name], headers={"cache-control": "no-cache"})

    async def models(self, request: Request) -> Response:
        return _json(self.explorer.models_info())

    async def methods(self, request: Request) -> Response:
        return _json(self.explorer.methods_info())

    async def explain(self, request: Request) -> Response:
        checked = parse_explain_request(await _body(request), models=self.names, max_chars=self.max_chars)
        job = self.explorer.submit(checked)
        if "application/x-ndjson" in request.headers.get("accept", ""):
            return StreamingResponse(
                _stream(job, checked.heads, checked.encoding, self.explorer), media_type="application/x-ndjson"
            )
        try:
            computed = await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            self.explorer.cancel(job.id)  # the client went away
            raise
        except Exception as exc:
            return _error(*_failure(exc))
        body = await asyncio.to_thread(_payload, computed, checked.heads, checked.encoding)
        self.explorer.trim()
        return Response(body, media_type="application/json", headers={"cache-control": "no-store"})

    async def job(self, request: Request) -> Response:
        job = self.explorer.job(request.path_params["job"])
        if job is None:
            return _error(404, "no such job (finished jobs are forgotten after a while)")
        if request.method == "DELETE":
            self.explorer.cancel(job.id)
        return _json(job.status())

    async def heads(self, request: Request) -> Response:
        computed = self.explorer.computed(request.path_params["result"])
        if computed is None:
            return _error(404, "this result is no longer cached; explain the input again")
        query = request.query_params
        try:
            layer = int(query["layer"]) if "layer" in query else None
            head = int(query["head"]) if "head" in query else None
        except ValueError:
            return _error(400, "layer and head must be whole numbers")
        encoding = query.get("encoding", "float16")
        if encoding not in ("exact", "float16", "lists"):
            return _error(422, "encoding must be exact, float16 or lists")
        kind = query.get("kind", "attention")
        block = head_block(computed.explanation.result, kind, layer=layer, head=head, encoding=encoding)  # type: ignore[arg-type]
        return _json(block)

    async def report(self, request: Request) -> Response:
        computed = self.explorer.computed(request.path_params["result"])
        if computed is None:
            return _error(404, "this result is no longer cached; explain the input again")
        html = await asyncio.to_thread(computed.explanation.to_html, title=f"attrflow — {computed.request.model}")
        disposition = f'attachment; filename="attrflow-{computed.request.key()[:8]}.html"'
        return HTMLResponse(html, headers={"content-disposition": disposition, "cache-control": "no-store"})


async def _request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return _error(exc.status, exc.message)


async def _attrflow_error(request: Request, exc: Exception) -> Response:
    return _error(422, str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, str(exc.detail))


async def _server_error(request: Request, exc: Exception) -> Response:
    logger.error("explore: %s %s failed", request.method, request.url.path, exc_info=exc)
    return _error(500, f"internal error ({type(exc).__name__}); see the server's log")


def create_app(explorer: Explorer, *, hosts: Iterable[str], max_chars: int = DEFAULT_MAX_CHARS) -> ASGIApp:
    """The explorer as an ASGI app.

    Args:
        explorer: the models and their workers.
        hosts: the host names a request's Host header may carry (the bound host; loopback names for a loopback
            bind).
        max_chars: the most characters of input text (text plus pair) a request may carry.
    """
    endpoints = _Endpoints(explorer, max_chars)
    routes = [
        Route("/", endpoints.page),
        Route("/static/{name}", endpoints.static),
        Route("/api/models", endpoints.models),
        Route("/api/methods", endpoints.methods),
        Route("/api/explain", endpoints.explain, methods=["POST"]),
        Route("/api/jobs/{job}", endpoints.job, methods=["GET", "DELETE"]),
        Route("/api/heads/{result}", endpoints.heads),
        Route("/api/report/{result}", endpoints.report),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            RequestError: _request_error,
            AttrflowError: _attrflow_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
        lifespan=_lifespan(explorer),
    )
    return _Guard(app, hosts=hosts, max_body=4 * max_chars + 65_536)


def _lifespan(explorer: Explorer) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            explorer.close()

    return lifespan


async def _stream(job: Job, heads: Any, encoding: str, explorer: Explorer) -> AsyncIterator[bytes]:
    """NDJSON lines: the job, progress while it runs, then the result (or the error). A client that goes away
    cancels the job."""
    finished = False
    try:
        yield _line({"event": "job", **job.status()})
        wrapped = asyncio.wrap_future(job.future)
        last = None
        while not wrapped.done():
            await asyncio.wait([wrapped], timeout=_PROGRESS_EVERY)
            status = job.status()
            now = (status["stage"], status["done"], status["total"])
            if now != last and not wrapped.done():
                last = now
                yield _line({"event": "progress", **status})
        error = wrapped.exception()
        if error is not None:
            code, message = _failure(error)
            finished = True
            yield _line({"event": "error", "status": code, "error": message})
            return
        body = await asyncio.to_thread(_payload, wrapped.result(), heads, encoding)
        explorer.trim()
        finished = True
        yield b'{"event":"result","data":' + body + b"}\n"
    finally:
        if not finished:
            explorer.cancel(job.id)


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8") + b"\n"
