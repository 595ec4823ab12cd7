"""Source orders: which element of a source the mixture takes the k-th time it takes from it.

NOTE [Source orders]
    A mixture takes from source ``i`` (``n`` elements) again and again; the ``k``-th take
    (``k = 0, 1, ...``, counted over the whole stream) is element ``order_i(k)``:

    - ``"sequential"``: ``k mod n``.
    - ``{"shuffle_seed": s}``: ``numpy.random.default_rng(s).permutation(n)[k mod n]``, which
      is what Hugging Face's ``Dataset.shuffle(seed=s)`` does to the rows, cycled.
    - a plan as a source (:class:`PlanStream`): ``order_i(k)`` is position ``k`` of the
      plan's own stream, its epochs 0, 1, ... concatenated, mapped to its dataset's indices
      (``n`` is then the dataset's length, for ``ConcatDataset``'s offsets).
    - ``"reshuffled"``: pass ``q = k // n`` through the source is a fresh permutation
      ``pi_{seed, i, q}`` of ``range(n)`` and ``order_i(k) = pi(k mod n)``, so no element
      repeats before every element of the source has been taken. ``pi`` is a keyed
      bijection computed per element (no table), NOTE [Keyed permutation].

NOTE [Keyed permutation]
    ``pi_key`` on ``range(n)``: let ``h = max(1, ceil(bits(n - 1) / 2))`` and ``mask = 2**h - 1``.
    A balanced Feistel network of 4 rounds on ``2h``-bit words ``x = (L << h) | R``:
    round ``j`` maps ``(L, R)`` to ``(R, L ^ (mix(key ^ mix(j + 1) ^ R) & mask))``. Where the
    result is ``>= n`` the network is applied again (cycle walking), so the map is a
    bijection of ``range(n)``. ``mix`` is SplitMix64's finaliser on uint64 (wrapping):
    ``z += 0x9E3779B97F4A7C15; z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9;
    z = (z ^ z >> 27) * 0x94D049BB133111EB; z ^ z >> 31``. The key of pass ``q`` of source
    ``i`` under seed ``s`` is ``mix(mix(mix(s) ^ i) ^ q)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from sampleplan.core.errors import InvalidPlanConfig
from sampleplan.core.lru import LRUCache
from sampleplan.core.mixtures import kernels

if TYPE_CHECKING:
    from sampleplan.core.prepared import PreparedPlan

Int64Array = npt.NDArray[np.int64]
UInt64Array = npt.NDArray[np.uint64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_ROUNDS = 4

#: Permutations of ``shuffle_seed`` sources kept in memory (8 bytes a row).
_PERMUTATIONS: LRUCache[tuple[int, int], Int64Array] = LRUCache(
    256 << 20, size=lambda a: int(a.nbytes)
)


def mix(z: UInt64Array) -> UInt64Array:
    """SplitMix64's finaliser, elementwise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def mix_int(value: int) -> int:
    """:func:`mix` of one integer (taken modulo 2**64)."""
    return int(mix(np.array([value % 2**64], dtype=np.uint64))[0])


def keyed_permutation(n: Int64Array, keys: UInt64Array, x: Int64Array) -> Int64Array:
    """``pi_key(x)`` on ``range(n)`` elementwise (arrays of one shape); NOTE [Keyed permutation]."""
    round_keys = [mix(np.array([j + 1], dtype=np.uint64))[0] for j in range(_ROUNDS)]
    if kernels.feistel is not None:
        out = np.empty(x.shape[0], dtype=np.int64)
        kernels.feistel(
            n.astype(np.int64),
            keys.astype(np.uint64),
            x.astype(np.int64),
            np.array(round_keys),
            out,
        )
        return out
    sizes, inverse = np.unique(n, return_inverse=True)
    halves = [max(1, -(-(int(size) - 1).bit_length() // 2)) for size in sizes.tolist()]
    half = np.array(halves, dtype=np.uint64)[inverse.reshape(-1)]
    mask = (np.uint64(1) << half) - np.uint64(1)
    limit = n.astype(np.uint64)
    y = x.astype(np.uint64)
    todo = np.flatnonzero(limit > 1)
    y[limit <= 1] = 0
    while todo.shape[0]:
        sub, key, shift, m = y[todo], keys[todo], half[todo], mask[todo]
        left, right = sub >> shift, sub & m
        for rk in round_keys:
            left, right = right, left ^ (mix(key ^ rk ^ right) & m)
        sub = (left << shift) | right
        y[todo] = sub
        todo = todo[sub >= limit[todo]]
    return y.astype(np.int64)


@dataclass(frozen=True)
class ShuffleSeed:
    """Order ``{"shuffle_seed": s}``: Hugging Face's ``Dataset.shuffle(seed=s)``, cycled."""

    seed: int


@dataclass(frozen=True, eq=False)
class PlanStream:
    """A plan as a source: its ``k``-th take is position ``k`` of the plan's stream, its
    epochs 0, 1, ... concatenated, in its dataset's space (NOTE [Source orders])."""

    plan: PreparedPlan

    def __post_init__(self) -> None:
        if self.plan.config.epoch_lengths_vary:
            raise InvalidPlanConfig(
                "a plan whose epochs differ in length (dynamic_balance with num_samples null) "
                "cannot be a source yet: give it a num_samples"
            )

    def elements(self, takes: Int64Array) -> Int64Array:
        """Dataset indices at stream positions ``takes`` (increasing, as a source's are)."""
        n = self.plan.num_samples
        epochs = takes // n
        out = np.empty(takes.shape[0], dtype=np.int64)
        for epoch in np.unique(epochs).tolist():
            at = np.flatnonzero(epochs == epoch)
            positions = takes[at] - epoch * n
            drawn = self.plan.draw_positions(int(epoch), positions)
            population = self.plan.population
            out[at] = drawn if population is None else population[drawn]
        return out


SourceOrder = Literal["sequential", "reshuffled"] | ShuffleSeed | PlanStream


def order_from_json(value: Any, name: str) -> SourceOrder:
    """A source's ``order`` from its JSON form (``InvalidPlanConfig`` for anything else)."""
    if value == "sequential" or value == "reshuffled":
        return "sequential" if value == "sequential" else "reshuffled"
    if isinstance(value, Mapping) and set(value) == {"shuffle_seed"}:
        seed = value["shuffle_seed"]
        if isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**63:
            return ShuffleSeed(seed)
        raise InvalidPlanConfig(
            f"source {name!r}: shuffle_seed should be an integer in [0, 2**63), got {seed!r}"
        )
    raise InvalidPlanConfig(
        f'source {name!r}: unknown order {value!r}; expected "sequential", "reshuffled" '
        'or {"shuffle_seed": <int>}'
    )


def order_to_json(order: SourceOrder) -> str | dict[str, int]:
    """The canonical JSON form of a source order (a plan source's is ``"plan"``: the plan's
    id names it)."""
    if isinstance(order, PlanStream):
        return "plan"
    if isinstance(order, ShuffleSeed):
        return {"shuffle_seed": order.seed}
    return order


def shuffle_permutation(seed: int, n: int) -> Int64Array:
    """``numpy.random.default_rng(seed).permutation(n)`` (kept in a bounded cache)."""
    return _PERMUTATIONS.get_or_build(
        (seed, n), lambda: np.random.default_rng(seed).permutation(n).astype(np.int64)
    )


def source_elements(
    orders: tuple[SourceOrder, ...],
    lengths: Int64Array,
    seed: int,
    sources: Int64Array,
    takes: Int64Array,
) -> Int64Array:
    """Element ``order_i(k)`` for each (source ``i``, take ``k``) pair; NOTE [Source orders].

    ``seed`` keys ``reshuffled`` passes; ``sources`` are positions in the mixture.
    """
    all_reshuffled = all(o == "reshuffled" for o in orders)
    if all_reshuffled and kernels.reshuffle is not None:
        out = np.empty(takes.shape[0], dtype=np.int64)
        _reshuffle_kernel(lengths, seed, sources, takes, out)
        return out
    n = lengths[sources]
    within = takes % n
    kinds = np.array([_kind(o) for o in orders], dtype=np.int8)[sources]
    out = within.copy()
    shuffled = np.flatnonzero(kinds == 1)
    if shuffled.shape[0] and kernels.reshuffle is not None:
        part = np.empty(shuffled.shape[0], dtype=np.int64)
        _reshuffle_kernel(lengths, seed, sources[shuffled], takes[shuffled], part)
        out[shuffled] = part
    elif shuffled.shape[0]:
        src = sources[shuffled]
        keys = _pass_keys_of(seed, src, takes[shuffled] // n[shuffled])
        out[shuffled] = keyed_permutation(n[shuffled], keys, within[shuffled])
    seeded = np.flatnonzero(kinds == 2)
    if seeded.shape[0]:
        for source in np.unique(sources[seeded]).tolist():
            order = orders[source]
            assert isinstance(order, ShuffleSeed)
            at = seeded[sources[seeded] == source]
            out[at] = shuffle_permutation(order.seed, int(lengths[source]))[within[at]]
    planned = np.flatnonzero(kinds == 3)
    if planned.shape[0]:
        for source in np.unique(sources[planned]).tolist():
            stream = orders[source]
            assert isinstance(stream, PlanStream)
            at = planned[sources[planned] == source]
            out[at] = stream.elements(takes[at])
    return out


def _reshuffle_kernel(
    lengths: Int64Array, seed: int, sources: Int64Array, takes: Int64Array, out: Int64Array
) -> None:
    """``reshuffled`` elements by the compiled kernel (per source: length, half width, key)."""
    halves = np.array(
        [max(1, -(-(int(n) - 1).bit_length() // 2)) for n in lengths.tolist()], dtype=np.int64
    )
    base_keys = mix(np.uint64(mix_int(seed)) ^ np.arange(lengths.shape[0], dtype=np.uint64))
    kernels.reshuffle(
        lengths.astype(np.int64),
        halves,
        base_keys,
        np.array(_round_keys(), dtype=np.uint64),
        sources.astype(np.int64),
        takes.astype(np.int64),
        out,
    )


def _round_keys() -> list[np.uint64]:
    return [mix(np.array([j + 1], dtype=np.uint64))[0] for j in range(_ROUNDS)]


def _kind(order: SourceOrder) -> int:
    if isinstance(order, ShuffleSeed):
        return 2
    if isinstance(order, PlanStream):
        return 3
    return 0 if order == "sequential" else 1


def _pass_keys_of(seed: int, sources: Int64Array, passes: Int64Array) -> UInt64Array:
    base = mix(np.uint64(mix_int(seed)) ^ sources.astype(np.uint64))
    return mix(base ^ passes.astype(np.uint64))
