"""The mixing algorithms: one object each, and the drawer of a mixture's stream.

NOTE [Mixing algorithms]
    A mixture's ``mixing.algorithm`` becomes an object of :data:`MIXING_ALGORITHMS`, the
    mixtures' registry, shaped as the algorithms of NOTE [Drawing algorithms] in
    ``algorithms.py`` (a name, a version recorded in the plan's ``versions``, ``prepare``
    giving a :class:`~sampleplan.core.algorithms.Drawer`). It is a registry of its own
    because a plan over one dataset must not accept a mixing name. A drawer answers
    ``ConcatDataset`` positions ``offsets[source] + order_source(take)`` for positions
    ``[start, stop)`` of an epoch, and :meth:`MixtureDrawer.sources_range` the sources
    and takes themselves (for per-source accounting).

NOTE [hf-interleave]
    Exactly ``datasets.interleave_datasets(ds, probabilities=p, seed=seed + e,
    stopping_strategy=...)`` on map-style datasets, epoch ``e``: position ``k`` takes from
    source ``searchsorted(cdf, u_k, side="right")`` where ``u_k`` is the ``k``-th double of
    ``numpy.random.default_rng(seed + e).random()`` and ``cdf = cumsum(p) / cumsum(p)[-1]``
    (``Generator.choice(len(ds), size=1000, p=p)`` in blocks consumes the doubles one per
    draw). Each source is read in its order from take 0 every epoch (``reshuffled`` passes
    keyed by ``seed + e``). The epoch ends after
    the draw at which the first (``first_exhausted``) or the last (``all_exhausted``) source
    of positive probability reaches its length. The counts of every source are kept every
    ``checkpoint`` positions (the generator is advanced there with ``PCG64.advance``), so a
    page anywhere costs at most a checkpoint's draws.

NOTE [megatron-blend]
    Megatron-core's ``build_blending_indices``: at position ``k`` the source ``i`` with the
    largest ``p[i] * max(k, 1) - taken[i]`` (the first on ties; float64, ``p = w / sum(w)``
    with numpy), over one infinite sequence; epoch ``e`` is positions ``[e N, (e + 1) N)``,
    and a source's takes continue across epochs. The rule depends only on ``k`` and the
    counts, so counts kept every ``checkpoint`` positions resume it anywhere (up to
    ``MAX_SEQUENTIAL`` positions; the same bound caps an ``hf-interleave`` epoch).

NOTE [mixture-v1]
    Seeded, one infinite stream; epoch ``e`` is positions ``[e N, (e + 1) N)``. Positions
    are cut into windows of ``B = block``. With ``D = 30`` and ``q = p / sum(p)`` in exact
    rational arithmetic (``p`` as float64 values), each source's per-window ideal ``q[i] B``
    is represented by the integer ``T[i]``: ``floor(q[i] B 2**D)``, the shortfall to
    ``sum(T) = B 2**D`` given one each to the largest remainders (ties: lower index). Then
    ``lo = T >> D``, ``F = T mod 2**D`` and ``r = sum(F) / 2**D`` (an integer): every window
    takes ``lo[i]`` from each source plus ``r`` extras, at most
    one per source. The realised proportion is ``p^[i] = T[i] / (B 2**D)``, within
    ``2**-D / B`` of ``q[i]``.

    Extras: ``E[i](W)``, the extras source ``i`` has had in windows ``[0, W)``, is periodic
    with period ``2**D`` windows (``E(W + 2**D) = E(W) + F``) and, inside a period, defined
    on a dyadic tree: ``E(0) = 0``, ``E(2**D) = F``; a span ``[a, a + 2m)`` with ``e = E(a +
    2m) - E(a)`` splits at ``M = a + m`` giving each source ``floor(e / 2)`` to the left
    half, and one more to half of the sources whose ``e`` is odd (their count is even): those
    whose lag at ``M`` would be largest, ``F[i] M - (E[i](a) + floor(e[i] / 2)) 2**D``
    (int64, exact), ties to the lower index. So the split is decided from the counts at
    the span's start.

    Window ``w``'s count of source ``i`` is ``lo[i] + E[i](w + 1) - E[i](w)``, ``floor`` or
    ``ceil`` of ``p[i] B`` (proof in docs/design.md, "mixture-v1's bounds"). Its ``B``
    slots are the sources' counts laid out in source order; the slots are put in the order
    of a Fisher-Yates shuffle: ``perm = range(B)``, for ``t = B - 1`` down to ``1`` swap
    ``perm[t]`` and ``perm[j]``, ``j = ((mix(k_w ^ t) >> 32) * (t + 1)) >> 32``, with
    ``k_w = mix(mix(mix(seed) ^ 0x6d69787475726531) ^ w)`` (``mix``: NOTE [Keyed
    permutation]); position ``t`` of the window holds slot ``perm[t]``. The ``t``-th take from
    source ``i`` in window ``w`` (in position order) is its take ``c[i](w) + t``, ``c[i](w) =
    w lo[i] + E[i](w)`` counted over the whole stream.
"""

from __future__ import annotations

import math
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from sampleplan.core.algorithms import Drawer
from sampleplan.core.deadlines import check_deadline
from sampleplan.core.errors import InvalidPlanConfig, InvalidStreamRequest
from sampleplan.core.lru import LRUCache
from sampleplan.core.mixtures import kernels
from sampleplan.core.mixtures.orders import mix, mix_int, source_elements
from sampleplan.core.mixtures.spec import MIXING_NAMES, MixingName, Mixture

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]

#: Positions between two checkpoints of the sequential algorithms' counts (per 64 sources).
CHECKPOINT = 1 << 16
#: Most positions the sequential definitions (``hf-interleave``'s epochs,
#: ``megatron-blend``'s one sequence) are followed to: past it, checkpoints would take
#: more memory and minutes than a service should spend on one request.
MAX_SEQUENTIAL = 2**34
#: Most positions of ``mixture-v1``'s stream (int64 arithmetic).
MAX_POSITION = 2**62
#: ``mixture-v1``'s period: ``2**PERIOD_BITS`` windows.
PERIOD_BITS = 30
_WINDOW_DOMAIN = 0x6D69787475726531  # "mixture1"
#: Fewest checkpoints a half of a ``megatron-blend`` build must have to run on two cores.
_SPECULATE_SPANS = 64
#: Most checkpoint spans one thread builds between two checks of the request's deadline.
_STEP_SPANS = 1024
#: Checkpoint chunks ``hf-interleave`` counts per task (a task per core).
_GROUP = 16

_HELPER: list[ThreadPoolExecutor] = []
_HELPER_LOCK = threading.Lock()


def _helper() -> ThreadPoolExecutor:
    """One helper thread, so that building checkpoints uses two cores."""
    with _HELPER_LOCK:
        if not _HELPER:
            _HELPER.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="mixture"))
        return _HELPER[0]


def _forget_helper_after_fork() -> None:
    # A forked child inherits the executor but not its thread: work sent there never runs.
    _HELPER.clear()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_helper_after_fork)


class MixtureDrawer(Drawer):
    """A mixture's stream: ``ConcatDataset`` positions, and the sources and takes behind them."""

    draws_by_range = True

    def __init__(self, mixture: Mixture) -> None:
        self.mixture = mixture

    @abstractmethod
    def num_samples_at(self, epoch: int) -> int:
        """The length of epoch ``epoch``."""

    @abstractmethod
    def sources_range(self, epoch: int, start: int, stop: int) -> tuple[Int64Array, Int64Array]:
        """Source and take (``k``: the ``k``-th time the source is taken) at positions
        ``[start, stop)`` of epoch ``epoch``."""

    @abstractmethod
    def counts_before(self, epoch: int, position: int) -> Int64Array:
        """Each source's takes in positions ``[0, position)`` of epoch ``epoch``, without
        drawing them one by one where the algorithm can help it."""

    def take_seed(self, epoch: int) -> int:
        """What keys the ``reshuffled`` passes of the sources."""
        return self.mixture.seed

    def takes_before_epoch(self, epoch: int) -> Int64Array:
        """Each source's take at the start of epoch ``epoch``: its takes in the epochs
        before (zero where every epoch reads its sources from take 0, ``hf-interleave``)."""
        return np.zeros(len(self.mixture.sources), dtype=np.int64)

    def draw_range(self, epoch: int, start: int, stop: int) -> Int64Array:
        sources, takes = self.sources_range(epoch, start, stop)
        m = self.mixture
        elements = source_elements(m.orders, m.lengths, self.take_seed(epoch), sources, takes)
        return m.offsets[sources] + elements

    def draw_epoch(self, epoch: int, *, chunk: int = 1 << 20) -> Int64Array:
        """The whole epoch: :meth:`draw_range` of ``[0, num_samples_at(epoch))``, drawn
        ``chunk`` positions at a time (a range is the same values however it is cut; a
        chunk bounds the memory of a draw over many sources), with the request's deadline
        checked between chunks (NOTE [Deadlines])."""
        length = self.num_samples_at(epoch)
        if length <= chunk:
            return self.draw_range(epoch, 0, length)
        out = np.empty(length, dtype=np.int64)
        for lo in range(0, length, chunk):
            check_deadline()
            hi = min(lo + chunk, length)
            out[lo:hi] = self.draw_range(epoch, lo, hi)
        return out


class MixingAlgorithm(ABC):
    """A mixing algorithm; see NOTE [Mixing algorithms]."""

    name: ClassVar[MixingName]
    version: ClassVar[str]
    draws_whole_epochs: ClassVar[bool] = False
    machine_bound: ClassVar[bool] = False

    def versions(self) -> dict[str, str]:
        return {"algorithm": self.name, "algorithm_version": self.version}

    @abstractmethod
    def prepare(self, mixture: Mixture) -> MixtureDrawer:
        """The drawer of ``mixture``'s streams."""


def _checkpoint_every(num_sources: int) -> int:
    return CHECKPOINT * max(1, -(-num_sources // 64))


# -- hf-interleave ----------------------------------------------------------------------


@dataclass(frozen=True)
class _HfEpoch:
    length: int
    counts: Int64Array  # (checkpoints, sources): counts before position j * every


class _HfDrawer(MixtureDrawer):
    def __init__(self, mixture: Mixture) -> None:
        super().__init__(mixture)
        p = mixture.sample_proportions
        cdf = p.cumsum()
        cdf /= cdf[-1]
        self._cdf = cdf
        self._every = _checkpoint_every(len(mixture.sources))
        self._epochs: LRUCache[int, _HfEpoch] = LRUCache(8)

    def take_seed(self, epoch: int) -> int:
        return self.mixture.seed + epoch

    def _generator(self, epoch: int, position: int) -> np.random.Generator:
        # default_rng(seed) is Generator(PCG64(seed)); a double is one 64-bit output.
        bits = np.random.PCG64(self.mixture.seed + epoch)
        if position:
            bits.advance(position)
        return np.random.Generator(bits)

    def _epoch(self, epoch: int) -> _HfEpoch:
        return self._epochs.get_or_build(epoch, lambda: self._build(epoch))

    def _chunk_counts(self, epoch: int, first_chunk: int) -> Int64Array:
        """Each source's draws in chunks ``first_chunk .. + _GROUP`` of ``checkpoint``."""
        every = self._every
        generator = self._generator(epoch, first_chunk * every)
        buffer = np.empty(every, dtype=np.float64)
        out = np.zeros((_GROUP, len(self._cdf)), dtype=np.int64)
        for g in range(_GROUP):
            generator.random(out=buffer)
            kernels.count_sources(self._cdf, buffer, out[g])
        return out

    def _build(self, epoch: int) -> _HfEpoch:
        m = self.mixture
        n = m.lengths
        drawable = m.sample_proportions > 0
        all_exhausted = m.mixing.resolved_stopping == "all_exhausted"
        every = self._every
        counts = np.zeros(n.shape[0], dtype=np.int64)
        checkpoints = [counts.copy()]
        chunk = 0
        while True:
            check_deadline()  # NOTE [Deadlines]: about 2e6 draws a round
            # Two groups of chunks at once: this thread's and a helper's (both cores).
            ahead = _helper().submit(self._chunk_counts, epoch, chunk + _GROUP)
            groups = [self._chunk_counts(epoch, chunk), ahead.result()]
            for deltas in groups:
                for delta in deltas:
                    before = counts.copy()
                    counts += delta
                    reached = (counts >= n) & drawable
                    if reached.all() if all_exhausted else reached.any():
                        stop = self._stop_in_chunk(epoch, chunk, before, reached, all_exhausted)
                        return _HfEpoch(chunk * every + stop + 1, np.array(checkpoints))
                    chunk += 1
                    checkpoints.append(counts.copy())
            if chunk * every > MAX_SEQUENTIAL:
                raise InvalidPlanConfig(
                    f"mixing 'hf-interleave': epoch {epoch} would be longer than "
                    f"{MAX_SEQUENTIAL} draws before its stopping strategy ends it (a source "
                    "of tiny probability under all_exhausted?)"
                )

    def _stop_in_chunk(
        self,
        epoch: int,
        chunk: int,
        before: Int64Array,
        reached: npt.NDArray[np.bool_],
        all_exhausted: bool,
    ) -> int:
        """Where in chunk ``chunk`` the stopping condition is met (its last draw kept)."""
        u = self._generator(epoch, chunk * self._every).random(self._every)
        src = np.searchsorted(self._cdf, u, side="right")
        ends = []
        for i in np.flatnonzero(reached).tolist():
            need = int(self.mixture.lengths[i] - before[i])  # its need-th take here ends it
            if need > 0:  # (under all_exhausted, sources reached before need nothing here)
                ends.append(int(np.flatnonzero(src == i)[need - 1]))
        return max(ends) if all_exhausted else min(ends)

    def num_samples_at(self, epoch: int) -> int:
        return self._epoch(epoch).length

    def build(self) -> None:
        self._epoch(0)

    def sources_range(self, epoch: int, start: int, stop: int) -> tuple[Int64Array, Int64Array]:
        state = self._epoch(epoch)
        stop = min(stop, state.length)
        start = min(start, stop)
        every = self._every
        # (the epoch may end on a checkpoint that was never kept: the one before it serves)
        j = min(start // every, state.counts.shape[0] - 1)
        base = j * every
        u = self._generator(epoch, base).random(stop - base)
        src = np.searchsorted(self._cdf, u, side="right").astype(np.int64)
        before = state.counts[j] + np.bincount(src[: start - base], minlength=len(self._cdf))
        page = src[start - base :]
        return page, _takes(page, before)

    def counts_before(self, epoch: int, position: int) -> Int64Array:
        state = self._epoch(epoch)
        position = min(position, state.length)
        j = min(position // self._every, state.counts.shape[0] - 1)
        u = self._generator(epoch, j * self._every).random(position - j * self._every)
        src = np.searchsorted(self._cdf, u, side="right")
        counts: Int64Array = state.counts[j] + np.bincount(src, minlength=len(self._cdf))
        return counts


class HfInterleave(MixingAlgorithm):
    """``hf-interleave``: NOTE [hf-interleave]."""

    name = "hf-interleave"
    version = "hf-interleave-v1"

    def prepare(self, mixture: Mixture) -> MixtureDrawer:
        return _HfDrawer(mixture)


def _takes(sources: Int64Array, before: Int64Array) -> Int64Array:
    """Each position's take: the source's count before the page plus its earlier positions
    in the page."""
    order = np.argsort(sources, kind="stable")
    ordered = sources[order]
    counts = np.bincount(ordered, minlength=before.shape[0])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    takes = np.empty(sources.shape[0], dtype=np.int64)
    takes[order] = np.arange(sources.shape[0], dtype=np.int64) - starts[ordered] + before[ordered]
    return takes


# -- megatron-blend ---------------------------------------------------------------------


class _MegatronDrawer(MixtureDrawer):
    def __init__(self, mixture: Mixture) -> None:
        super().__init__(mixture)
        self._p = np.ascontiguousarray(mixture.sample_proportions, dtype=np.float64)
        self._every = _checkpoint_every(len(mixture.sources))
        self._counts = [np.zeros(len(mixture.sources), dtype=np.int64)]
        self._lock = threading.Lock()
        self._num_samples = mixture.default_num_samples()

    def num_samples_at(self, epoch: int) -> int:
        return self._num_samples

    def _checkpoint(self, j: int) -> Int64Array:
        """Counts before position ``j * every`` (built up to there once, then kept)."""
        if j * self._every > MAX_SEQUENTIAL:
            raise InvalidStreamRequest(
                f"mixing 'megatron-blend' is one sequence followed from its start; this "
                f"request reaches position {j * self._every} of it, past the "
                f"{MAX_SEQUENTIAL} positions served"
            )
        with self._lock:
            if len(self._counts) <= j:
                self._extend(j)
            return self._counts[j]

    def _run(self, counts: Int64Array, first_checkpoint: int, spans: int) -> Int64Array:
        """``spans`` checkpoints after ``first_checkpoint``, whose counts are ``counts``."""
        out = np.empty((spans, self._p.shape[0]), dtype=np.int64)
        kernels.blend_counts(
            self._p, counts.copy(), first_checkpoint * self._every, self._every, out
        )
        return out

    def _speculate(self, checkpoint: int, spans: int) -> tuple[Int64Array, Int64Array]:
        """A guess of the counts at ``checkpoint``, and ``spans`` checkpoints from it."""
        start = (checkpoint - 1) * self._every  # one span of warm-up before the checkpoint
        ideal = self._p * start
        guess = np.floor(ideal).astype(np.int64)
        short = start - int(guess.sum())
        if short > 0:  # the largest remainders take the rest (first on ties)
            guess[np.argsort(-(ideal - guess), kind="stable")[:short]] += 1
        at_checkpoint = self._run(guess, checkpoint - 1, 1)[0]
        return at_checkpoint, self._run(at_checkpoint, checkpoint, spans)

    def _extend(self, j: int) -> None:
        """Build the checkpoints up to ``j`` (under the drawer's lock).

        NOTE [Two-core megatron checkpoints]
            The rule is sequential, but it forgets where it started: runs of it from two
            different counts of the same total merge into one within a few thousand
            positions (seen for 2 to 4096 sources and skewed weights). A long build
            therefore runs its second half on the helper thread from a guess of the counts
            at the half's start (the ideal counts one span earlier, rounded by largest
            remainders, then one span of the rule), while this thread runs the first half
            from the true counts. The second half is kept only if the guess, after its
            warm-up, equals the true counts at that checkpoint exactly; from equal counts
            the rule takes the same path, so what is kept is exactly the sequential
            result. Otherwise the second half is run again from the true counts: never
            wrong, at worst no faster.
        """
        # In steps of at most _STEP_SPANS spans a thread (about a second each), with the
        # request's deadline checked between them (NOTE [Deadlines]): a request that times
        # out stops within a step, and the checkpoints it built serve the next one.
        while len(self._counts) <= j:
            check_deadline()
            have = len(self._counts) - 1
            missing = j - have
            counts = self._counts[-1]
            if missing < 2 * _SPECULATE_SPANS:
                self._counts.extend(self._run(counts, have, min(missing, _STEP_SPANS)))
                continue
            middle = have + min(missing // 2, _STEP_SPANS)
            spans = min(j - middle, _STEP_SPANS)
            second = _helper().submit(self._speculate, middle, spans)
            try:
                first_half = self._run(counts, have, middle - have)
            finally:
                guessed, second_half = second.result()
            self._counts.extend(first_half)
            if not np.array_equal(guessed, first_half[-1]):
                second_half = self._run(first_half[-1], middle, spans)
            self._counts.extend(second_half)

    def build_to(self, position: int) -> None:
        """Build the checkpoints up to ``position`` of the infinite sequence."""
        self._checkpoint(position // self._every)

    def sources_range(self, epoch: int, start: int, stop: int) -> tuple[Int64Array, Int64Array]:
        n = self._num_samples
        first, last = epoch * n + start, epoch * n + min(stop, n)
        if last <= first:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        j = first // self._every
        counts = self._checkpoint(j).copy()
        sources = np.empty(last - first, dtype=np.int64)
        takes = np.empty(last - first, dtype=np.int64)
        kernels.blend(self._p, counts, j * self._every, last, first, sources, takes)
        return sources, takes

    def _stream_counts(self, position: int) -> Int64Array:
        j = position // self._every
        counts = self._checkpoint(j).copy()
        empty = np.empty(0, dtype=np.int64)
        kernels.blend(self._p, counts, j * self._every, position, position, empty, empty)
        return counts

    def counts_before(self, epoch: int, position: int) -> Int64Array:
        n = self._num_samples
        first = epoch * n
        return self._stream_counts(first + min(position, n)) - self._stream_counts(first)

    def takes_before_epoch(self, epoch: int) -> Int64Array:
        return self._stream_counts(epoch * self._num_samples)


class MegatronBlend(MixingAlgorithm):
    """``megatron-blend``: NOTE [megatron-blend]."""

    name = "megatron-blend"
    version = "megatron-blend-v1"

    def prepare(self, mixture: Mixture) -> MixtureDrawer:
        return _MegatronDrawer(mixture)


# -- mixture-v1 -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class WindowQuotas:
    """``mixture-v1``'s per-window counts (NOTE [mixture-v1]): ``T``, ``lo``, ``F``, ``r``."""

    block: int
    T: Int64Array
    lo: Int64Array
    F: Int64Array
    r: int

    @classmethod
    def build(cls, p: Float64Array, block: int) -> WindowQuotas:
        scale = block << PERIOD_BITS
        exact = [Fraction(float(x)) for x in p.tolist()]
        total = sum(exact, Fraction(0))
        ideal = [x * scale / total for x in exact]  # sums to scale exactly
        floors = [math.floor(x) for x in ideal]
        short = scale - sum(floors)  # 0 <= short < len(p)
        by_remainder = sorted(range(len(ideal)), key=lambda i: (-(ideal[i] - floors[i]), i))
        for i in by_remainder[:short]:
            floors[i] += 1
        T = np.array(floors, dtype=np.int64)
        lo = T >> PERIOD_BITS
        F = T & ((1 << PERIOD_BITS) - 1)
        r = int(F.sum()) >> PERIOD_BITS
        return cls(block, T, lo, F, r)

    @property
    def realised(self) -> Float64Array:
        """The realised proportions ``T / (B 2**D)``."""
        return self.T / float(self.block << PERIOD_BITS)

    def extras(self, lo_w: int, hi_w: int) -> Int64Array:
        """``E(W)`` for ``W`` in ``[lo_w, hi_w]`` (``0 <= lo_w <= hi_w <= 2**D``), rows by ``W``."""
        if kernels.extras is not None:
            out = np.empty((hi_w - lo_w + 1, self.F.shape[0]), dtype=np.int64)
            kernels.extras(self.F, PERIOD_BITS, lo_w, hi_w, out)
            return out
        return self.extras_numpy(lo_w, hi_w)

    def extras_numpy(self, lo_w: int, hi_w: int) -> Int64Array:
        """:meth:`extras` without the compiled kernel (vectorised over a level's spans)."""
        S = self.F.shape[0]
        D = PERIOD_BITS
        starts = np.zeros(1, dtype=np.int64)
        left = np.zeros((1, S), dtype=np.int64)
        right = self.F[None, :].copy()
        span = 1 << D
        F = self.F[None, :]
        while span > 1:
            m = span >> 1
            mid_w = starts + m
            e = right - left
            half = e >> 1
            odd = (e & 1).astype(bool)
            give_count = odd.sum(axis=1) // 2
            lag = F * mid_w[:, None] - ((left + half) << D)
            key = np.where(odd, lag, np.int64(-(2**62)))
            order = np.argsort(-key, axis=1, kind="stable")
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.arange(S, dtype=np.int64)[None, :], axis=1)
            middle = left + half + (odd & (rank < give_count[:, None]))
            # children [a, M] and [M, a + 2m]; keep those holding a wanted boundary
            c_starts = np.stack([starts, mid_w], axis=1).reshape(-1)
            c_left = np.stack([left, middle], axis=1).reshape(-1, S)
            c_right = np.stack([middle, right], axis=1).reshape(-1, S)
            keep = (c_starts <= hi_w) & (c_starts + m >= lo_w)
            starts, left, right = c_starts[keep], c_left[keep], c_right[keep]
            span = m
        out = np.empty((hi_w - lo_w + 1, S), dtype=np.int64)
        inside = (starts >= lo_w) & (starts <= hi_w)
        out[starts[inside] - lo_w] = left[inside]
        ends = starts + 1
        inside = (ends >= lo_w) & (ends <= hi_w)
        out[ends[inside] - lo_w] = right[inside]
        return out

    def cumulative(self, lo_w: int, hi_w: int) -> Int64Array:
        """``c(W)``: each source's takes in windows ``[0, W)``, ``W`` in ``[lo_w, hi_w]``."""
        D = PERIOD_BITS
        rows = []
        w = lo_w
        while w <= hi_w:
            period = w >> D
            end = min(hi_w, (period + 1) << D)
            a, b = w - (period << D), end - (period << D)
            E = self.extras(a, b)
            W = np.arange(a, b + 1, dtype=np.int64)[:, None]
            rows.append(period * self.T[None, :] + W * self.lo[None, :] + E)
            w = end + 1
        return np.concatenate(rows)


class MixtureV1Drawer(MixtureDrawer):
    def __init__(self, mixture: Mixture) -> None:
        super().__init__(mixture)
        self.quotas = WindowQuotas.build(mixture.sample_proportions, mixture.mixing.resolved_block)
        self._num_samples = mixture.default_num_samples()
        self._window_seed = mix_int(mix_int(mixture.seed) ^ _WINDOW_DOMAIN)

    def num_samples_at(self, epoch: int) -> int:
        return self._num_samples

    def stream_range(self, first: int, last: int) -> tuple[Int64Array, Int64Array]:
        """Sources and takes at positions ``[first, last)`` of the infinite stream."""
        if last > MAX_POSITION:
            raise InvalidStreamRequest(
                f"mixture-v1 streams have {MAX_POSITION} positions; this request reaches {last}"
            )
        if last <= first:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        B = self.quotas.block
        w0, w1 = first // B, (last - 1) // B
        c = self.quotas.cumulative(w0, w1 + 1)  # (windows + 1, S)
        q = np.diff(c, axis=0)  # (windows, S)
        nw, S = q.shape
        windows = np.arange(w0, w1 + 1, dtype=np.uint64)
        window_keys = mix(np.uint64(self._window_seed) ^ windows)
        # slot u of a window (in source order) holds the source whose segment contains u
        seg_end = np.cumsum(q, axis=1)
        row_shift = (np.arange(nw, dtype=np.int64) * B)[:, None]
        base = (
            np.searchsorted(
                (seg_end + row_shift).reshape(-1),
                (np.arange(B, dtype=np.int64)[None, :] + row_shift).reshape(-1),
                side="right",
            ).reshape(nw, B)
            - (np.arange(nw, dtype=np.int64) * S)[:, None]
        )
        sources = np.empty(nw * B, dtype=np.int64)
        takes = np.empty(nw * B, dtype=np.int64)
        seen = np.zeros(S, dtype=np.int64)
        kernels.arrange(window_keys, base, np.ascontiguousarray(c[:-1]), sources, takes, seen)
        lo = first - w0 * B
        hi = lo + (last - first)
        return sources[lo:hi], takes[lo:hi]

    def sources_range(self, epoch: int, start: int, stop: int) -> tuple[Int64Array, Int64Array]:
        n = self._num_samples
        stop = min(stop, n)
        return self.stream_range(epoch * n + start, epoch * n + max(start, stop))

    def stream_counts(self, position: int) -> Int64Array:
        """Each source's takes in positions ``[0, position)`` of the infinite stream."""
        B = self.quotas.block
        w = position // B
        counts: Int64Array = self.quotas.cumulative(w, w)[0]
        if position > w * B:
            sources, _ = self.stream_range(w * B, position)
            counts = counts + np.bincount(sources, minlength=counts.shape[0])
        return counts

    def counts_before(self, epoch: int, position: int) -> Int64Array:
        n = self._num_samples
        first = epoch * n
        return self.stream_counts(first + min(position, n)) - self.stream_counts(first)

    def takes_before_epoch(self, epoch: int) -> Int64Array:
        return self.stream_counts(epoch * self._num_samples)


class MixtureV1(MixingAlgorithm):
    """``mixture-v1``: NOTE [mixture-v1]."""

    name = "mixture-v1"
    version = "mixture-v1"

    def prepare(self, mixture: Mixture) -> MixtureDrawer:
        return MixtureV1Drawer(mixture)


#: The mixing algorithms by name (NOTE [Mixing algorithms]).
MIXING_ALGORITHMS: Mapping[str, MixingAlgorithm] = {
    a.name: a for a in (MixtureV1(), HfInterleave(), MegatronBlend())
}
assert tuple(MIXING_ALGORITHMS) == MIXING_NAMES


def mixing_algorithm(name: str) -> MixingAlgorithm:
    algorithm = MIXING_ALGORITHMS.get(name)
    if algorithm is None:
        raise InvalidPlanConfig(
            f"unknown mixing algorithm {name!r}; expected one of {', '.join(MIXING_ALGORITHMS)}"
        )
    return algorithm


def mixture_drawer(mixture: Mixture) -> MixtureDrawer:
    """The drawer of ``mixture``'s streams, by its mixing algorithm."""
    return mixing_algorithm(mixture.mixing.algorithm).prepare(mixture)
