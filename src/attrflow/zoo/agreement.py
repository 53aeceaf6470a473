"""The built-in ``"agreement"`` model: Abnar & Zuidema (2020)'s verb-number classifier, trained from scratch.

Their model is a 6-layer, 8-head encoder of size 128 made of GPT-2 blocks without the causal mask, with a
[CLS] token whose last-layer state feeds the classifier. transformers' closest bidirectional equivalent is
``RobertaPreLayerNormForSequenceClassification``: pre-LayerNorm blocks as in GPT-2, a final LayerNorm, learned
absolute positions, no causal mask, a classification head on the first token ([CLS]); its attention goes through
transformers' ``AttentionInterface`` (so attrflow can read and replace it). One difference from GPT-2 remains:
the embeddings pass through a LayerNorm before the first block.

The vocabulary is the grammar's lexicon (:func:`attrflow.data.agreement.lexicon`) plus ``[PAD] [UNK] [CLS]
[SEP] [MASK]``, in a word-level ``tokenizer.json``. The shipped folder is a normal transformers checkpoint
(``config.json``, ``model.safetensors`` stored in float16 to stay small, tokenizer files), loadable with
``AutoModelForSequenceClassification.from_pretrained`` and ``AutoTokenizer.from_pretrained``.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from attrflow.errors import ResultFormatError

__all__ = ["AgreementRecipe", "build_tokenizer", "load_agreement", "train_agreement"]

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_LENGTH = 64
REPORT_FILE = "training.json"


@dataclass(frozen=True)
class AgreementRecipe:
    """Architecture and optimisation of the agreement model (defaults: the shipped model's recipe)."""

    epochs: int = 2
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    hidden_size: int = 128
    num_layers: int = 6
    num_heads: int = 8
    intermediate_size: int = 512
    dropout: float = 0.1
    seed: int = 0


def build_tokenizer() -> Any:
    """The word-level tokenizer of the grammar's lexicon: lower-cased, split on whitespace and punctuation,
    ``[CLS] text [SEP]`` (``[CLS] a [SEP] b [SEP]`` for pairs), unknown words → ``[UNK]``.

    Returns:
        A ``transformers.PreTrainedTokenizerFast``.
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    from attrflow.data.agreement import lexicon

    vocab = {token: i for i, token in enumerate((*SPECIAL_TOKENS, *lexicon()))}
    backend = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=MAX_LENGTH,
        # a single segment embedding (type_vocab_size=1): the model takes no token_type_ids
        model_input_names=["input_ids", "attention_mask"],
    )


def _build_model(recipe: AgreementRecipe, tokenizer: Any) -> Any:
    from transformers import RobertaPreLayerNormConfig, RobertaPreLayerNormForSequenceClassification

    from attrflow.data.agreement import LABEL_NAMES

    config = RobertaPreLayerNormConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        intermediate_size=recipe.intermediate_size,
        hidden_act="gelu",
        hidden_dropout_prob=recipe.dropout,
        attention_probs_dropout_prob=recipe.dropout,
        # RoBERTa numbers positions from pad_token_id + 1
        max_position_embeddings=MAX_LENGTH + tokenizer.pad_token_id + 1,
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        num_labels=len(LABEL_NAMES),
        id2label=dict(enumerate(LABEL_NAMES)),
        label2id={name: i for i, name in enumerate(LABEL_NAMES)},
        architectures=["RobertaPreLayerNormForSequenceClassification"],
    )
    return RobertaPreLayerNormForSequenceClassification(config)


def load_agreement(folder: Path, *, device: str | torch.device | None = None) -> tuple[Any, Any]:
    """The agreement classifier (float32, eval mode) and its tokenizer from a checkpoint folder.

    Equivalent to ``AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32)``, built
    directly from the config and the weights so that loading prints no progress bar.
    """
    from safetensors.torch import load_file
    from transformers import (
        AutoTokenizer,
        RobertaPreLayerNormConfig,
        RobertaPreLayerNormForSequenceClassification,
    )

    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise ResultFormatError(
            f"{folder} holds no config.json and model.safetensors; train one with `attrflow zoo train agreement`"
        )
    config = RobertaPreLayerNormConfig.from_pretrained(folder, local_files_only=True)
    model = RobertaPreLayerNormForSequenceClassification(config)
    state = {name: tensor.to(torch.float32) for name, tensor in load_file(folder / "model.safetensors").items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ResultFormatError(
            f"{folder}: weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model.eval()
    if device is not None:
        model.to(device)
    return model, tokenizer


def _save(model: Any, tokenizer: Any, out: Path) -> int:
    """Write a transformers checkpoint with float16 weights; returns the size of the weights file."""
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    weights = out / "model.safetensors"
    # float16 halves the file (the config keeps dtype float32, so loading casts back)
    half = {name: tensor.to(torch.float16).contiguous() for name, tensor in load_file(weights).items()}
    save_file(half, str(weights), metadata={"format": "pt"})
    return weights.stat().st_size


def _attractor_accuracy(predictions: list[int], dataset: Any) -> dict[str, Any]:
    by_count: dict[int, list[bool]] = {}
    for prediction, example in zip(predictions, dataset, strict=True):
        by_count.setdefault(int(example.meta["attractors"]), []).append(prediction == example.label)
    with_attractor = [hit for count, hits in by_count.items() if count > 0 for hit in hits]
    return {
        "attractor_examples": len(with_attractor),
        "attractor_accuracy": round(sum(with_attractor) / max(len(with_attractor), 1), 5),
        "accuracy_by_attractors": {
            str(count): {"examples": len(hits), "accuracy": round(sum(hits) / len(hits), 5)}
            for count, hits in sorted(by_count.items())
        },
    }


def train_agreement(
    out: Path,
    recipe: AgreementRecipe | None = None,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the agreement model from scratch on the grammar's train split and write the checkpoint to ``out``.

    Writes a transformers folder and ``training.json`` (recipe, time, accuracies on validation, test and the test
    sentences with an attractor). Accuracies are measured on the saved checkpoint reloaded from disk.

    Returns:
        The report written to ``training.json``.
    """
    from attrflow.data import load_dataset
    from attrflow.zoo._training import TrainingConfig, evaluate, pick_device, seed_everything, train_classifier

    recipe = recipe or AgreementRecipe()
    seed_everything(recipe.seed)
    tokenizer = build_tokenizer()
    model = _build_model(recipe, tokenizer)
    parameters = sum(p.numel() for p in model.parameters())
    train = load_dataset("agreement", split="train")
    validation = load_dataset("agreement", split="validation")
    test = load_dataset("agreement", split="test")
    config = TrainingConfig(
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        weight_decay=recipe.weight_decay,
        warmup_fraction=recipe.warmup_fraction,
        max_length=MAX_LENGTH,
        seed=recipe.seed,
    )
    history = train_classifier(
        model, tokenizer, train, validation, config, device=pick_device(device), progress=progress
    )
    model.cpu()
    weights_bytes = _save(model, tokenizer, out)

    start = time.perf_counter()
    shipped, shipped_tokenizer = load_agreement(out, device=pick_device(device))
    load_seconds = time.perf_counter() - start
    validation_accuracy, _ = evaluate(shipped, shipped_tokenizer, validation, max_length=MAX_LENGTH)
    test_accuracy, predictions = evaluate(shipped, shipped_tokenizer, test, max_length=MAX_LENGTH)
    report = {
        "model": "agreement",
        "recipe": asdict(recipe),
        "architecture": "RobertaPreLayerNormForSequenceClassification",
        "parameters": parameters,
        "weights_bytes": weights_bytes,
        "train_examples": len(train),
        "train_seconds": round(history["seconds"], 1),
        "device": history["device"],
        "threads": torch.get_num_threads(),
        "epoch_loss": [round(x, 5) for x in history["loss"]],
        "epoch_validation_accuracy": [round(x, 5) for x in history["validation_accuracy"]],
        "validation_accuracy": round(validation_accuracy, 5),
        "test_accuracy": round(test_accuracy, 5),
        "test_examples": len(test),
        **_attractor_accuracy(predictions, test),
        "load_seconds": round(load_seconds, 2),
        "versions": {p: importlib.metadata.version(p) for p in ("torch", "transformers", "tokenizers")},
    }
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report
