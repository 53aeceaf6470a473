"""Attention rollout and attention flow (Abnar & Zuidema, ACL 2020): pure functions on attention tensors.

No model access happens here. ``attrflow.attention_rollout`` and ``attrflow.attention_flow`` are the public
entry points (modules :mod:`attrflow.flow.rollout` and :mod:`attrflow.flow.maxflow`). This package imports
nothing on purpose: flow's worker processes import only :mod:`attrflow.flow._maxflow` (numpy and scipy).
"""
