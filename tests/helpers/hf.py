"""A tiny randomly initialised Hugging Face model and a dataset that records what it fed.

Nothing is downloaded: the model is built from its config (a 2-layer MLP wrapped as a
``PreTrainedModel``), and the tests set ``HF_HUB_OFFLINE=1`` before importing transformers.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from transformers import PretrainedConfig, PreTrainedModel, TrainingArguments
from transformers.modeling_outputs import SequenceClassifierOutput

FEATURES = 4


def labels_64(seed: int = 0) -> list[int]:
    """64 labels, classes of 40, 16 and 8, in a fixed shuffled order."""
    labels = [c for c, n in enumerate((40, 16, 8)) for _ in range(n)]
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).tolist()
    return [labels[i] for i in order]


def features(index: int, label: int) -> list[float]:
    """Sample ``index``'s inputs: they tell the classes apart, noisily."""
    noise = torch.randn(FEATURES, generator=torch.Generator().manual_seed(index)).tolist()
    return [x + (2.0 if k == label else 0.0) for k, x in enumerate(noise)]


class TinyConfig(PretrainedConfig):
    model_type = "sampleplan-tiny-mlp"

    def __init__(self, hidden: int = 8, num_classes: int = 3, **kwargs: Any) -> None:
        self.hidden = hidden
        self.num_classes = num_classes
        super().__init__(**kwargs)


class TinyClassifier(PreTrainedModel):
    """``features -> Linear -> ReLU -> Linear -> logits``; records each sample's loss."""

    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        self.hidden = torch.nn.Linear(FEATURES, config.hidden)
        self.out = torch.nn.Linear(config.hidden, config.num_classes)
        #: ``(index, loss)`` of every training sample, in the order the model saw them.
        self.seen: list[tuple[int, float]] = []
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        if isinstance(module, torch.nn.Linear):
            module.weight.data.normal_(0.0, 0.5)
            module.bias.data.zero_()

    def forward(
        self,
        features: torch.Tensor,
        labels: torch.Tensor | None = None,
        idx: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        logits = self.out(torch.relu(self.hidden(features)))
        loss = None
        if labels is not None:
            per_sample = F.cross_entropy(logits, labels, reduction="none")
            if idx is not None and self.training:
                self.seen += zip(idx.tolist(), per_sample.tolist(), strict=True)
            loss = per_sample.mean()
        return SequenceClassifierOutput(loss=loss, logits=logits)


def tiny_model(seed: int = 0) -> TinyClassifier:
    torch.manual_seed(seed)
    return TinyClassifier(TinyConfig())


class Recording(Dataset[dict[str, Any]]):
    """Item ``i`` is sample ``i``'s features, label and index; ``fed`` lists every ``i``
    asked for, in order (the Trainer's loader runs in this process: no workers)."""

    def __init__(self, labels: Sequence[int]) -> None:
        self.labels = list(labels)
        self.fed: list[int] = []

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        self.fed.append(int(i))
        return {
            "features": torch.tensor(features(i, self.labels[i])),
            "labels": self.labels[i],
            "idx": int(i),
        }


def training_arguments(output_dir: str, **overrides: Any) -> TrainingArguments:
    """2 epochs of batches of 8 on CPU, nothing logged or reported, no workers."""
    kwargs: dict[str, Any] = {
        "output_dir": output_dir,
        "per_device_train_batch_size": 8,
        "num_train_epochs": 2,
        "learning_rate": 0.05,
        "lr_scheduler_type": "constant",
        "use_cpu": True,
        "report_to": [],
        "save_strategy": "no",
        "logging_strategy": "no",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "seed": 0,
        **overrides,
    }
    return TrainingArguments(**kwargs)
