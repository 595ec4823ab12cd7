"""A run's weight updates from one sampler: checked, buffered, and sent in order in the background.

NOTE [Runs]
    With ``run="job-42"`` the sampler draws from that run of the plan (made with
    ``PUT /v1/runs/job-42`` if new): epoch 0 from the plan's weights, every later epoch
    from the weights the run's updates made. ``update_weights(indices, values, op=...,
    alpha=...)`` tags the values with the current epoch, this rank and a step (the number
    of ``update_weights`` calls so far this epoch), buffers them, and sends them from one
    background thread in batches of up to ``update_batch_size`` values (consecutive calls
    with the same ``op`` and ``alpha`` go in one request, under the step of its first
    call). Batches are cut by count, never by time, so what each rank sends, and hence
    the next epoch's weights, does not depend on timing. ``set_epoch`` to a new epoch
    flushes and waits for every send (an error, such as a 409 for an epoch already
    served, is raised there), then, when ``torch.distributed`` is initialised with
    several ranks, waits at a barrier so that no rank reads the next epoch (which freezes
    it) before every rank's updates are in. A run's weights live in the service: a run
    has no offline fallback. ``state_dict`` carries the run (and the step), so a restored
    job continues the same run; a pickled copy sends its updates from a thread of its own.
"""

from __future__ import annotations

import queue
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from sampleplan.client._client import SamplePlanClient
from sampleplan.core.runs import UPDATE_OPS, UpdateOp

__all__ = ["DEFAULT_UPDATE_BATCH_SIZE", "RunUpdates"]

#: Values per update request the sampler's ``update_weights`` sends at most.
DEFAULT_UPDATE_BATCH_SIZE = 1 << 16


class _UpdateSender:
    """Sends a run's updates, in order, from one daemon thread; remembers the first error."""

    def __init__(self, api: SamplePlanClient, run_id: str) -> None:
        self.api = api
        self.run_id = run_id
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sampleplan-updates", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:  # stop(): the sampler is gone
                self._queue.task_done()
                return
            try:
                if self._error is None:
                    self.api.update_weights(self.run_id, **item)
            except BaseException as exc:  # raised to the trainer at the next flush
                self._error = exc
            finally:
                self._queue.task_done()

    def send(self, item: dict[str, Any]) -> None:
        self._queue.put(item)

    def stop(self) -> None:
        """Let the thread end once what is queued is sent (called when the sampler goes)."""
        self._queue.put(None)

    def wait(self) -> None:
        """Block until everything queued is sent; raise the first error, once."""
        self._queue.join()
        error, self._error = self._error, None
        if error is not None:
            raise error


@dataclass(frozen=True)
class _Update:
    """One ``update_weights`` call, tagged; see NOTE [Runs]."""

    op: UpdateOp
    alpha: float | None
    epoch: int
    rank: int
    step: int
    indices: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    def joins(self, other: _Update) -> bool:
        """Whether it goes in one request with ``other``: same op, alpha, epoch and rank."""
        return (self.op, self.alpha, self.epoch, self.rank) == (
            other.op,
            other.alpha,
            other.epoch,
            other.rank,
        )


class RunUpdates:
    """A sampler's updates of run ``run_id``, sent ``batch_size`` values at a time.

    The sampler tags each :meth:`add` with its epoch and rank; :meth:`flush` sends what is
    buffered and waits for the service, :meth:`next_epoch` also meets the other ranks at
    a barrier and starts the step count again (NOTE [Runs]). It pickles as its buffer's
    owner would want: what is buffered is sent first (a copy holding it too would send it
    a second time, a 'mul' applied twice, whenever both flush), and the copy sends from a
    thread of its own.
    """

    def __init__(self, api: SamplePlanClient, run_id: str, *, batch_size: int) -> None:
        self.api = api
        self.run_id = run_id
        self.batch_size = batch_size
        #: ``update_weights`` calls so far this epoch: the next call's step.
        self.step = 0
        self._buffer: list[_Update] = []
        self._buffered = 0
        self._start_sender()

    def _start_sender(self) -> None:
        sender = _UpdateSender(self.api, self.run_id)
        self._sender = sender
        weakref.finalize(self, sender.stop)

    def __getstate__(self) -> dict[str, Any]:
        self.flush()
        state = self.__dict__.copy()
        del state["_sender"]  # a thread: the copy starts its own
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._start_sender()

    def add(
        self,
        indices: npt.ArrayLike,
        values: npt.ArrayLike,
        *,
        op: UpdateOp,
        alpha: float | None,
        epoch: int,
        rank: int,
    ) -> None:
        """Check and buffer one ``update_weights`` call; send a batch once it is full."""
        if op not in UPDATE_OPS:
            raise ValueError(f"op should be 'set', 'mul' or 'ema', but got op={op!r}")
        if op == "ema":
            if alpha is None or not 0.0 < float(alpha) <= 1.0:
                raise ValueError(f"op 'ema' needs alpha in (0, 1], but got alpha={alpha!r}")
        elif alpha is not None:
            raise ValueError(f"alpha only applies to op 'ema', not to op {op!r}")
        idx = np.asarray(indices.detach().cpu() if hasattr(indices, "detach") else indices)
        val = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values)
        idx = idx.astype(np.int64, copy=False).reshape(-1)
        val = val.astype(np.float64, copy=False).reshape(-1)
        if idx.shape != val.shape:
            raise ValueError(
                f"indices and values should have the same length, but got {idx.shape[0]} "
                f"and {val.shape[0]}"
            )
        update = _Update(op, alpha, epoch, rank, self.step, idx, val)
        if self._buffer and not self._buffer[0].joins(update):
            self._send_buffer()
        self._buffer.append(update)
        self._buffered += int(idx.shape[0])
        self.step += 1
        if self._buffered >= self.batch_size:
            self._send_buffer()

    def _send_buffer(self) -> None:
        if not self._buffer:
            return
        first = self._buffer[0]
        self._sender.send(
            {
                "indices": np.concatenate([u.indices for u in self._buffer]),
                "values": np.concatenate([u.values for u in self._buffer]),
                "epoch": first.epoch,
                "rank": first.rank,
                "step": first.step,
                "op": first.op,
                "alpha": first.alpha,
            }
        )
        self._buffer = []
        self._buffered = 0

    def flush(self) -> None:
        """Send every buffered update and wait until the service has them (or raise)."""
        self._send_buffer()
        self._sender.wait()

    def next_epoch(self) -> None:
        """Before the sampler moves to another epoch: flush, then wait for every rank's."""
        self.flush()
        if (
            torch.distributed.is_available()
            and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1
        ):
            # No rank may read (and so freeze) the next epoch before every rank's
            # updates of this one are in: see NOTE [Runs].
            torch.distributed.barrier()
        self.step = 0
