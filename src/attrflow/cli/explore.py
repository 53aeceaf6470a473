"""``attrflow explore``: serve the interactive explorer on this machine."""

from __future__ import annotations

import argparse
import os
import sys

from attrflow.cli._common import positive_int


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535 (0: any free port), got {value}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``explore`` subcommand."""
    from attrflow.explore import DEFAULT_HOST, DEFAULT_MAX_CHARS, DEFAULT_PORT

    parser = subparsers.add_parser(
        "explore",
        help="interactive explorer in the browser: type a sentence, click a token (local, offline)",
        description="Serve the interactive explorer on this machine: token scores of every registered method, the "
        "flow graph (tokens x layers), attention and attribution heatmaps, head scores, the attribution tree and "
        "what-if edits. Everything is served from the package: no CDN, nothing from the network. Needs the "
        "optional extra: pip install 'attrflow[explore]'.",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="NAME_OR_PATH",
        help="a built-in model or a local checkpoint folder; repeat for several (default: every built-in model)",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"interface to bind (default: {DEFAULT_HOST}, this machine only)"
    )
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0 picks a free one)"
    )
    parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    parser.add_argument(
        "--max-chars",
        type=positive_int,
        default=DEFAULT_MAX_CHARS,
        help=f"longest input text accepted, in characters (default: {DEFAULT_MAX_CHARS})",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another Host header name to accept (requests naming any other host are refused)",
    )
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``attrflow explore``."""
    from attrflow.explore import serve

    def ready(url: str) -> None:
        print(f"attrflow explore: serving on {url}  (Ctrl-C to stop)", flush=True)

    stopped = serve(
        args.model,
        host=args.host,
        port=args.port,
        open_browser=args.open,
        max_chars=args.max_chars,
        allow_hosts=args.allow_host,
        device=args.device,
        ready=ready,
        say=lambda line: print(line, flush=True),
    )
    print(f"attrflow explore: stopped{f' ({stopped.signal})' if stopped.signal else ''}", flush=True)
    if stopped.busy:  # a torch operation still runs in a daemon thread: interpreter shutdown would abort under it
        sys.stderr.flush()
        os._exit(0)
    return 0
