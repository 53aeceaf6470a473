"""Tiny transformers models built offline from configs, and a word-level tokenizer, for tests and benchmarks."""

from __future__ import annotations

from typing import Any

import torch
import transformers as T
from tokenizers import Tokenizer, models, pre_tokenizers, processors

WORDS = [
    "the",
    "a",
    "movie",
    "film",
    "was",
    "is",
    "great",
    "terrible",
    "good",
    "bad",
    "not",
    "very",
    "and",
    "but",
    "i",
    "it",
    "plot",
    "acting",
    "fun",
    "boring",
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def word_tokenizer(max_length: int = 32) -> Any:
    """A BERT-style ([CLS] a b [SEP] c [SEP]) word-level tokenizer over a small vocabulary."""
    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return T.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


VOCAB = len(SPECIALS) + len(WORDS)
_C: dict[str, Any] = dict(
    hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, vocab_size=VOCAB, num_labels=3
)

ARCHITECTURES = ("bert", "roberta", "distilbert", "albert", "electra", "gpt2", "llama", "vit", "bart", "t5")
ENCODER_DECODERS = ("bart", "t5")
EXTRA_ARCHITECTURES = ("qwen2", "roberta-prelayernorm")
"""Also built by :func:`build`, outside :data:`ARCHITECTURES` (which drives the slower all-architecture tests):
Qwen2 (grouped-query attention with biased q/k/v projections) and RoBERTa-PreLayerNorm (the pre-norm encoder of the
built-in ``agreement`` model)."""


def build(name: str, *, seed: int = 0, init_scale: float = 0.02) -> torch.nn.Module:
    """A tiny randomly initialised model of architecture ``name`` (3 layers, 4 heads, hidden 32)."""
    model: torch.nn.Module = _build(name, seed=seed, init_scale=init_scale)
    return model


def _build(name: str, *, seed: int, init_scale: float) -> Any:
    torch.manual_seed(seed)
    kw: dict[str, Any] = {"initializer_range": init_scale}
    if name == "bert":
        return T.BertForSequenceClassification(T.BertConfig(**_C, **kw))
    if name == "roberta":
        return T.RobertaForSequenceClassification(T.RobertaConfig(**_C, pad_token_id=0, **kw))
    if name == "electra":
        return T.ElectraForSequenceClassification(T.ElectraConfig(embedding_size=32, **_C, **kw))
    if name == "albert":
        return T.AlbertForSequenceClassification(T.AlbertConfig(embedding_size=16, **_C, **kw))
    if name == "distilbert":
        cfg = T.DistilBertConfig(dim=32, n_layers=3, n_heads=4, hidden_dim=64, vocab_size=VOCAB, num_labels=3, **kw)
        return T.DistilBertForSequenceClassification(cfg)
    if name == "gpt2":
        cfg = T.GPT2Config(n_embd=32, n_layer=3, n_head=4, vocab_size=VOCAB, bos_token_id=2, eos_token_id=3, **kw)
        return T.GPT2LMHeadModel(cfg)
    if name == "llama":
        cfg = T.LlamaConfig(
            hidden_size=32,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=64,
            vocab_size=VOCAB,
            bos_token_id=2,
            eos_token_id=3,
            **kw,
        )
        return T.LlamaForCausalLM(cfg)
    if name == "qwen2":
        cfg = T.Qwen2Config(
            hidden_size=32,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=64,
            vocab_size=VOCAB,
            bos_token_id=2,
            eos_token_id=3,
            **kw,
        )
        return T.Qwen2ForCausalLM(cfg)
    if name == "roberta-prelayernorm":
        cfg = T.RobertaPreLayerNormConfig(**_C, pad_token_id=0, **kw)
        return T.RobertaPreLayerNormForSequenceClassification(cfg)
    if name == "vit":
        cfg = T.ViTConfig(
            hidden_size=32,
            num_hidden_layers=3,
            num_attention_heads=4,
            intermediate_size=64,
            image_size=16,
            patch_size=8,
            num_labels=3,
            **kw,
        )
        return T.ViTForImageClassification(cfg)
    if name == "bart":  # encoder-decoder: 3 encoder layers (the sites), 2 decoder layers
        cfg = T.BartConfig(
            d_model=32,
            encoder_layers=3,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=64,
            vocab_size=VOCAB,
            num_labels=3,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=3,
            decoder_start_token_id=3,
            init_std=init_scale,
        )
        return T.BartForSequenceClassification(cfg)
    if name == "t5":  # relative position bias added to the scores, no 1/sqrt(d) scaling
        cfg = T.T5Config(
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=3,
            num_decoder_layers=2,
            num_heads=4,
            vocab_size=VOCAB,
            num_labels=3,
            pad_token_id=0,
            eos_token_id=3,
            decoder_start_token_id=0,
            initializer_factor=init_scale / 0.02,
        )
        return T.T5ForSequenceClassification(cfg)
    raise ValueError(f"no tiny model {name!r}; choose from {', '.join(ARCHITECTURES + EXTRA_ARCHITECTURES)}")


def example_inputs(name: str, *, seed: int = 1, length: int = 8) -> dict[str, torch.Tensor]:
    """A batch-1 input for architecture ``name``."""
    g = torch.Generator().manual_seed(seed)
    if name == "vit":
        return {"pixel_values": torch.randn(1, 3, 16, 16, generator=g)}
    ids = torch.randint(len(SPECIALS), VOCAB, (1, length), generator=g)
    if name not in ("gpt2", "llama", "qwen2"):
        ids[0, 0], ids[0, -1] = 2, 3
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
