"""Small HTML helpers shared by the report and the SVG renderer: escaping and colour scales.

Every string that comes from an input or a tokenizer goes through :func:`esc` (element text and attribute
values) or :func:`script_json` (data for the inline script); nothing from the input is ever written raw.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

__all__ = ["diverging", "esc", "fmt", "script_json"]


def esc(text: object) -> str:
    """Escape ``text`` for HTML element content and quoted attribute values (``& < > " '``)."""
    return html.escape(str(text), quote=True)


def script_json(data: Any) -> str:
    """JSON safe to place inside ``<script type="application/json">``: no ``<``, ``>`` or ``&`` survives raw,
    so a token such as ``</script>`` cannot end the block."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def fmt(value: float, digits: int = 3) -> str:
    """A short human-readable number with ``digits`` significant digits (``nan`` when not finite)."""
    if not math.isfinite(value):
        return "nan"
    return f"{value:.{digits}g}"


# positive: warm red, negative: blue (the same in every view); alpha carries the magnitude so text stays readable
_POS = (214, 39, 40)
_NEG = (31, 119, 180)


def diverging(value: float, scale: float) -> str:
    """CSS colour for a signed score: red for positive, blue for negative, opacity ∝ ``|value| / scale``."""
    if not math.isfinite(value) or scale <= 0 or not math.isfinite(scale):
        return "rgba(0,0,0,0)"
    alpha = min(abs(value) / scale, 1.0) * 0.85
    r, g, b = _POS if value >= 0 else _NEG
    return f"rgba({r},{g},{b},{alpha:.3f})"
