"""Runs: a plan's weights, changed between epochs by sparse updates from training.

This module is the arithmetic only (no storage): what an update is, how it is checked,
and how the updates of an epoch turn one epoch's weights into the next's. The run
catalog reads a run's stored state in one transaction, asks this module what the weights
become (:func:`replay`, :meth:`NextEpoch.then`), and writes the result.

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
from itertools import groupby
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from sampleplan.core.epochs import check_epoch
from sampleplan.core.errors import InvalidRunUpdate, InvalidWeights
from sampleplan.core.weighting import check_weights, weights_from_list

__all__ = [
    "RUN_ID_PATTERN",
    "UPDATE_OPS",
    "NextEpoch",
    "RunUpdate",
    "UpdateOp",
    "apply_updates",
    "check_alpha",
    "check_run_id",
    "parse_op",
    "replay",
]

#: What an update does to each weight it names (NOTE [Run updates]).
UpdateOp = Literal["set", "mul", "ema"]
UPDATE_OPS: tuple[UpdateOp, ...] = get_args(UpdateOp)

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


def parse_op(op: object) -> UpdateOp:
    """``op`` as an :data:`UpdateOp`, else :class:`InvalidRunUpdate`.

    The one check of an update's ``op``: the HTTP schema, :meth:`RunUpdate.check` and
    the run catalog reading stored updates back all go through it.
    """
    for known in UPDATE_OPS:
        if op == known:
            return known
    raise InvalidRunUpdate(f"op should be 'set', 'mul' or 'ema', but got op={op!r:.40}")


def check_alpha(op: UpdateOp, alpha: float | None) -> None:
    """``alpha`` goes with op ``ema`` only, and is then in (0, 1]."""
    if op == "ema":
        if alpha is None or not (math.isfinite(alpha) and 0.0 < alpha <= 1.0):
            raise InvalidRunUpdate(f"op 'ema' needs alpha in (0, 1], but got alpha={alpha}")
    elif alpha is not None:
        raise InvalidRunUpdate(f"alpha only applies to op 'ema', not to op {op!r}")


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
    def key(self) -> tuple[int, int]:
        """Where the update sorts among its epoch's, up to arrival: ``(step, rank)``."""
        return (self.step, self.rank)

    @property
    def order(self) -> tuple[int, int, int]:
        return (self.step, self.rank, self.seq)

    def check(self, population_size: int) -> None:
        """Refuse an update that is wrong in itself (whatever the weights it meets)."""
        check_epoch(self.epoch, InvalidRunUpdate)
        for name, value in (("rank", self.rank), ("step", self.step)):
            if not 0 <= value < 2**63:
                raise InvalidRunUpdate(
                    f"{name} should be a non-negative integer below 2**63, but got {name}={value}"
                )
        check_alpha(parse_op(self.op), self.alpha)
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


def replay(
    weights: Float64Array,
    updates: Iterable[RunUpdate],
    *,
    num_samples: int,
    replacement: bool,
) -> tuple[Float64Array, bool]:
    """``weights`` of an epoch carried through ``updates`` of that epoch and later ones,
    each epoch's applied to the weights the epochs before made; and whether any update
    went in. Raises :class:`InvalidRunUpdate` when any epoch's result cannot be drawn from.
    """
    updated = False
    for _, group in groupby(sorted(updates, key=lambda u: u.epoch), key=lambda u: u.epoch):
        weights = apply_updates(weights, group, num_samples=num_samples, replacement=replacement)
        updated = True
    return weights, updated


@dataclass(frozen=True, eq=False)
class NextEpoch:
    """The weights of epoch ``e + 1`` as the updates of epoch ``e`` applied so far make
    them, and the key (:attr:`RunUpdate.key`) of the last of those updates."""

    weights: Float64Array
    last_key: tuple[int, int]

    def then(self, update: RunUpdate, *, num_samples: int, replacement: bool) -> NextEpoch | None:
        """This state with ``update`` (of epoch ``e``) applied too, when it sorts after every
        update applied so far; ``None`` when it does not (replay the epoch instead).

        Raises :class:`InvalidRunUpdate` when the result cannot be drawn from.
        """
        if update.key < self.last_key:
            return None
        weights = apply_updates(
            self.weights, [update], num_samples=num_samples, replacement=replacement
        )
        return NextEpoch(weights=weights, last_key=update.key)


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
