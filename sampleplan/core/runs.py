"""Runs: a plan's weights, changed between epochs by sparse updates from training.

This module is the arithmetic only (no storage): what an update is, how it is checked,
and how the updates of an epoch turn one epoch's weights into the next's.

NOTE [Run updates]
    Epoch 0 of a run draws from the plan's weights. An update sent during epoch ``u``
    (population positions ``indices`` and ``values``) changes the weights of epoch
    ``u + 1`` and later: ``weights(u + 1)`` is ``weights(u)`` with every update of epoch
    ``u`` applied in the order ``(step, rank, arrival within that rank)``, so the
    result does not depend on how the ranks' requests interleave. Per position:

    - ``set``: ``w = v``;
    - ``mul``: ``w = w * v``;
    - ``ema``: ``w = (1 - alpha) * w + alpha * v``.

    An index repeated within one update applies once per occurrence, in the order given
    (``set``: the last wins), exactly as if each occurrence came in its own update. The
    weights must stay finite and non-negative with a positive total (and, without
    replacement, at least ``num_samples`` positive): an update that would break that is
    refused as a whole.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from sampleplan.core.errors import InvalidRunUpdate, InvalidWeights
from sampleplan.core.weighting import check_weights, weights_from_list

__all__ = ["RUN_ID_PATTERN", "RunUpdate", "UpdateOp", "apply_updates", "check_run_id"]

UpdateOp = Literal["set", "mul", "ema"]
UPDATE_OPS: tuple[str, ...] = get_args(UpdateOp)

#: Run ids are chosen by the caller: short, URL-safe, no path separators.
RUN_ID_PATTERN = r"[A-Za-z0-9._-]{1,128}"
_RUN_ID = re.compile(RUN_ID_PATTERN)

Float64Array = npt.NDArray[np.float64]
Int64Array = npt.NDArray[np.int64]


def check_run_id(run_id: str) -> str:
    """``run_id`` if it matches :data:`RUN_ID_PATTERN`, else :class:`InvalidRunUpdate`."""
    if not _RUN_ID.fullmatch(run_id):
        raise InvalidRunUpdate(
            f"a run id is 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-', "
            f"but got {run_id!r:.150}"
        )
    return run_id


@dataclass(frozen=True, eq=False)
class RunUpdate:
    """One update: where it sorts (``epoch``, ``step``, ``rank``, ``seq``) and what it does.

    ``seq`` is the arrival order, assigned by the store; it only breaks ties within one
    ``(step, rank)``.
    """

    epoch: int
    rank: int
    step: int
    op: UpdateOp
    alpha: float | None
    indices: Int64Array
    values: Float64Array
    seq: int = 0

    @property
    def order(self) -> tuple[int, int, int]:
        return (self.step, self.rank, self.seq)

    def check(self, population_size: int) -> None:
        """Refuse an update that is wrong in itself (whatever the weights it meets)."""
        for name, value in (("epoch", self.epoch), ("rank", self.rank), ("step", self.step)):
            if not 0 <= value < 2**63:
                raise InvalidRunUpdate(
                    f"{name} should be a non-negative integer below 2**63, but got {name}={value}"
                )
        if self.epoch >= 2**32:
            raise InvalidRunUpdate(f"epoch should be below 2**32, but got epoch={self.epoch}")
        if self.op not in UPDATE_OPS:
            raise InvalidRunUpdate(
                f"op should be one of {', '.join(map(repr, UPDATE_OPS))}, "
                f"but got op={self.op!r:.40}"
            )
        if self.op == "ema":
            if self.alpha is None or not (math.isfinite(self.alpha) and 0.0 < self.alpha <= 1.0):
                raise InvalidRunUpdate(
                    f"op 'ema' needs alpha in (0, 1], but got alpha={self.alpha}"
                )
        elif self.alpha is not None:
            raise InvalidRunUpdate(f"alpha only applies to op 'ema', not to op {self.op!r}")
        if self.indices.shape != self.values.shape or self.indices.ndim != 1:
            raise InvalidRunUpdate(
                f"indices and values should have the same length, but got "
                f"{self.indices.shape[0]} indices and {self.values.shape[0]} values"
            )
        if self.indices.size:
            low, high = int(self.indices.min()), int(self.indices.max())
            if low < 0 or high >= population_size:
                bad = low if low < 0 else high
                raise InvalidRunUpdate(
                    f"indices are population positions in [0, {population_size}), "
                    f"but got index {bad}"
                )
        try:
            check_weights(self.values, what="values", allow_all_zero=True)
        except InvalidWeights as exc:
            raise InvalidRunUpdate(exc.detail) from exc


def _occurrence_rounds(indices: Int64Array, size: int) -> list[npt.NDArray[np.intp]]:
    """Positions of ``indices`` (all in ``[0, size)``) split into rounds with no index twice.

    Round ``k`` holds every index's ``k``-th occurrence, so applying the rounds in order
    is applying the occurrences one after another.
    """
    if indices.size == 0:
        return []
    # The usual update names each index once: marking them says so without sorting.
    marks = np.zeros(size, dtype=np.bool_)
    marks[indices] = True
    if int(np.count_nonzero(marks)) == indices.size:
        return [np.arange(indices.size)]
    order = np.argsort(indices, kind="stable")
    sorted_idx = indices[order]
    starts = np.r_[True, sorted_idx[1:] != sorted_idx[:-1]]
    group_start = np.maximum.accumulate(np.where(starts, np.arange(indices.size), 0))
    occurrence = np.empty(indices.size, dtype=np.int64)
    occurrence[order] = np.arange(indices.size) - group_start
    return [np.flatnonzero(occurrence == k) for k in range(int(occurrence.max()) + 1)]


def apply_update(weights: Float64Array, update: RunUpdate) -> None:
    """Apply one update to ``weights`` in place; see NOTE [Run updates]."""
    for positions in _occurrence_rounds(update.indices, weights.shape[0]):
        idx, val = update.indices[positions], update.values[positions]
        if update.op == "set":
            weights[idx] = val
        elif update.op == "mul":
            weights[idx] = weights[idx] * val
        else:
            assert update.alpha is not None
            alpha = update.alpha
            weights[idx] = (1.0 - alpha) * weights[idx] + alpha * val


def apply_updates(
    weights: Float64Array,
    updates: Iterable[RunUpdate],
    *,
    num_samples: int,
    replacement: bool,
) -> Float64Array:
    """``weights`` of one epoch with that epoch's ``updates`` applied: the next epoch's.

    ``updates`` may come in any order; they are applied in the order of NOTE [Run updates].
    Raises :class:`InvalidRunUpdate` when the result cannot be drawn from.
    """
    out = np.array(weights, dtype=np.float64, copy=True)
    # An overflow to inf is caught below, by the check of the result.
    with np.errstate(over="ignore", invalid="ignore"):
        for update in sorted(updates, key=lambda u: u.order):
            apply_update(out, update)
    check_result(out, num_samples=num_samples, replacement=replacement)
    return out


def check_result(weights: Float64Array, *, num_samples: int, replacement: bool) -> None:
    """The weights an epoch would draw from must be drawable (else the update is refused)."""
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            check_weights(weights, what="the updated weights")
        except InvalidWeights as exc:
            raise InvalidRunUpdate(f"{exc.detail}; the update is refused") from exc
    if not replacement:
        positive = int(np.count_nonzero(weights))
        if positive < num_samples:
            raise InvalidRunUpdate(
                f"the plan draws {num_samples} distinct samples per epoch without replacement, "
                f"but the update would leave only {positive} with a positive weight"
            )


def indices_from_list(values: object) -> Int64Array:
    """Population positions from a JSON-like list of integers (booleans and floats refused)."""
    if not isinstance(values, list | tuple):
        raise InvalidRunUpdate(f"indices must be a list of integers, got {type(values).__name__}")
    bad = next((i for i, v in enumerate(values) if type(v) is not int), None)
    if bad is not None:
        value = values[bad]
        raise InvalidRunUpdate(
            f"indices must be integers; indices[{bad}] is a {type(value).__name__} ({value!r:.40})"
        )
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError as exc:
        raise InvalidRunUpdate("indices must fit in int64") from exc


def values_from_list(values: object) -> Float64Array:
    """Update values from a JSON-like list of numbers."""
    try:
        return weights_from_list(values)
    except InvalidWeights as exc:
        raise InvalidRunUpdate(exc.detail.replace("weights", "values")) from exc
