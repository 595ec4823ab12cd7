"""Batch plans: batches with an exact class make-up, any batch of any epoch in O(batch size).

A plan with ``batching`` serves *batches* (``GET /v1/plans/{id}/batches``) besides its
index stream. Two contracts:

``m_per_class`` (``{"kind": "m_per_class", "m": 4, "batch_size": 32}``)
    pytorch-metric-learning's ``MPerClassSampler(labels, m, batch_size)``: every batch
    holds ``batch_size // m`` distinct classes, ``m`` samples of each. Only classes with
    samples in the population take part; there must be at least ``batch_size // m`` of
    them, and ``m`` must divide ``batch_size`` (MPerClassSampler asserts both).
``class_quota`` (``{"kind": "class_quota", "quota": {"cat": 8, "dog": 8}}``)
    every batch holds exactly ``quota[c]`` samples of class ``c`` (``batch_size`` is the
    sum of the quotas); classes not named (or named with 0) never appear.

Within a class, members come without replacement: a class's draws of an epoch walk
through a fresh permutation of the class, then another, so every member is seen once
before any is seen again. A class smaller than its per-batch count is allowed: such a
batch holds repeats, as MPerClassSampler's ``safe_random_choice`` samples with
replacement in that case. Two definitions: ``batches-v1`` (a plan's default, so that every
request keeps naming the plan it named) lets a group run across the end of one
permutation into the next; ``batches-v2``, asked for by the plan's ``definitions``, never
does: a class with at least its per-batch count of samples never repeats one within its
group, a smaller class's group is a whole permutation then the start of the next, and
``m_per_class`` keeps the classes' appearances within one of each other after every batch.

``num_batches`` (plan field; default ``max(1, population_size // batch_size)``): the
batches of an epoch. That is MPerClassSampler's length with ``length_before_new_iter``
set to the population size (``list_size -= list_size % batch_size``, then
``list_size // batch_size`` batches): an epoch sees about as many samples as there are.

NOTE [batches-v1]
    This is the definition of a batch plan's batches. Any change to what it produces is a
    new ``BATCHES_VERSION``, never an edit of ``batches-v1``. It uses only unsigned 64-bit
    integer arithmetic (``+``, ``*`` modulo 2**64, ``^``, ``>>``, ``//``, ``%``) and
    Philox4x64-10, so it can be reimplemented anywhere.

    Inputs: the population's class codes ``c[0..P)``, the contract, ``num_batches``,
    ``seed`` and ``epoch``. ``M_k[0..n_k)`` are the positions of class ``k`` in
    increasing order.

    1. Mixing. ``mix(z)``: ``z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27;
       z *= 0x94D049BB133111EB; z ^= z >> 31`` (SplitMix64's finaliser, modulo 2**64).

    2. Keyed bijection ``perm(n, key, x)`` of ``[0, n)`` (``n >= 1``): a Feistel network
       on ``[0, s*s)`` with ``s`` the least integer with ``s*s >= n``, walked until the
       value falls in ``[0, n)`` (cycle walking; a bijection of ``[0, n)`` because the
       network is a bijection of ``[0, s*s)``). One pass from ``y``: ``L = y // s``,
       ``R = y % s``; for ``i = 1..4``: ``(L, R) = (R, (L + F_i(R)) % s)`` with
       ``F_i(R) = ((mix((key + i * 0x9E3779B97F4A7C15) ^ R) >> 32) * s) >> 32`` (``s`` is
       below 2**32, so ``F_i(R) < s``); then ``y = L * s + R``.
       ``perm(n, key, x)`` repeats passes from ``y = x`` until ``y < n``.

    3. Keys. Philox4x64-10 (as in NOTE [hierarchical-v1]) with ``key = (seed, epoch)``
       and ``T = 0x6261746368657331`` (ASCII ``batches1``) in the counter's last word:
       ``(K_class, K_member, _, _) = Philox(ctr = (0, 0, 0, T))`` for the epoch, and
       ``(K_round(r), _, _, _) = Philox(ctr = (r, 1, 0, T))`` for round ``r``.

    4. Members. The ``j``-th draw (from 0) of class ``k`` in an epoch is
       ``M_k[perm(n_k, mix(mix(K_member ^ k) + t), j % n_k)]`` with cycle ``t = j // n_k``:
       each cycle a fresh permutation of the class.

    5. ``class_quota``: ``q_k`` for the named classes, in class order; ``batch_size =
       sum(q_k)``. Batch ``b`` is, for each named class ``k`` in class order, its draws
       ``b * q_k .. b * q_k + q_k - 1``.

    6. ``m_per_class``: ``E[0..K)`` the classes with ``n_k > 0`` in class order,
       ``G = batch_size // m`` classes per batch, ``B = K // G`` batches per round and
       ``R = K - B * G`` classes left out of each round. The classes are ranked by
       ``E[perm(K, K_class, ·)]``; round ``r`` leaves out the ``R`` ranks
       ``(r * R + i) % K`` (``i < R``: the window moves on by ``R`` each round, so every
       class sits out equally often) and deals the other ``B * G`` in the order of
       ``perm(B * G, K_round(r), ·)``. Batch ``b`` is round ``r = b // B``, its
       ``u = b % B``-th group of ``G``: its ``g``-th class (``g < G``) is ``E[perm(K,
       K_class, h)]`` with rank ``h = (r * R + R + perm(B * G, K_round(r), u * G + g)) % K``,
       distinct within the batch. That class was dealt in ``r - W`` earlier rounds, where
       ``W = (r * R - h + K - 1) // K`` counts the earlier windows that left it out, so the
       batch holds its draws ``(r - W) * m .. (r - W) * m + m - 1``. Classes come in
       dealt order, ``m`` consecutive positions each.

    Batch ``b`` depends on ``(plan, seed, epoch, b)`` alone, at O(batch_size) cost, so a
    page of batches anywhere in an epoch costs what its length does.

NOTE [batches-v2]
    ``batches-v1`` keeps its streams for the plans that have it; a plan asks for this
    definition with ``"definitions": {"batches": "batches-v2"}``. It is ``batches-v1``
    (steps 1 to 3: the same mixing, permutation and keys) with two changes, which give
    three guarantees ``batches-v1`` does not keep:

    - a class with at least ``q`` samples (``q``: its per-batch count, ``m`` or its quota)
      never repeats a sample within its group of a batch;
    - a class with fewer than ``q`` samples gives a group that starts a fresh permutation
      of the class: every member ``floor(q / n)`` or ``ceil(q / n)`` times;
    - ``m_per_class``: after any number of whole batches of an epoch, the classes' counts
      of appearances differ by at most one.

    4'. Members. The ``t``-th group (from 0) of class ``k`` in an epoch, of ``q`` members,
       holds for ``i < q`` the member ``M_k[perm(n_k, mix(mix(K_member ^ k) + c), p)]``
       with, when ``n_k >= q``, ``G_k = n_k // q`` groups per cycle, cycle
       ``c = t // G_k`` and ``p = (t % G_k) * q + i`` (a group never crosses the end of a
       cycle; a cycle leaves ``n_k % q`` members out, other ones each cycle); when
       ``n_k < q``, ``c = t * ceil(q / n_k) + i // n_k`` and ``p = i % n_k`` (whole
       permutations, each group starting a new one).

    5'. ``class_quota``: batch ``b`` is, for each named class ``k`` in class order, its group
       ``t = b`` of ``q_k`` members.

    6'. ``m_per_class``: as step 6, but within round ``r`` the classes it owes go first.
       With ``o = (r * R) % K``, the ranks below ``o`` have been left out once more than
       the others in rounds ``0 .. r-1``; in step 6's dealt order ``h = (o + R + d) % K``
       (``d < B * G``) they are the last ``w = min(o, B * G)``. Round ``r`` deals slot
       ``z = u * G + g`` as ``d = B * G - w + perm(w, K_round(r), z)`` when ``z < w``, else
       ``d = perm(B * G - w, K_round2(r), z - w)``, where ``(K_round(r), K_round2(r), _, _) =
       Philox(ctr = (r, 1, 0, T))``. The class is ``E[perm(K, K_class, h)]``, its group
       ``t = r - W`` with ``W = (r * R - h + K - 1) // K`` as in step 6, of ``m`` members
       (step 4').
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from sampleplan.core.deadlines import check_deadline
from sampleplan.core.errors import InvalidPlanConfig
from sampleplan.core.streams import StreamRequest, cut_page, in_space, shard_positions

__all__ = [
    "BATCHES_V2",
    "BATCHES_VERSION",
    "BATCHES_VERSIONS",
    "BatchTable",
    "Batching",
    "ClassQuota",
    "MPerClass",
    "batch_page",
    "batching_from_json",
    "default_num_batches",
]

#: The definition a batch plan gets unless its ``definitions`` ask for another.
BATCHES_VERSION = "batches-v1"
#: NOTE [batches-v2].
BATCHES_V2 = "batches-v2"
#: Every definition this code draws, oldest first.
BATCHES_VERSIONS: tuple[str, ...] = (BATCHES_VERSION, BATCHES_V2)

Int64Array = npt.NDArray[np.int64]
UInt64Array = npt.NDArray[np.uint64]

#: Largest batch a plan may ask for (one batch is one response row).
MAX_BATCH_SIZE = 2**20
#: Samples per epoch (num_batches * batch_size), at most: every count stays int64.
MAX_EPOCH_SAMPLES = 2**62

_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_TAG = 0x6261746368657331  # "batches1"
_FEISTEL_ROUNDS = 4
_S30, _S27, _S31, _S32 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32)
_ROUND_CONSTANTS = tuple(
    np.uint64(i * 0x9E3779B97F4A7C15 % 2**64) for i in range(1, _FEISTEL_ROUNDS + 1)
)


# -- contracts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MPerClass:
    """``batch_size // m`` distinct classes per batch, ``m`` samples of each."""

    m: int
    batch_size: int
    kind: Literal["m_per_class"] = "m_per_class"

    @property
    def classes_per_batch(self) -> int:
        return self.batch_size // self.m

    def canonical(self) -> dict[str, Any]:
        return {"kind": self.kind, "m": self.m, "batch_size": self.batch_size}


@dataclass(frozen=True)
class ClassQuota:
    """Exactly ``quota[name]`` samples of each named class in every batch."""

    quota: tuple[tuple[str, int], ...]
    kind: Literal["class_quota"] = "class_quota"

    @property
    def batch_size(self) -> int:
        return sum(count for _, count in self.quota)

    def canonical(self) -> dict[str, Any]:
        return {"kind": self.kind, "quota": dict(self.quota)}


Batching = MPerClass | ClassQuota


def _positive_int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidPlanConfig(f"batching.{name} should be an integer, but got {value!r}")
    if value <= 0:
        raise InvalidPlanConfig(
            f"batching.{name} should be a positive integer value, but got {name}={value}"
        )
    return value


def _check_keys(value: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise InvalidPlanConfig(
            f"batching of kind {value['kind']!r} takes {', '.join(allowed)}; "
            f"unknown: {', '.join(unknown)}"
        )
    missing = [key for key in allowed if key not in value]
    if missing:
        raise InvalidPlanConfig(f"batching of kind {value['kind']!r} needs {', '.join(missing)}")


def batching_from_json(value: object) -> Batching | None:
    """The contract a plan request (or a stored canonical config) names; ``None`` for null.

    Raises:
        InvalidPlanConfig: unknown kind, unknown or missing keys, wrong types, ``m`` not
            dividing ``batch_size``, quotas that are negative or sum to 0.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidPlanConfig(f"batching should be an object or null, but got {value!r}")
    kind = value.get("kind")
    if kind == "m_per_class":
        _check_keys(value, ("kind", "m", "batch_size"))
        m = _positive_int(value["m"], "m")
        batch_size = _positive_int(value["batch_size"], "batch_size")
        if batch_size > MAX_BATCH_SIZE:
            raise InvalidPlanConfig(
                f"batching.batch_size should be at most 2**20, but got batch_size={batch_size}"
            )
        if batch_size % m:
            raise InvalidPlanConfig(
                "m must divide batch_size without any remainder (as in MPerClassSampler), "
                f"but got m={m}, batch_size={batch_size}"
            )
        return MPerClass(m=m, batch_size=batch_size)
    if kind == "class_quota":
        _check_keys(value, ("kind", "quota"))
        quota = value["quota"]
        if not isinstance(quota, Mapping) or not quota:
            raise InvalidPlanConfig(
                "batching.quota should be a non-empty object {class name: count}, "
                f"but got {quota!r}"
            )
        counts: dict[str, int] = {}
        for name, count in quota.items():
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise InvalidPlanConfig(
                    f"batching.quota counts should be non-negative integers, but class "
                    f"{name!r} has {count!r}"
                )
            if count:
                counts[str(name)] = count
        total = sum(counts.values())
        if total == 0:
            raise InvalidPlanConfig("batching.quota should ask for at least one sample per batch")
        if total > MAX_BATCH_SIZE:
            raise InvalidPlanConfig(
                f"batching.quota asks for {total} samples per batch; at most 2**20 are allowed"
            )
        return ClassQuota(quota=tuple(sorted(counts.items())))
    raise InvalidPlanConfig(
        f"batching.kind should be 'm_per_class' or 'class_quota', but got {kind!r}"
    )


def default_num_batches(population_size: int, batch_size: int) -> int:
    """``max(1, population_size // batch_size)``: about one pass over the population."""
    return max(1, population_size // batch_size)


def check_num_batches(num_batches: int, batch_size: int) -> None:
    """Refuse a ``num_batches`` that is not positive or makes an epoch over 2**62 samples."""
    if num_batches <= 0:
        raise InvalidPlanConfig(
            f"num_batches should be a positive integer value, but got num_batches={num_batches}"
        )
    if num_batches * batch_size > MAX_EPOCH_SAMPLES:
        raise InvalidPlanConfig(
            f"num_batches * batch_size should be at most 2**62, but got "
            f"{num_batches} * {batch_size}"
        )


# -- the definition's building blocks ------------------------------------------------------


def mix64(z: UInt64Array) -> UInt64Array:
    """NOTE [batches-v1] step 1 (a new array; ``z`` is not changed)."""
    out = np.array(z, dtype=np.uint64, copy=True)
    _mix_in_place(out, np.empty_like(out))
    return out


def _mix_in_place(z: UInt64Array, scratch: UInt64Array) -> None:
    # In place, with one scratch buffer: a whole epoch mixes tens of millions of words.
    np.right_shift(z, _S30, out=scratch)
    z ^= scratch
    z *= _MIX_1
    np.right_shift(z, _S27, out=scratch)
    z ^= scratch
    z *= _MIX_2
    np.right_shift(z, _S31, out=scratch)
    z ^= scratch


def _ceil_sqrt(n: Int64Array) -> Int64Array:
    """The least ``s`` with ``s * s >= n``, exactly (the float estimate is corrected)."""
    s = np.sqrt(n.astype(np.float64)).astype(np.int64)
    s += s * s < n
    s -= (s > 0) & ((s - 1) * (s - 1) >= n)
    return s


def _feistel_pass(y: UInt64Array, s: UInt64Array, key: UInt64Array) -> UInt64Array:
    left = y // s
    right = y - left * s
    f = np.empty_like(y)
    scratch = np.empty_like(y)
    for constant in _ROUND_CONSTANTS:
        np.add(key, constant, out=f)
        f ^= right
        _mix_in_place(f, scratch)
        # F_i(R) < s by multiply-high (s < 2**32): no division, and L + F < 2s.
        f >>= _S32
        f *= s
        f >>= _S32
        f += left
        # (L + F) % s for L + F < 2s: unsigned f - s wraps above f exactly when f < s.
        np.subtract(f, s, out=scratch)
        np.minimum(f, scratch, out=f)
        left, right, f = right, f, left
    right += left * s
    return right


def keyed_permutation(x: Int64Array, n: Int64Array | int, key: UInt64Array | int) -> Int64Array:
    """``perm(n, key, x)`` of NOTE [batches-v1] step 2, elementwise (broadcasting).

    ``x`` must lie in ``[0, n)``. Expected passes: ``s*s / n``, below ``1 + 3/sqrt(n)``.
    """
    x_arr, n_arr, key_arr = np.broadcast_arrays(
        np.asarray(x, dtype=np.int64),
        np.asarray(n, dtype=np.int64),
        np.asarray(key, dtype=np.uint64),
    )
    n_flat = n_arr.reshape(-1)
    return _permute(x_arr.reshape(-1), n_flat, _ceil_sqrt(n_flat), key_arr.reshape(-1)).reshape(
        x_arr.shape
    )


def _permute(x: Int64Array, n: Int64Array, s: Int64Array, key: UInt64Array) -> Int64Array:
    """:func:`keyed_permutation` on flat arrays of one length, ``s`` given."""
    n_u, s_u = n.view(np.uint64), s.view(np.uint64)
    y = _feistel_pass(x.astype(np.uint64), s_u, key)
    pending = np.flatnonzero(y >= n_u)  # cycle walking: few, and fewer each pass
    while pending.shape[0]:
        y[pending] = _feistel_pass(y[pending], s_u[pending], key[pending])
        pending = pending[y[pending] >= n_u[pending]]
    return y.view(np.int64)


def _philox_words(seed: int, epoch: int, first: int, word1: int, count: int) -> UInt64Array:
    """``count`` Philox4x64-10 blocks at counters ``(first + i, word1, 0, T)``, one per row."""
    key = np.array([seed, epoch], dtype=np.uint64)
    counter = (first + (word1 << 64) + (_TAG << 192) - 1) % 2**256
    words: UInt64Array = (
        np.random.Philox(counter=counter, key=key).random_raw(4 * count).reshape(count, 4)
    )
    return words


def _round_keys(seed: int, epoch: int, rounds: Int64Array, words: int = 1) -> UInt64Array:
    """``K_round(r)`` for each of ``rounds`` (``words=2``: and ``K_round2(r)``, a last axis
    of 2), in O(len(rounds)) whatever their spread.

    Consecutive rounds are consecutive Philox counters, drawn in one call; a page that
    wraps around the end of an epoch (a padded rank) asks for rounds far apart, which are
    drawn one by one rather than everything in between.
    """
    first, last = int(rounds.min()), int(rounds.max())
    if last - first < 4 * rounds.shape[0] + 64:
        block = _philox_words(seed, epoch, first, 1, last - first + 1)[rounds - first]
    else:
        wanted, where = np.unique(rounds, return_inverse=True)
        keys = np.stack([_philox_words(seed, epoch, int(r), 1, 1)[0] for r in wanted])
        block = keys[where.reshape(-1)]
    out: UInt64Array = block[..., 0] if words == 1 else block[..., :words]
    return out


# -- tables --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BatchTable:
    """What a plan's batches are drawn from, built once per plan (read-only arrays).

    Attributes:
        batching: the contract.
        num_batches: batches per epoch.
        classes: the classes that take part, in class order (codes): the named ones for
            ``class_quota``, those with samples for ``m_per_class``.
        counts: ``n_k`` of every class of the dataset (0 for classes not in the population).
        offsets: class ``k``'s members are ``members[offsets[k]:offsets[k + 1]]``.
        members: population positions sorted by class, then position.
        sqrt_counts: the Feistel side ``s`` of each class's member permutation.
        slot_class: ``class_quota`` only: the class of each position of a batch.
        slot_draw: ``class_quota`` only: the position's draw within its class's quota.
        slot_quota: ``class_quota`` only: the quota of the position's class.
        version: the definition drawn, NOTE [batches-v1] or NOTE [batches-v2].
    """

    batching: Batching
    num_batches: int
    classes: Int64Array
    counts: Int64Array
    offsets: Int64Array
    members: Int64Array
    sqrt_counts: Int64Array
    slot_class: Int64Array | None = None
    slot_draw: Int64Array | None = None
    slot_quota: Int64Array | None = None
    version: str = BATCHES_VERSION

    @classmethod
    def build(
        cls,
        codes: npt.ArrayLike,
        class_names: Sequence[object],
        batching: Batching,
        num_batches: int | None,
        version: str = BATCHES_VERSION,
    ) -> BatchTable:
        """Check ``batching`` against the population's class ``codes`` and prepare it.

        Raises:
            InvalidPlanConfig: quotas naming classes the dataset lacks or that have no
                sample in the population; fewer classes with samples than
                ``batch_size // m``; a bad ``num_batches``.
        """
        codes_arr = np.asarray(codes).astype(np.int64, copy=False)
        num_classes = len(class_names)
        counts = np.bincount(codes_arr, minlength=num_classes).astype(np.int64)
        size = int(codes_arr.shape[0])
        resolved = (
            default_num_batches(size, batching.batch_size) if num_batches is None else num_batches
        )
        check_num_batches(resolved, batching.batch_size)
        slot_class = slot_draw = slot_quota = None
        if isinstance(batching, MPerClass):
            classes = np.flatnonzero(counts).astype(np.int64)
            needed = batching.classes_per_batch
            if classes.shape[0] < needed:
                raise InvalidPlanConfig(
                    f"m * (number of classes with samples) must be >= batch_size (as in "
                    f"MPerClassSampler): batches of {batching.batch_size} with m={batching.m} "
                    f"need {needed} classes, but the population has samples of "
                    f"{classes.shape[0]}"
                )
        else:
            by_name = {str(name): code for code, name in enumerate(class_names)}
            unknown = [name for name, _ in batching.quota if name not in by_name]
            if unknown:
                known = ", ".join(repr(str(c)) for c in class_names[:10])
                raise InvalidPlanConfig(
                    f"batching.quota names classes the dataset does not have: "
                    f"{', '.join(map(repr, unknown[:5]))}; its classes are {known}"
                    + (" ..." if num_classes > 10 else "")
                )
            pairs = sorted((by_name[name], count) for name, count in batching.quota)
            empty = [str(class_names[code]) for code, _ in pairs if counts[code] == 0]
            if empty:
                raise InvalidPlanConfig(
                    f"batching.quota asks for classes with no sample in the population: "
                    f"{', '.join(map(repr, empty[:5]))}"
                )
            classes = np.array([code for code, _ in pairs], dtype=np.int64)
            quota = np.array([count for _, count in pairs], dtype=np.int64)
            slot_class = np.repeat(classes, quota)
            starts = np.repeat(np.cumsum(quota) - quota, quota)
            slot_draw = np.arange(batching.batch_size, dtype=np.int64) - starts
            slot_quota = np.repeat(quota, quota)
        offsets = np.zeros(num_classes + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        members = np.argsort(codes_arr, kind="stable").astype(np.int64)
        sqrt_counts = _ceil_sqrt(counts)
        arrays = (classes, counts, offsets, members, sqrt_counts, slot_class, slot_draw, slot_quota)
        for array in arrays:
            if array is not None:
                array.setflags(write=False)
        return cls(
            batching,
            resolved,
            classes,
            counts,
            offsets,
            members,
            sqrt_counts,
            slot_class,
            slot_draw,
            slot_quota,
            version,
        )

    @property
    def batch_size(self) -> int:
        return self.batching.batch_size

    def draw(self, seed: int, epoch: int, batch_indices: npt.ArrayLike) -> Int64Array:
        """Batches ``batch_indices`` of the epoch: ``(len, batch_size)`` population positions.

        See NOTE [batches-v1]; each batch costs O(batch_size) wherever it is.

        Raises:
            ValueError: ``seed`` or ``epoch`` outside ``[0, 2**64)``, or a batch index
                outside ``[0, num_batches)``.
        """
        seed, epoch = operator.index(seed), operator.index(epoch)
        if not (0 <= seed < 2**64 and 0 <= epoch < 2**64):
            raise ValueError(f"seed and epoch should be in [0, 2**64), got {seed}, {epoch}")
        b = np.asarray(batch_indices, dtype=np.int64).reshape(-1)
        if b.shape[0] and not (int(b.min()) >= 0 and int(b.max()) < self.num_batches):
            raise ValueError(f"batch indices should be in [0, {self.num_batches})")
        if b.shape[0] == 0:
            return np.empty((0, self.batch_size), dtype=np.int64)
        k_class, k_member = (int(w) for w in _philox_words(seed, epoch, 0, 0, 1)[0, :2])
        if self.version == BATCHES_V2:
            return self._draw_v2(seed, epoch, b, k_class, k_member)
        if isinstance(self.batching, MPerClass):
            cls_codes, draws = self._m_per_class(seed, epoch, b, k_class)
        else:
            assert self.slot_class is not None and self.slot_draw is not None
            assert self.slot_quota is not None
            cls_codes = np.broadcast_to(self.slot_class, (b.shape[0], self.batch_size))
            draws = b[:, None] * self.slot_quota[None, :] + self.slot_draw[None, :]
        return self._members_at(k_member, cls_codes, draws)

    def _m_per_class(
        self, seed: int, epoch: int, b: Int64Array, k_class: int
    ) -> tuple[Int64Array, Int64Array]:
        """Class and draw index of every position of batches ``b`` (step 6)."""
        assert isinstance(self.batching, MPerClass)
        m, g = self.batching.m, self.batching.classes_per_batch
        k = int(self.classes.shape[0])
        per_round = k // g
        left_out = k - per_round * g
        rounds = b // per_round
        slots = (b % per_round)[:, None] * g + np.arange(g, dtype=np.int64)[None, :]
        dealt = keyed_permutation(slots, per_round * g, _round_keys(seed, epoch, rounds)[:, None])
        window = rounds * left_out  # r * R: int64, below num_batches * batch_size
        rank = ((window % k)[:, None] + left_out + dealt) % k
        cls_codes = self.classes[keyed_permutation(rank, k, k_class)]
        prior = rounds[:, None] - (window[:, None] - rank + k - 1) // k
        step = np.arange(m, dtype=np.int64)
        draws = (prior[:, :, None] * m + step).reshape(b.shape[0], g * m)
        return np.repeat(cls_codes, m, axis=1), draws

    def _draw_v2(
        self, seed: int, epoch: int, b: Int64Array, k_class: int, k_member: int
    ) -> Int64Array:
        """NOTE [batches-v2]: class, group and place in the group of every position."""
        if isinstance(self.batching, MPerClass):
            m, g = self.batching.m, self.batching.classes_per_batch
            k = int(self.classes.shape[0])
            per_round = k // g
            dealt_total = per_round * g
            left_out = k - dealt_total
            rounds = b // per_round
            slots = (b % per_round)[:, None] * g + np.arange(g, dtype=np.int64)[None, :]
            window = rounds * left_out  # r * R: int64, below num_batches * batch_size
            owed = np.minimum(window % k, dealt_total)[:, None]
            keys = _round_keys(seed, epoch, rounds, words=2)
            first = slots < owed
            dealt = keyed_permutation(
                np.where(first, slots, slots - owed),
                np.where(first, owed, dealt_total - owed),
                np.where(first, keys[:, None, 0], keys[:, None, 1]),
            )
            dealt = np.where(first, dealt_total - owed + dealt, dealt)
            rank = ((window % k)[:, None] + left_out + dealt) % k
            cls = self.classes[keyed_permutation(rank, k, k_class)]
            group = rounds[:, None] - (window[:, None] - rank + k - 1) // k
            cls_codes = np.repeat(cls, m, axis=1)
            groups = np.repeat(group, m, axis=1)
            places = np.broadcast_to(np.tile(np.arange(m, dtype=np.int64), g), cls_codes.shape)
            sizes = np.full(cls_codes.shape, m, dtype=np.int64)
        else:
            assert self.slot_class is not None and self.slot_draw is not None
            assert self.slot_quota is not None
            shape = (b.shape[0], self.batch_size)
            cls_codes = np.broadcast_to(self.slot_class, shape)
            groups = np.broadcast_to(b[:, None], shape)
            places = np.broadcast_to(self.slot_draw, shape)
            sizes = np.broadcast_to(self.slot_quota, shape)
        n = self.counts[cls_codes]
        whole = n >= sizes
        per_cycle = np.maximum(n // sizes, 1)
        cycle = np.where(whole, groups // per_cycle, groups * ((sizes + n - 1) // n) + places // n)
        within = np.where(whole, (groups % per_cycle) * sizes + places, places % n)
        return self._members_in_cycle(k_member, cls_codes, cycle, within)

    def _members_in_cycle(
        self, k_member: int, cls_codes: Int64Array, cycle: Int64Array, within: Int64Array
    ) -> Int64Array:
        """Member ``within`` of cycle ``cycle`` of class ``cls_codes``, elementwise (step 4)."""
        n = self.counts[cls_codes]
        num_classes = self.counts.shape[0]
        if cls_codes.size >= num_classes:
            table = mix64(np.arange(num_classes, dtype=np.uint64) ^ np.uint64(k_member))
            key = table[cls_codes]
        else:
            key = mix64(np.asarray(cls_codes, dtype=np.uint64) ^ np.uint64(k_member))
        key += np.ascontiguousarray(cycle, dtype=np.int64).view(np.uint64)
        _mix_in_place(key, np.empty_like(key))
        shape = cls_codes.shape
        place = _permute(
            np.ascontiguousarray(within, dtype=np.int64).reshape(-1),
            n.reshape(-1),
            self.sqrt_counts[cls_codes].reshape(-1),
            key.reshape(-1),
        ).reshape(shape)
        out: Int64Array = self.members[self.offsets[cls_codes] + place]
        return out

    def _members_at(self, k_member: int, cls_codes: Int64Array, draws: Int64Array) -> Int64Array:
        """Step 4: the ``draws``-th draw of class ``cls_codes``, elementwise."""
        n = self.counts[cls_codes]
        cycle = draws // n
        num_classes = self.counts.shape[0]
        if cls_codes.size >= num_classes:
            # A long page: mix(K_member ^ k) once per class, gathered per position.
            table = mix64(np.arange(num_classes, dtype=np.uint64) ^ np.uint64(k_member))
            key = table[cls_codes]
        else:  # a short page costs its own size, not the number of classes
            key = mix64(np.asarray(cls_codes, dtype=np.uint64) ^ np.uint64(k_member))
        key += cycle.view(np.uint64)
        _mix_in_place(key, np.empty_like(key))
        shape = draws.shape
        within = _permute(
            (draws - cycle * n).reshape(-1),
            n.reshape(-1),
            self.sqrt_counts[cls_codes].reshape(-1),
            key.reshape(-1),
        ).reshape(shape)
        out: Int64Array = self.members[self.offsets[cls_codes] + within]
        return out


def batch_page(
    table: BatchTable, seed: int, request: StreamRequest, population: Int64Array | None
) -> Int64Array:
    """A page of a rank's batches, ``(rows, batch_size)``, in the requested index space.

    ``request``'s offset and limit count batches. Ranks take whole batches as
    ``DistributedSampler`` takes indices (NOTE [Sharding] in ``streams.py``): padded by
    repeating from the first batch to a multiple of ``world_size``, then rank ``r`` takes
    ``batches[r::world_size]``, so every rank gets ``ceil(num_batches / world_size)``.
    The service and the client's offline fallback both cut pages here.
    """
    positions = shard_positions(table.num_batches, request)
    return in_space(table.draw(seed, request.epoch, positions), request.space, population)


#: Values of batches :func:`batch_epoch` draws at a time (a few milliseconds of drawing),
#: its deadline checked between them.
_EPOCH_CHUNK_VALUES = 1 << 16


def batch_epoch(table: BatchTable, seed: int, epoch: int) -> Int64Array:
    """All of an epoch's batches, ``(num_batches, batch_size)`` population positions.

    Row ``b`` is batch ``b`` as :meth:`BatchTable.draw` draws it alone (a batch depends on
    its index only, NOTE [batches-v1]), so :func:`cut_batch_page` of this matrix is
    :func:`batch_page`. Drawn a chunk of batches at a time, the deadline (NOTE
    [Deadlines]) checked before each.
    """
    out = np.empty((table.num_batches, table.batch_size), dtype=np.int64)
    step = max(1, _EPOCH_CHUNK_VALUES // table.batch_size)
    for first in range(0, table.num_batches, step):
        check_deadline()
        stop = min(table.num_batches, first + step)
        out[first:stop] = table.draw(seed, epoch, np.arange(first, stop, dtype=np.int64))
    return out


def cut_batch_page(
    epoch_batches: Int64Array, request: StreamRequest, population: Int64Array | None
) -> Int64Array:
    """:func:`batch_page` cut from :func:`batch_epoch`'s matrix of the request's epoch:
    its rows dealt as :func:`batch_page` deals batches (the rank's rows a strided view
    where they do not wrap into the padding), then mapped to ``space``."""
    return cut_page(epoch_batches, int(epoch_batches.shape[0]), request, population)
