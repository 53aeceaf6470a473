"""Deprecated location of :class:`~attrflow.analysis.faithfulness.report.FaithfulnessReport` (kept one release)."""

from __future__ import annotations

import warnings

from attrflow.analysis.faithfulness.report import FaithfulnessReport

__all__ = ["FaithfulnessReport"]

warnings.warn(
    "attrflow.analysis.faithfulness_report moved to attrflow.analysis.faithfulness.report "
    "(or use attrflow.FaithfulnessReport)",
    DeprecationWarning,
    stacklevel=2,
)
