"""Result objects: frozen dataclasses that save, load, tabulate and render themselves.

Tensors are stored with safetensors and everything else as JSON in the same file's metadata, under a schema
version; nothing is ever pickled. One module per result: :mod:`~attrflow.results.token_scores`,
:mod:`~attrflow.results.attribution`, :mod:`~attrflow.results.recorded`.
"""

from __future__ import annotations

from attrflow.results.attribution import AttentionAttribution
from attrflow.results.recorded import RecordedAttention
from attrflow.results.token_scores import Summary, TokenScores
from attrflow.storage import SCHEMA_VERSION, load_result, register_result_type

__all__ = ["SCHEMA_VERSION", "AttentionAttribution", "RecordedAttention", "Summary", "TokenScores", "load_result"]

register_result_type(AttentionAttribution)
register_result_type(RecordedAttention)
register_result_type(TokenScores)
