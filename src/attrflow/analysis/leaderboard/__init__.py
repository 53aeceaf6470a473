"""The leaderboard: which explanation can be trusted, for this model and these data.

Every registered method that can explain the model, and two baselines any method must beat (``random``,
``position``), on one protocol over a dataset:

- :mod:`~attrflow.analysis.leaderboard.kernel`: the per-example work (every metric from one shared context, every
  erasure variant in one batched call);
- :mod:`~attrflow.analysis.leaderboard.task`: its :class:`~attrflow.runner.DatasetTask` (progress, resumable, Ray);
- :mod:`~attrflow.analysis.leaderboard.stats` and :mod:`~attrflow.analysis.leaderboard.summary`: bootstrap
  intervals, paired Wilcoxon tests with Holm's correction, sanity flags, cost;
- :mod:`~attrflow.analysis.leaderboard.result`: :class:`Leaderboard` (JSON, Parquet, Markdown, save/load), rendered
  by :mod:`attrflow.viz.leaderboard`;
- :func:`leaderboard`, the entry point (``attrflow leaderboard`` on the command line).
"""

from __future__ import annotations

from attrflow.analysis.leaderboard.api import leaderboard, leaderboard_methods
from attrflow.analysis.leaderboard.kernel import ground_truth, leaderboard_example
from attrflow.analysis.leaderboard.options import METRICS, REFERENCES, LeaderboardOptions, Metric
from attrflow.analysis.leaderboard.result import Leaderboard
from attrflow.analysis.leaderboard.stats import Comparison, Interval, bootstrap_interval, holm, paired_comparisons
from attrflow.analysis.leaderboard.task import LeaderboardTask

__all__ = [
    "METRICS",
    "REFERENCES",
    "Comparison",
    "Interval",
    "Leaderboard",
    "LeaderboardOptions",
    "LeaderboardTask",
    "Metric",
    "bootstrap_interval",
    "ground_truth",
    "holm",
    "leaderboard",
    "leaderboard_example",
    "leaderboard_methods",
    "paired_comparisons",
]
