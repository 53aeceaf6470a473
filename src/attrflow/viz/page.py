"""The one page skeleton every attrflow HTML page is built on: the per-input report, the heads, faithfulness and
trigger pages, the leaderboard and the demo index.

A page is one self-contained file: inline CSS (``static/page.css``), inline data and inline scripts that ship in
the package, and a Content-Security-Policy that forbids every fetch (no CDN, no fonts, no network) and every
script but the page's own, pinned by hash. Renderers in :mod:`attrflow.viz` build the sections from data only;
every string from an input goes through :func:`esc` or :func:`script_json`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from attrflow.storage import atomic_write_text
from attrflow.viz._html import esc, fmt, script_json

__all__ = ["Page", "esc", "fmt", "iframe", "render_page", "static_text", "write_page"]

_FOOTER = (
    "self-attention attribution (Hao et al., AAAI 2021), attention rollout and flow (Abnar &amp; Zuidema, ACL 2020) "
    "and the context-mixing methods after them"
)


def static_text(name: str) -> str:
    """A file shipped in ``attrflow/viz/static`` (CSS, JavaScript), as text."""
    return resources.files("attrflow.viz").joinpath("static", name).read_text(encoding="utf-8")


def _hash(script: str) -> str:
    return base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


class Page:
    """A page being assembled: a title, an optional subtitle and back link, sections of HTML, data and scripts.

    Args:
        title: the heading and ``<title>`` (escaped here).
        subtitle: a line of HTML under the heading (the caller escapes what it embeds).
        back: ``(href, text)`` of a link back to an index page (e.g. the demo's), or None.
    """

    def __init__(self, title: str, *, subtitle: str = "", back: tuple[str, str] | None = None) -> None:
        self.title = title
        self.subtitle = subtitle
        self.back = back
        self.sections: list[str] = []
        self.data: dict[str, Any] = {}
        self.scripts: list[str] = []

    def add(self, section: str) -> Page:
        """Append a section (HTML built from data by a renderer)."""
        self.sections.append(section)
        return self

    def add_script(self, name: str) -> Page:
        """Inline the packaged script ``static/NAME`` (once), allowed by its hash in the CSP."""
        text = static_text(name)
        if text not in self.scripts:
            self.scripts.append(text)
        return self

    def render(self) -> str:
        """The complete HTML document."""
        from attrflow import __version__

        hashes = " ".join(f"'sha256-{_hash(script)}'" for script in self.scripts)
        script_src = f"script-src {hashes}" if hashes else "script-src 'none'"
        csp = f"default-src 'none'; {script_src}; style-src 'unsafe-inline'; img-src data:"
        back = f'<nav class="back"><a href="{esc(self.back[0])}">← {esc(self.back[1])}</a></nav>' if self.back else ""
        subtitle = f"<p class='subtitle'>{self.subtitle}</p>" if self.subtitle else ""
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(self.title)}</title><style>{static_text('page.css')}</style></head>",
            "<body>",
            f"<header>{back}<h1>{esc(self.title)}</h1>{subtitle}</header>",
            *self.sections,
            f"<footer>Made by attrflow {esc(__version__)}: {_FOOTER}.</footer>",
        ]
        if self.data:
            parts.append(f'<script type="application/json" id="attrflow-data">{script_json(self.data)}</script>')
        parts.extend(f"<script>{script}</script>" for script in self.scripts)
        parts.append("</body></html>\n")
        return "\n".join(parts)


def render_page(
    title: str,
    sections: Sequence[str],
    *,
    subtitle: str = "",
    back: tuple[str, str] | None = None,
    data: Mapping[str, Any] | None = None,
    scripts: Sequence[str] = (),
) -> str:
    """One complete page from its parts (see :class:`Page`); ``scripts`` name files in ``attrflow/viz/static``."""
    page = Page(title, subtitle=subtitle, back=back)
    for section in sections:
        page.add(section)
    page.data.update(data or {})
    for name in scripts:
        page.add_script(name)
    return page.render()


def write_page(html: str, path: str | os.PathLike[str]) -> Path:
    """Write a rendered page (UTF-8, atomically). Returns the path."""
    return atomic_write_text(path, html)


def iframe(html: str, *, height: int = 900, title: str = "attrflow", downloads: bool = False) -> str:
    """Wrap a full page in a sandboxed ``<iframe srcdoc>`` so that it renders, scripts included, in Jupyter.

    ``downloads`` lets the page's own export buttons save files (``allow-downloads``); nothing else is allowed.
    """
    sandbox = "allow-scripts allow-downloads" if downloads else "allow-scripts"
    return (
        f'<iframe srcdoc="{esc(html)}" sandbox="{sandbox}" style="width:100%;height:{int(height)}px;'
        f'border:1px solid #ddd" title="{esc(title)}"></iframe>'
    )
