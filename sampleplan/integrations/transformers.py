"""A Hugging Face ``transformers.Trainer`` that draws its training samples from a plan.

``pip install 'sampleplan[transformers]' -c constraints.txt``::

    from sampleplan.integrations.transformers import SamplePlanTrainer

    trainer = SamplePlanTrainer(
        plan_id=plan.id, api=api, model=model, args=args, train_dataset=train_dataset
    )
    trainer.train()

NOTE [Trainer integration]
    ``SamplePlanTrainer`` (``SamplePlanMixin`` over ``transformers.Trainer``) builds one
    ``RemoteWeightedSampler`` at construction, with ``rank`` and ``world_size`` taken from
    the Trainer's arguments (``args.process_index``, ``args.world_size``), and hands it to
    the Trainer as its train sampler. What the Trainer would otherwise do to it, read in
    transformers 5.24 and accelerate 1.16:

    - ``accelerator.prepare()`` deals the loader's batches over the processes itself
      (``BatchSamplerShard``): on the sampler's loader that wrapper is made a passthrough
      (one process), as transformers does for its own rank-aware sampler, so each rank
      gets exactly its ``DistributedSampler`` shard of the plan's stream;
    - the Trainer's ``set_epoch`` reaches the sampler in one process only (Accelerate's
      wrapper does not forward it): the trainer sets the sampler's epoch itself at the
      start of every epoch;
    - resuming from a checkpoint, the Trainer skips the epoch's consumed batches
      (``skip_first_batches``): the sampler deals the whole epoch again and the skipped
      batches are exactly the ones trained before the checkpoint. Each checkpoint holds
      every rank's ``sampleplan-sampler-{rank}.json`` (the sampler's ``state_dict``), read
      back on resume for the epoch and the run's update step.

    Options that would make the Trainer draw a different stream are refused at
    construction (:func:`conflicts`): another ``train_sampling_strategy`` (or
    ``group_by_length`` in transformers 4), Accelerate's ``dispatch_batches`` or
    ``split_batches``, ``dataloader_in_order=False``, an iterable dataset, a dataset whose
    length is not the plan's population, a schedule whose epochs differ in length.

    With ``run=...`` every training batch's per-sample losses (:meth:`sample_losses`,
    ``reduction="none"``) are paired with the positions the sampler dealt to that batch
    (the sampler records what it yields; batches leave the loader in order), kept per
    rank, and sent at the end of every epoch and before every checkpoint (so that a
    checkpoint holds no position past losses that were not sent) by
    :meth:`update_run`: with ``loss_update={"op": "ema", "alpha": 0.1}`` each loss is the
    value of one ``ema`` update of its sample's weight (NOTE [Run updates]); override
    :meth:`update_run` for another rule. Each flush is one ``update_weights`` call, so the
    updates' order (step, rank) is the same in a resumed job as in an uninterrupted one.
"""

from __future__ import annotations

import collections
import inspect
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
import transformers
from torch.utils.data import IterableDataset

from sampleplan.client import Plan, RemoteWeightedSampler, SamplePlanClient
from sampleplan.core.errors import InvalidRunUpdate
from sampleplan.core.runs import check_alpha, parse_op

__all__ = ["SamplePlanMixin", "SamplePlanTrainer", "conflicts"]

#: The file each rank writes into a Trainer checkpoint (NOTE [Trainer integration]).
STATE_FILE = "sampleplan-sampler-{rank}.json"

if not hasattr(transformers.Trainer, "_run_epoch"):  # pragma: no cover - the extra pins it
    raise ImportError(
        "sampleplan.integrations.transformers needs transformers>=5.24 (its Trainer runs "
        "each epoch in Trainer._run_epoch): pip install 'sampleplan[transformers]'"
    )


class _RecordingSampler(RemoteWeightedSampler):
    """A ``RemoteWeightedSampler`` that also remembers what it yields, when asked to."""

    def __init__(self, *args: Any, record: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: collections.deque[int] | None = collections.deque() if record else None

    def __iter__(self) -> Iterator[int]:
        indices = super().__iter__()
        return indices if self.recorded is None else self._recording(indices, self.recorded)

    @staticmethod
    def _recording(indices: Iterator[int], into: collections.deque[int]) -> Iterator[int]:
        for index in indices:
            into.append(index)
            yield index


def conflicts(args: Any) -> list[str]:
    """What in the Trainer's ``args`` would draw another stream than the plan's."""
    found = []
    strategy = getattr(args, "train_sampling_strategy", "random")
    if strategy != "random":
        found.append(f"train_sampling_strategy={strategy!r} (the plan's stream is the order)")
    if getattr(args, "group_by_length", False):
        found.append("group_by_length=True (the plan's stream is the order)")
    config = getattr(args, "accelerator_config", None)
    for name in ("dispatch_batches", "split_batches"):
        if getattr(config, name, None):
            found.append(
                f"accelerator_config.{name}=True (each rank draws its own shard of the plan)"
            )
    if getattr(args, "dataloader_in_order", True) is False:
        found.append("dataloader_in_order=False (batches would leave the stream's order)")
    return found


class SamplePlanMixin:
    """Makes a ``transformers.Trainer`` (or a subclass, such as TRL's ``SFTTrainer``) draw
    from a plan; see NOTE [Trainer integration].

    ``class SFTPlanTrainer(SamplePlanMixin, SFTTrainer): pass`` gives TRL's trainer the
    same arguments as :class:`SamplePlanTrainer`.
    """

    # The Trainer's attributes this mixin reads (set by transformers.Trainer.__init__).
    args: Any
    train_dataset: Any
    state: Any
    _train_batch_size: int

    def __init__(
        self,
        *args: Any,
        plan_id: str | Plan,
        api: SamplePlanClient | None,
        run: str | None = None,
        loss_update: Mapping[str, Any] | None = None,
        **trainer_kwargs: Any,
    ) -> None:
        self.loss_update = _checked_loss_update(loss_update, run)
        super().__init__(*args, **trainer_kwargs)
        found = conflicts(self.args)
        if found:
            raise ValueError(
                "SamplePlanTrainer draws the plan's stream; these Trainer arguments would "
                "draw another: " + "; ".join(found)
            )
        dataset = self.train_dataset
        if dataset is None:
            raise ValueError("SamplePlanTrainer needs a train_dataset: the plan's population")
        if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
            raise ValueError(
                "SamplePlanTrainer needs a map-style train_dataset (with __len__ and "
                f"__getitem__) for the plan's positions to index, not {type(dataset).__name__}"
            )
        self.run = run
        self.sampler = _RecordingSampler(
            plan_id,
            api,
            rank=self.args.process_index,
            world_size=self.args.world_size,
            run=run,
            record=run is not None,
        )
        plan = self.sampler.plan
        if len(dataset) != plan.population_size:
            raise ValueError(
                f"the train_dataset has {len(dataset)} samples and plan {plan.id[:12]}… draws "
                f"positions of a population of {plan.population_size}: give the Trainer the "
                "dataset the plan's positions index (with a split, its training part)"
            )
        if plan.config.get("schedule") is not None and plan.config.get("num_samples") is None:
            raise ValueError(
                "the plan's schedule changes how many samples each epoch draws, and the "
                "Trainer counts its steps per epoch once: give the plan a num_samples"
            )
        self._skip = 0
        self._indices: list[npt.NDArray[np.int64]] = []
        self._losses: list[npt.NDArray[np.float64]] = []

    # -- the train sampler and its loader ---------------------------------------------------

    def _get_train_sampler(self, train_dataset: Any = None) -> RemoteWeightedSampler:
        return self.sampler

    def get_train_dataloader(self) -> Any:
        loader = super().get_train_dataloader()  # type: ignore[misc]
        batches: Any = getattr(loader, "batch_sampler", None)
        if type(batches).__name__ == "BatchSamplerShard":
            # Accelerate's round-robin over the processes: a passthrough here, since the
            # sampler already deals each rank its shard (NOTE [Trainer integration]).
            batches.num_processes = 1
            batches.process_index = 0
            batches = batches.batch_sampler
        if getattr(batches, "sampler", None) is not self.sampler:
            raise RuntimeError(
                "the Trainer's training loader does not draw from the plan's sampler "
                f"(its batches come from {type(batches).__name__}): nothing else may wrap it"
            )
        return loader

    def _run_epoch(self, *args: Any, **kwargs: Any) -> Any:
        run_epoch = super()._run_epoch  # type: ignore[misc]
        call = inspect.signature(run_epoch).bind(*args, **kwargs).arguments
        epoch = int(call["epoch"])
        checkpoint = call.get("resume_from_checkpoint")
        resuming = checkpoint is not None and epoch == call.get("epochs_trained")
        if resuming:
            self._restore_sampler(str(checkpoint))
        self.sampler.set_epoch(epoch)
        self._clear_losses()
        skipped = int(call.get("steps_trained_in_current_epoch") or 0)
        if resuming and not self.args.ignore_data_skip:
            # skip_first_batches draws the skipped (already trained) batches again.
            self._skip = skipped * self._train_batch_size
        result = run_epoch(*args, **kwargs)
        self._send_losses()
        return result

    # -- checkpoints ------------------------------------------------------------------------

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        self._send_losses()
        super()._save_checkpoint(model, trial)  # type: ignore[misc]
        folder = os.path.join(
            self._get_output_dir(trial=trial),  # type: ignore[attr-defined]
            f"{transformers.trainer_utils.PREFIX_CHECKPOINT_DIR}-{self.state.global_step}",
        )
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, STATE_FILE.format(rank=self.args.process_index))
        with open(path, "w", encoding="utf-8") as file:
            json.dump(self.sampler.state_dict(), file)

    def _restore_sampler(self, checkpoint: str) -> None:
        path = os.path.join(checkpoint, STATE_FILE.format(rank=self.args.process_index))
        if not os.path.isfile(path):
            return  # a checkpoint of a plain Trainer: the epoch from the Trainer, step 0
        with open(path, encoding="utf-8") as file:
            state = json.load(file)
        # The Trainer skips the consumed batches itself: the sampler deals the whole epoch.
        state.update(position=0, start=0, global_position=0)
        self.sampler.load_state_dict(state)

    # -- per-sample losses (runs) -----------------------------------------------------------

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        compute = super().compute_loss  # type: ignore[misc]
        if self.run is None or not model.training:
            return compute(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        batch = dict(inputs)  # the Trainer may pop the labels off ``inputs``
        loss, outputs = compute(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        with torch.no_grad():
            losses = self.sample_losses(outputs, batch)
        values = losses.detach().to(device="cpu", dtype=torch.float64).numpy().reshape(-1)
        self._indices.append(self._batch_positions(len(values)))
        self._losses.append(values)
        return (loss, outputs) if return_outputs else loss

    def sample_losses(self, outputs: Any, inputs: Mapping[str, Any]) -> torch.Tensor:
        """One loss per sample of the batch, computed with ``reduction="none"``.

        The default reads ``outputs["logits"]`` and ``inputs["labels"]``: logits of shape
        ``(batch, classes)`` give the cross-entropy of each sample (a single output with
        float labels: the squared error); ``(batch, tokens, vocabulary)`` the causal
        language model's mean cross-entropy over each sample's predicted tokens (logits
        at ``t`` predict the label at ``t + 1``, ``-100`` ignored), as SFT trains. Override
        it for other models.
        """
        logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs[1]
        labels = inputs.get("labels")
        if labels is None:
            raise ValueError(
                "per-sample losses need the batch's labels: override sample_losses(outputs, "
                "inputs) for a model trained without a 'labels' input"
            )
        labels = labels.to(logits.device)
        losses: torch.Tensor
        if logits.dim() == 2 and logits.shape[-1] == 1 and labels.is_floating_point():
            losses = (logits.squeeze(-1) - labels.to(logits.dtype)).pow(2)
            return losses
        if logits.dim() == 2:
            losses = F.cross_entropy(logits, labels, reduction="none")
            return losses
        if logits.dim() == 3:
            shifted = logits[:, :-1, :].float()
            targets = labels[:, 1:]
            tokens = F.cross_entropy(
                shifted.transpose(1, 2), targets, reduction="none", ignore_index=-100
            )
            counted = (targets != -100).sum(dim=1).clamp(min=1)
            losses = tokens.sum(dim=1) / counted
            return losses
        raise ValueError(
            f"no per-sample loss for logits of shape {tuple(logits.shape)}: override "
            "sample_losses(outputs, inputs)"
        )

    def update_run(self, indices: npt.NDArray[np.int64], losses: npt.NDArray[np.float64]) -> None:
        """Send the losses gathered since the last flush to the run.

        ``indices`` are population positions (what the sampler yielded, in order) and
        ``losses`` their per-sample losses; called at every epoch's end and before every
        checkpoint, on every rank with its own samples. The default sends each loss as
        the value of ``loss_update``'s op (``{"op": "ema", "alpha": 0.1}``); with no
        ``loss_update`` it sends nothing. Override it for another rule, for example::

            def update_run(self, indices, losses):
                self.sampler.update_weights(indices, np.exp(losses / 2.0), op="set")
        """
        if self.loss_update is not None:
            self.sampler.update_weights(indices, losses, **self.loss_update)

    def _batch_positions(self, size: int) -> npt.NDArray[np.int64]:
        recorded = self.sampler.recorded
        assert recorded is not None  # a run records
        while self._skip and recorded:
            recorded.popleft()
            self._skip -= 1
        if len(recorded) < size:
            raise RuntimeError(
                f"a training batch of {size} samples, but the sampler dealt {len(recorded)} "
                "not yet trained: the loader's batches do not follow the plan's stream"
            )
        return np.array([recorded.popleft() for _ in range(size)], dtype=np.int64)

    def _send_losses(self) -> None:
        if self.run is None:
            return
        if self._indices:
            self.update_run(np.concatenate(self._indices), np.concatenate(self._losses))
        self._indices.clear()
        self._losses.clear()
        self.sampler.flush_updates()

    def _clear_losses(self) -> None:
        self._indices.clear()
        self._losses.clear()
        self._skip = 0
        if self.sampler.recorded is not None:
            self.sampler.recorded.clear()


def _checked_loss_update(
    loss_update: Mapping[str, Any] | None, run: str | None
) -> dict[str, Any] | None:
    if loss_update is None:
        return None
    if run is None:
        raise ValueError("loss_update sends losses to a run: give the trainer run='...'")
    if not isinstance(loss_update, Mapping) or set(loss_update) - {"op", "alpha"}:
        raise ValueError(
            "loss_update should be {'op': 'set' | 'mul' | 'ema', 'alpha': ...}, "
            f"but got loss_update={loss_update!r}"
        )
    alpha = loss_update.get("alpha")
    try:
        op = parse_op(loss_update.get("op"))
        check_alpha(op, alpha)
    except InvalidRunUpdate as exc:
        raise ValueError(f"loss_update: {exc}") from None
    return {"op": op, "alpha": alpha}


class SamplePlanTrainer(SamplePlanMixin, transformers.Trainer):  # type: ignore[misc]
    """A ``transformers.Trainer`` whose training samples are a plan's stream.

    ``SamplePlanTrainer(plan_id=..., api=..., run=None, loss_update=None, **trainer_kwargs)``:
    the Trainer's own arguments (``model``, ``args``, ``train_dataset``, ...) as keywords.
    Each rank trains on its ``DistributedSampler`` shard of the plan's epoch-``e`` stream
    in epoch ``e``, and a resumed checkpoint continues that stream where it stopped. With
    ``run="job-1"`` it draws that run of the plan and, with ``loss_update``, sends every
    sample's loss to the run (NOTE [Trainer integration]).

    Args:
        plan_id: the plan (id, or the :class:`~client.Plan`) whose positions index
            ``train_dataset``.
        api: the client; ``None`` draws from the cache only (no run).
        run: draw from this run of the plan (created if new).
        loss_update: ``{"op": "ema", "alpha": 0.1}`` (or ``"set"``, ``"mul"``): each
            sample's loss becomes that op's value for its weight in the next epochs.

    Raises:
        ValueError: at construction, Trainer arguments that would draw another stream
            (``train_sampling_strategy`` other than ``"random"``, ``group_by_length``,
            ``dispatch_batches``, ``split_batches``, ``dataloader_in_order=False``), a
            dataset that is not the plan's population, a bad ``loss_update``.
    """
