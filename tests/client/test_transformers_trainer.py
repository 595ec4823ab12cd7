"""SamplePlanTrainer: a real transformers.Trainer on a tiny random model, on CPU.

The oracle is torch's ``WeightedRandomSampler`` (tests/helpers/reference.py) on the
plan's weights written out (inverse class frequency) and, for a run, on those weights
with the ``ema`` formula applied to the losses the trainer sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("transformers")

from sampleplan.client import SamplePlanClient
from sampleplan.integrations.transformers import SamplePlanTrainer
from tests.helpers import reference
from tests.helpers.hf import Recording, labels_64, tiny_model, training_arguments

# Trainer runs in-process: 11 s in a warm suite, a minute with cold caches (the first
# run after a boot); `make test` starts it early.
pytestmark = pytest.mark.long

SEED = 7
N = 64
ALPHA = 0.1


@pytest.fixture
def labels() -> list[int]:
    return labels_64()


@pytest.fixture
def plan_id(client: SamplePlanClient, labels: list[int]) -> str:
    return client.create_plan(labels=labels, strategy="inverse_frequency", seed=SEED).id


def stream(weights: list[float] | np.ndarray, epoch: int) -> list[int]:
    return reference.weighted_stream(list(weights), N, True, SEED + epoch)


class Sent(SamplePlanTrainer):
    """Remembers what update_run was given (then sends it as the default does)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[list[int], list[float]]] = []

    def update_run(self, indices: Any, losses: Any) -> None:
        self.sent.append((indices.tolist(), losses.tolist()))
        super().update_run(indices, losses)


def test_each_epoch_feeds_the_plans_stream(
    client: SamplePlanClient, plan_id: str, labels: list[int], tmp_path: Path
) -> None:
    data = Recording(labels)
    trainer = SamplePlanTrainer(
        plan_id=plan_id,
        api=client,
        model=tiny_model(),
        args=training_arguments(str(tmp_path)),
        train_dataset=data,
    )
    trainer.train()
    weights = reference.inverse_frequency(labels)
    assert data.fed == stream(weights, 0) + stream(weights, 1)
    assert trainer.sampler.epoch == 1


def test_a_run_is_reweighted_by_the_losses_of_the_epoch_before(
    client: SamplePlanClient, plan_id: str, labels: list[int], tmp_path: Path
) -> None:
    data = Recording(labels)
    model = tiny_model()
    trainer = Sent(
        plan_id=plan_id,
        api=client,
        run="hf-ema",
        loss_update={"op": "ema", "alpha": ALPHA},
        model=model,
        args=training_arguments(str(tmp_path)),
        train_dataset=data,
    )
    trainer.train()
    weights = reference.inverse_frequency(labels)
    epoch0 = stream(weights, 0)
    assert data.fed[:N] == epoch0
    # One flush per epoch, each rank (here one) its own samples, paired with their losses:
    # the model's own per-sample cross-entropy, in the order it saw them.
    (indices0, losses0), (indices1, _losses1) = trainer.sent
    assert indices0 == epoch0 and indices1 == data.fed[N:]
    seen_indices, seen_losses = zip(*model.seen[:N], strict=True)
    assert list(seen_indices) == epoch0
    np.testing.assert_allclose(losses0, seen_losses, rtol=1e-6)
    # NOTE [Run updates]'s ema, written out: w = (1 - alpha) * w + alpha * loss, in order.
    expected = np.array(weights, dtype=np.float64)
    for i, loss in zip(indices0, losses0, strict=True):
        expected[i] = (1 - ALPHA) * expected[i] + ALPHA * loss
    np.testing.assert_allclose(client.run_weights("hf-ema", 1), expected, rtol=1e-12)
    assert data.fed[N:] == stream(expected, 1)


@pytest.mark.parametrize("checkpoint", [3, 11])  # 8 steps an epoch: mid-epoch 0 and 1
def test_resume_from_a_mid_epoch_checkpoint_feeds_the_rest(
    client: SamplePlanClient, plan_id: str, labels: list[int], tmp_path: Path, checkpoint: int
) -> None:
    whole = Recording(labels)
    args = training_arguments(str(tmp_path / "out"), save_strategy="steps", save_steps=checkpoint)
    SamplePlanTrainer(
        plan_id=plan_id, api=client, model=tiny_model(), args=args, train_dataset=whole
    ).train()
    assert len(whole.fed) == 2 * N

    resumed = Recording(labels)
    trainer = SamplePlanTrainer(
        plan_id=plan_id, api=client, model=tiny_model(1), args=args, train_dataset=resumed
    )
    trainer.train(resume_from_checkpoint=str(tmp_path / "out" / f"checkpoint-{checkpoint}"))
    assert resumed.fed == whole.fed[checkpoint * 8 :]
    assert (tmp_path / "out" / f"checkpoint-{checkpoint}" / "sampleplan-sampler-0.json").exists()


def test_a_resumed_run_sends_what_an_uninterrupted_one_does(
    client: SamplePlanClient, plan_id: str, labels: list[int], tmp_path: Path
) -> None:
    from transformers import TrainerCallback

    class StopAt(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.global_step == 3:
                control.should_training_stop = True
            return control

    kwargs: dict[str, Any] = {"plan_id": plan_id, "api": client}
    update = {"op": "ema", "alpha": ALPHA}

    def args(name: str) -> Any:
        return training_arguments(str(tmp_path / name), save_strategy="steps", save_steps=3)

    whole = Recording(labels)
    SamplePlanTrainer(
        **kwargs,
        run="hf-whole",
        loss_update=update,
        model=tiny_model(),
        args=args("whole"),
        train_dataset=whole,
    ).train()

    first = Recording(labels)
    SamplePlanTrainer(
        **kwargs,
        run="hf-resumed",
        loss_update=update,
        model=tiny_model(),
        args=args("resumed"),
        train_dataset=first,
        callbacks=[StopAt()],
    ).train()
    rest = Recording(labels)
    SamplePlanTrainer(
        **kwargs,
        run="hf-resumed",
        loss_update=update,
        model=tiny_model(1),
        args=args("resumed"),
        train_dataset=rest,
    ).train(resume_from_checkpoint=str(tmp_path / "resumed" / "checkpoint-3"))

    # Accelerate's loader reads one batch ahead: the first job fetched a 4th it never trained.
    assert len(first.fed) == 4 * 8
    assert first.fed[: 3 * 8] + rest.fed == whole.fed
    np.testing.assert_array_equal(
        client.run_weights("hf-resumed", 1), client.run_weights("hf-whole", 1)
    )


def test_datasets_dataset_labels_without_a_copy(
    client: SamplePlanClient, labels: list[int], tmp_path: Path
) -> None:
    datasets = pytest.importorskip("datasets")
    from tests.helpers.hf import features

    ds = datasets.Dataset.from_dict(
        {
            "features": [features(i, y) for i, y in enumerate(labels)],
            "labels": labels,
            "idx": list(range(N)),
        }
    )
    # ds["labels"] is read from the dataset's Arrow table, as ds.data.column("labels") is.
    from sampleplan.client._tables import datasets_column

    assert datasets_column(ds["labels"]) is not None
    assert datasets_column(ds["labels"]).equals(ds.data.column("labels"))
    dataset = client.create_dataset(ds["labels"])
    assert dataset.id == client.create_dataset(labels).id
    shuffled = ds.shuffle(seed=0)
    assert (
        client.create_dataset(shuffled["labels"]).id
        == client.create_dataset(list(shuffled["labels"])).id
    )

    plan = client.create_plan(dataset_id=dataset.id, strategy="inverse_frequency", seed=SEED)
    model = tiny_model()
    trainer = SamplePlanTrainer(
        plan_id=plan.id,
        api=client,
        run="hf-datasets",
        loss_update={"op": "ema", "alpha": ALPHA},
        model=model,
        args=training_arguments(str(tmp_path)),
        train_dataset=ds.with_format("torch"),
    )
    trainer.train()
    weights = reference.inverse_frequency(labels)
    assert [i for i, _loss in model.seen[:N]] == stream(weights, 0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train_sampling_strategy": "group_by_length"}, "train_sampling_strategy"),
        ({"train_sampling_strategy": "sequential"}, "train_sampling_strategy"),
        ({"accelerator_config": {"dispatch_batches": True}}, "dispatch_batches"),
        ({"accelerator_config": {"split_batches": True}}, "split_batches"),
        ({"dataloader_in_order": False}, "dataloader_in_order"),
    ],
)
def test_sampler_options_that_conflict_are_refused_at_construction(
    client: SamplePlanClient,
    plan_id: str,
    labels: list[int],
    tmp_path: Path,
    overrides: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        SamplePlanTrainer(
            plan_id=plan_id,
            api=client,
            model=tiny_model(),
            args=training_arguments(str(tmp_path), **overrides),
            train_dataset=Recording(labels),
        )


def test_bad_input_is_refused_at_construction(
    client: SamplePlanClient, plan_id: str, labels: list[int], tmp_path: Path
) -> None:
    def make(**kwargs: Any) -> SamplePlanTrainer:
        options: dict[str, Any] = {
            "plan_id": plan_id,
            "api": client,
            "model": tiny_model(),
            "args": training_arguments(str(tmp_path)),
            "train_dataset": Recording(labels),
            **kwargs,
        }
        return SamplePlanTrainer(**options)

    with pytest.raises(ValueError, match="population of 64"):
        make(train_dataset=Recording(labels[:50]))
    with pytest.raises(ValueError, match="run="):
        make(loss_update={"op": "ema", "alpha": 0.1})
    with pytest.raises(ValueError, match="alpha"):
        make(run="hf-bad", loss_update={"op": "ema"})
    with pytest.raises(ValueError, match="loss_update should be"):
        make(run="hf-bad", loss_update={"op": "ema", "alpha": 0.1, "beta": 1})
    with pytest.raises(ValueError, match="train_dataset"):
        make(train_dataset=None)


# TRL 1.16's SFTConfig sets the argument transformers 5.24 renamed; not ours to fix.
@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
# Per-sample losses need the logits, which TRL 1.16's fused LM head recomputes (documented).
@pytest.mark.filterwarnings("ignore:`return_outputs=True`:FutureWarning")
def test_trls_sft_trainer_with_the_mixin(
    client: SamplePlanClient, labels: list[int], tmp_path: Path
) -> None:
    """TRL's SFTTrainer (a Trainer subclass) behind SamplePlanMixin, on a tiny random GPT-2:
    the stream, and each sequence's mean token loss sent to the run."""
    pytest.importorskip("trl")
    import torch
    from datasets import Dataset
    from tokenizers import Tokenizer, models
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    from trl import SFTConfig, SFTTrainer

    from sampleplan.integrations.transformers import SamplePlanMixin

    class PlanSFTTrainer(SamplePlanMixin, SFTTrainer):  # type: ignore[misc]
        pass

    vocab = {"<pad>": 0, "<eos>": 1, **{f"w{i}": i + 2 for i in range(30)}}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<pad>")),
        pad_token="<pad>",
        eos_token="<eos>",
    )
    tokens = torch.randint(2, 32, (N, 6), generator=torch.Generator().manual_seed(0))
    ds = Dataset.from_dict({"input_ids": tokens.tolist()})
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=32,
        n_positions=16,
        n_embd=16,
        n_layer=2,
        n_head=2,
        bos_token_id=1,
        eos_token_id=1,
        pad_token_id=0,
    )
    plan = client.create_plan(labels=labels, strategy="inverse_frequency", seed=SEED)
    args = SFTConfig(
        str(tmp_path),
        per_device_train_batch_size=8,
        num_train_epochs=2,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
    )
    sent: list[tuple[list[int], list[float]]] = []

    class Recorded(PlanSFTTrainer):
        def update_run(self, indices: Any, losses: Any) -> None:
            sent.append((indices.tolist(), losses.tolist()))
            super().update_run(indices, losses)

    trainer = Recorded(
        plan_id=plan.id,
        api=client,
        run="trl-sft",
        loss_update={"op": "ema", "alpha": ALPHA},
        model=GPT2LMHeadModel(config),
        args=args,
        train_dataset=ds,
        processing_class=tokenizer,
    )
    trainer.train()
    weights = reference.inverse_frequency(labels)
    (indices0, losses0), (indices1, _) = sent
    assert indices0 == stream(weights, 0)
    expected = np.array(weights, dtype=np.float64)
    for i, loss in zip(indices0, losses0, strict=True):
        expected[i] = (1 - ALPHA) * expected[i] + ALPHA * loss
    assert indices1 == stream(expected, 1)
    # A sequence's loss is its mean next-token cross-entropy: about log(32) for a new model.
    assert all(0.5 < loss < 10 for loss in losses0)


def test_transformers_4s_group_by_length_is_a_conflict_too() -> None:
    from types import SimpleNamespace

    from sampleplan.integrations.transformers import conflicts

    assert conflicts(SimpleNamespace(train_sampling_strategy="random")) == []
    (found,) = conflicts(SimpleNamespace(group_by_length=True))
    assert found.startswith("group_by_length=True")
