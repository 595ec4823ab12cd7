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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import groupby
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from sampleplan.core.deadlines import check_deadline
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
    #: How it applies (NOTE [Repeated indices]), worked out once by :meth:`steps`;
    #: ``dataclasses.replace`` carries it over.
    prepared: _Steps | None = field(default=None, repr=False, compare=False)

    def steps(self) -> _Steps:
        """The update's occurrences grouped for applying (NOTE [Repeated indices]),
        worked out on first use and kept: :meth:`check` does it before any lock is taken."""
        if self.prepared is None:
            object.__setattr__(self, "prepared", _steps(self.indices, self.values, self.op))
        assert self.prepared is not None
        return self.prepared

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
        self.steps()


# NOTE [Repeated indices]
#     An index repeated within one update applies once per occurrence, in the order given
#     (NOTE [Run updates]). Applying occurrence rounds one array operation at a time costs
#     O(n) per round, and an index repeated n times makes n rounds: O(n^2) (1e5 repeats
#     took seconds, 1e6 more than a minute, under the run's lock). So an update is grouped
#     once, in O(n log n), by a stable sort of its indices: ``set`` keeps each index's
#     last occurrence (one round); ``mul`` and ``ema`` apply as array rounds while at least
#     ``_ROUND_WIDTH`` indices still have an occurrence left (so at most n / _ROUND_WIDTH
#     rounds), then fold each remaining index's occurrences in order with Python floats,
#     which are IEEE binary64 as numpy's float64 is: every weight is the very number the
#     occurrence-by-occurrence definition gives, bit for bit, so stored runs replay to the
#     weights they froze. The grouping is worked out when the update is checked, before the
#     run's lock is taken, and kept with the update.

#: Occurrences folded between two checks of the deadline (NOTE [Deadlines]).
_FOLD_STEP = 1 << 16

#: Below this many indices, the rounds of an update's repeated indices are applied index by
#: index (NOTE [Repeated indices]).
_ROUND_WIDTH = 32


@dataclass(frozen=True, eq=False)
class _Steps:
    """How one update is applied: NOTE [Repeated indices].

    ``rounds``: pairs of (positions, values) in which no position repeats, applied in
    order; ``tails``: per position, the values of its occurrences left after the rounds,
    in the order given, applied one after another.
    """

    rounds: tuple[tuple[Int64Array, Float64Array], ...]
    tails: tuple[tuple[int, Float64Array], ...]


def _steps(indices: Int64Array, values: Float64Array, op: UpdateOp) -> _Steps:
    """The update's occurrences grouped so that applying the steps in order is applying
    each occurrence one after another, in O(n log n) (NOTE [Repeated indices])."""
    n = int(indices.size)
    if n == 0:
        return _Steps(rounds=(), tails=())
    order = np.argsort(indices, kind="stable")  # stable: each index's occurrences in order
    ordered = indices[order]
    first = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    if first.size == n:  # the usual update: no index twice
        return _Steps(rounds=((indices, values),), tails=())
    ends = np.r_[first[1:], n]
    if op == "set":  # the last occurrence wins: one round of the last ones
        last = order[ends - 1]
        return _Steps(rounds=((indices[last], values[last]),), tails=())
    counts = ends - first
    occurrence = np.arange(n) - np.repeat(first, counts)
    # Round k holds every index's k-th occurrence: as wide as the number of indices that
    # occur more than k times. Rounds at least _ROUND_WIDTH wide are applied as arrays,
    # the rest index by index.
    by_count = np.sort(counts)[::-1]
    wide = int(by_count[_ROUND_WIDTH - 1]) if by_count.size >= _ROUND_WIDTH else 0
    in_rounds = occurrence < wide
    positions = order[in_rounds]
    round_of = occurrence[in_rounds]
    by_round = np.argsort(round_of, kind="stable")
    positions, round_of = positions[by_round], round_of[by_round]
    cuts = np.flatnonzero(np.r_[True, round_of[1:] != round_of[:-1]])
    rounds = tuple(
        (indices[chunk], values[chunk]) for chunk in np.split(positions, cuts[1:]) if chunk.size
    )
    tails: list[tuple[int, Float64Array]] = []
    for group in np.flatnonzero(counts > wide):
        start, end = int(first[group]) + wide, int(ends[group])
        tails.append((int(ordered[start]), values[order[start:end]]))
    return _Steps(rounds=rounds, tails=tuple(tails))


def apply_update(weights: Float64Array, update: RunUpdate) -> None:
    """Apply one update to ``weights`` in place; see NOTE [Run updates]."""
    steps = update.steps()
    alpha = update.alpha if update.alpha is not None else 0.0
    for idx, val in steps.rounds:
        check_deadline()
        if update.op == "set":
            weights[idx] = val
        elif update.op == "mul":
            weights[idx] = weights[idx] * val
        else:
            weights[idx] = (1.0 - alpha) * weights[idx] + alpha * val
    for position, tail in steps.tails:
        # Python floats are IEEE binary64 as numpy's are: the same products, bit for bit.
        w = float(weights[position])
        for start in range(0, tail.shape[0], _FOLD_STEP):
            check_deadline()
            chunk: list[float] = tail[start : start + _FOLD_STEP].tolist()
            if update.op == "mul":
                for v in chunk:
                    w = w * v
            else:
                for v in chunk:
                    w = (1.0 - alpha) * w + alpha * v
        weights[position] = w


#: A further check of an epoch's updated weights: raises :class:`InvalidRunUpdate`.
ResultCheck = Callable[[Float64Array], None]


def apply_updates(
    weights: Float64Array,
    updates: Iterable[RunUpdate],
    *,
    num_samples: int,
    replacement: bool,
    check: ResultCheck | None = None,
) -> Float64Array:
    """``weights`` of one epoch with that epoch's ``updates`` applied: the next epoch's.

    ``updates`` may come in any order; they are applied in the order of NOTE [Run updates].
    Raises :class:`InvalidRunUpdate` when the result cannot be drawn from (``check``: a
    further check of the result, for what the plan draws by, as a mixture's sources).
    """
    out = np.array(weights, dtype=np.float64, copy=True)
    # An overflow to inf is caught below, by the check of the result.
    with np.errstate(over="ignore", invalid="ignore"):
        for update in sorted(updates, key=lambda u: u.order):
            check_deadline()
            apply_update(out, update)
    check_result(out, num_samples=num_samples, replacement=replacement)
    if check is not None:
        check(out)
    return out


def replay(
    weights: Float64Array,
    updates: Iterable[RunUpdate],
    *,
    num_samples: int,
    replacement: bool,
    check: ResultCheck | None = None,
) -> tuple[Float64Array, bool]:
    """``weights`` of an epoch carried through ``updates`` of that epoch and later ones,
    each epoch's applied to the weights the epochs before made; and whether any update
    went in. Raises :class:`InvalidRunUpdate` when any epoch's result cannot be drawn from.
    """
    updated = False
    for _, group in groupby(sorted(updates, key=lambda u: u.epoch), key=lambda u: u.epoch):
        weights = apply_updates(
            weights, group, num_samples=num_samples, replacement=replacement, check=check
        )
        updated = True
    return weights, updated


@dataclass(frozen=True, eq=False)
class NextEpoch:
    """The weights of epoch ``e + 1`` as the updates of epoch ``e`` applied so far make
    them, and the key (:attr:`RunUpdate.key`) of the last of those updates."""

    weights: Float64Array
    last_key: tuple[int, int]

    def then(
        self,
        update: RunUpdate,
        *,
        num_samples: int,
        replacement: bool,
        check: ResultCheck | None = None,
    ) -> NextEpoch | None:
        """This state with ``update`` (of epoch ``e``) applied too, when it sorts after every
        update applied so far; ``None`` when it does not (replay the epoch instead).

        Raises :class:`InvalidRunUpdate` when the result cannot be drawn from.
        """
        if update.key < self.last_key:
            return None
        weights = apply_updates(
            self.weights, [update], num_samples=num_samples, replacement=replacement, check=check
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
