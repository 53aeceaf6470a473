"""The passes context mixing and attention manipulation need, as methods of :class:`~attrflow.models.Model`.

A mixin kept apart from ``_model.py``: :meth:`block_tensors` (one pass that keeps each layer's block algebra for the
norm-based measures), :meth:`block_calls` / :meth:`run_block` (value zeroing: one clean pass, then block l alone
with value rows zeroed, batched over the zeroed tokens) and :meth:`suppress_keys` (AtMan: every layer's pre-softmax
scores towards one token scaled, one batch row per token). See :mod:`attrflow.models._blocks` for how blocks and
their algebra are found.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, cast

import torch

from attrflow.errors import InvalidInputError, UnsupportedModelError
from attrflow.models import _blocks
from attrflow.models._blocks import BlockCalls, BlockStructure, BlockTensors
from attrflow.models._encoding import Encoding
from attrflow.models._interface import Session
from attrflow.models._probe import dummy_inputs

if TYPE_CHECKING:
    from attrflow.models._model import Model

__all__ = ["MixingPasses"]


class MixingPasses:
    """Methods of :class:`~attrflow.models.Model` for context mixing (value zeroing, norm-based measures) and AtMan."""

    _block_structure: BlockStructure | None = None

    def _wrapper(self) -> Model:
        return cast("Model", self)

    def block_structure(self) -> BlockStructure:
        """Each layer's block and its algebra, found by structure and one probing pass (cached).

        ``blocks_unsupported`` / ``algebra_unsupported`` say why blocks cannot be run alone or decomposed.
        """
        if self._block_structure is None:
            wrapper = self._wrapper()
            dummy = dummy_inputs(wrapper.model, wrapper.task, encoder_decoder=wrapper.is_encoder_decoder)
            dummy = {key: value.to(wrapper.device) for key, value in dummy.items()}
            self._block_structure = _blocks.probe_blocks(wrapper, dummy)
        return self._block_structure

    def _require(self, what: Literal["blocks", "algebra"]) -> BlockStructure:
        structure = self.block_structure()
        reason = structure.blocks_unsupported if what == "blocks" else structure.algebra_unsupported
        if reason:
            name = type(self._wrapper().model).__name__
            raise UnsupportedModelError(f"{name}: {reason}")
        return structure

    def block_tensors(self, encoding: Encoding) -> BlockTensors:
        """One forward pass of ``encoding`` that keeps, for every layer, what the norm-based context-mixing measures
        read (``.layers``): the block input, attention probabilities, value vectors, the output projection's ``W_O``
        and ``b_O`` (probed) and the normalisations with their actual inputs, over the real positions; and the
        pass's :class:`Recording` (``.recording``), as :meth:`record` gives it.

        Raises:
            UnsupportedModelError: the block's algebra could not be derived (the reason says what is missing).
        """
        structure = self._require("algebra")
        return _blocks.block_tensors(self._wrapper(), encoding, structure)

    def block_calls(self, encoding: Encoding) -> BlockCalls:
        """One clean forward pass of ``encoding`` that keeps every layer's block call, for :meth:`run_block` (and the
        pass's :class:`Recording`, as :meth:`record` gives it).

        Raises:
            UnsupportedModelError: a block cannot be run alone.
        """
        structure = self._require("blocks")
        return _blocks.capture_calls(self._wrapper(), encoding, structure.blocks)

    def run_block(self, calls: BlockCalls, layer: int, positions: Sequence[int]) -> torch.Tensor:
        """Block ``layer`` alone on its clean input (from ``calls``), one batch row per entry of ``positions``: row r
        with the value vectors of real token ``positions[r]`` set to 0 in every (key/value) head, inside attrflow's
        attention function (−1 zeroes nothing). The block's own output, no final norm.

        Returns:
            ``[len(positions), n, d]`` at the real positions.
        """
        wrapper = self._wrapper()
        if not 0 <= layer < wrapper.num_layers:
            raise InvalidInputError(f"layer {layer} is out of range for a model with {wrapper.num_layers} layers")
        if any(not -1 <= p < calls.encoding.length for p in positions):
            raise InvalidInputError(f"positions must lie in [-1, {calls.encoding.length})")
        self._require("blocks")
        return _blocks.run_block(wrapper, calls, layer, positions)

    def suppress_keys(self, encoding: Encoding, positions: Sequence[int], *, factor: float) -> torch.Tensor:
        """Logits ``[len(positions), C]`` at the explained position, row r with every layer's pre-softmax attention
        scores towards real token ``positions[r]`` multiplied by ``factor`` in every head (−1: unchanged), as AtMan
        (Deiseroth et al., NeurIPS 2023) suppresses a token. No gradients."""
        wrapper = self._wrapper()
        if any(not -1 <= p < encoding.length for p in positions):
            raise InvalidInputError(f"positions must lie in [-1, {encoding.length})")
        real = encoding.positions
        padded = torch.tensor([int(real[p]) if p >= 0 else -1 for p in positions], dtype=torch.long)
        session = Session(suppress=(padded.to(wrapper.device), float(factor)))
        with wrapper.engaged(), torch.no_grad():
            return wrapper._forward(
                encoding.inputs, session, batch=len(positions), position=wrapper._position(encoding)
            )
