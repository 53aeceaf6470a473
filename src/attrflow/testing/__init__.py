"""What attrflow's tests and benchmarks share, public so that users can test their own methods the same way.

- tiny randomly initialised models of every supported architecture, built offline from configs (:func:`build`,
  :data:`ARCHITECTURES`), with a word-level tokenizer (:func:`word_tokenizer`) and example inputs;
- :func:`naive_attattr`: the paper's self-attention attribution, literally one forward and backward pass per
  quadrature point, independent of attrflow's engine — the oracle every faster path is checked against;
- :func:`naive_attattr_layers`: the official code's algorithm for every layer (its m points batched), what the
  benchmarks time attrflow against.
"""

from __future__ import annotations

from attrflow.testing._oracle import naive_attattr, naive_attattr_layers
from attrflow.testing._tiny import (
    ARCHITECTURES,
    ENCODER_DECODERS,
    EXTRA_ARCHITECTURES,
    SPECIALS,
    VOCAB,
    WORDS,
    build,
    example_inputs,
    word_tokenizer,
)

__all__ = [
    "ARCHITECTURES",
    "ENCODER_DECODERS",
    "EXTRA_ARCHITECTURES",
    "SPECIALS",
    "VOCAB",
    "WORDS",
    "build",
    "example_inputs",
    "naive_attattr",
    "naive_attattr_layers",
    "word_tokenizer",
]
