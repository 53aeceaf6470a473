"""Running the explorer: load the models once, bind, serve with uvicorn until Ctrl-C or SIGTERM."""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import threading
import webbrowser
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from attrflow.dependencies import require
from attrflow.errors import InvalidInputError
from attrflow.explore._limits import DEFAULT_HOST, DEFAULT_MAX_CHARS, DEFAULT_PORT
from attrflow.explore._service import Explorer
from attrflow.models import Model, load_model

__all__ = ["Stopped", "allowed_hosts", "load_models", "serve"]

logger = logging.getLogger(__name__)

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")


@dataclass(frozen=True)
class Stopped:
    """How :func:`serve` ended.

    Attributes:
        signal: the signal that stopped it (``"SIGINT"``, ``"SIGTERM"``), or None.
        busy: a method was still computing in a worker thread (a daemon): exit the process without waiting for it
            (``os._exit``), since interpreter shutdown under a running torch operation aborts.
    """

    signal: str | None
    busy: bool


def load_models(
    models: Sequence[str | Path | Model] | Mapping[str, Model] | None = None,
    *,
    device: str | None = None,
    say: Callable[[str], None] = logger.info,
) -> dict[str, Model]:
    """The models to serve by name: built-in names or checkpoint folders (loaded once), or loaded models.

    None serves every built-in model.
    """
    if isinstance(models, Mapping):
        return dict(models)
    if models is None:
        from attrflow.zoo import BUILTIN_MODELS

        models = list(BUILTIN_MODELS)
    loaded: dict[str, Model] = {}
    for source in models:
        if isinstance(source, Model):
            loaded[source.name] = source
            continue
        name = str(source)
        if name in loaded:
            continue
        say(f"loading {name} ...")
        loaded[name] = load_model(source, device=device)
    return loaded


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, extra: Iterable[str] = ()) -> list[str]:
    """The Host header values the server accepts: the bound host (with the loopback names when it is loopback; with
    this machine's name when it binds every interface) and ``extra``."""
    hosts = [host, *extra]
    if _is_loopback(host):
        hosts.extend(_LOOPBACK_NAMES)
    if host in ("0.0.0.0", "::", ""):
        hosts.extend([*_LOOPBACK_NAMES, socket.gethostname()])
    return [h if ":" not in h or h.startswith("[") else f"[{h}]" for h in hosts]


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise InvalidInputError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    models: Sequence[str | Path | Model] | Mapping[str, Model] | None = None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    open_browser: bool = False,
    max_chars: int = DEFAULT_MAX_CHARS,
    allow_hosts: Iterable[str] = (),
    device: str | None = None,
    ready: Callable[[str], None] | None = None,
    say: Callable[[str], None] = logger.info,
) -> Stopped:
    """Serve the explorer until Ctrl-C or SIGTERM, then stop cleanly (cancelling running work).

    Args:
        models: built-in names, checkpoint folders or loaded :class:`attrflow.Model` objects (a mapping names
            them); None serves the built-in models.
        host: the interface to bind (default loopback only).
        port: the port (0: a free one).
        open_browser: open the page in the default browser once it is served.
        max_chars: the most characters of input text a request may carry.
        allow_hosts: further Host header names to accept (e.g. a name this machine is reached by).
        device: torch device of the models loaded here.
        ready: called with the page's URL once the port is bound (the CLI prints it).
        say: progress lines while loading.

    Returns:
        How it stopped (:class:`Stopped`).
    """
    uvicorn = require("uvicorn")
    require("starlette")
    from attrflow.explore._app import create_app

    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise InvalidInputError(f"max_chars must be a whole number >= 1, got {max_chars!r}")
    explorer = Explorer(load_models(models, device=device, say=say))
    app = create_app(explorer, hosts=allowed_hosts(host, allow_hosts), max_chars=max_chars)
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host.strip("[]") else host
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else shown}:{bound}/"
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=3,
        server_header=False,
        access_log=False,
    )
    server = _Server(config)
    server.on_exit = explorer.close
    if ready is not None:
        ready(url)
    if open_browser:
        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    try:
        server.run(sockets=[sock])
    finally:
        explorer.close()
        sock.close()
    busy = not explorer.join(timeout=2)
    if busy:
        logger.warning("explore: a method was still computing at shutdown; its result is dropped")
    return Stopped(None if server.stopped_by is None else signal.Signals(server.stopped_by).name, busy)


def _server_class() -> Any:
    uvicorn = require("uvicorn")

    class Server(uvicorn.Server):  # type: ignore[name-defined,misc]
        """uvicorn's server, stopping on SIGINT/SIGTERM without re-raising the signal afterwards (the shutdown was
        clean; the command exits 0)."""

        stopped_by: int | None = None
        on_exit: Callable[[], None] | None = None

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.stopped_by is None:
                self.stopped_by = sig
                if self.on_exit is not None:  # answer the waiting requests now (off the signal handler: it locks)
                    threading.Thread(target=self.on_exit, daemon=True).start()
            if bool(getattr(self, "should_exit", False)) and sig == signal.SIGINT:
                self.force_exit = True
            else:
                self.should_exit = True

    return Server


def _Server(config: Any) -> Any:  # noqa: N802 - builds the class on first use (uvicorn is optional)
    return _server_class()(config)
