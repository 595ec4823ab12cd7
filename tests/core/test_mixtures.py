"""Mixtures in the core: megatron-blend against Megatron-core's formula, mixture-v1's
promises with hypothesis, source orders, and the refusals (NOTE [Mixtures])."""

from __future__ import annotations

import hashlib
import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampleplan.core.deadlines import deadline
from sampleplan.core.errors import DeadlineExceeded, InvalidPlanConfig
from sampleplan.core.mixtures import (
    Mixing,
    Mixture,
    MixtureSource,
    ShuffleSeed,
    WindowQuotas,
    kernels,
    mixing_from_json,
    mixture_drawer,
    mixture_page,
    mixture_shares,
    source_elements,
    summarize_mixture,
)
from sampleplan.core.mixtures import drawers as drawers_module
from sampleplan.core.mixtures.drawers import PERIOD_BITS, MixtureV1Drawer
from sampleplan.core.mixtures.orders import keyed_permutation, mix
from sampleplan.core.streams import StreamRequest
from tests.helpers.mixtures import megatron_build_blending_indices

# The cumulative bound docs/design.md proves for mixture-v1 ("mixture-v1's bounds"), in
# samples, at every window end.
PROVEN_BOUND = PERIOD_BITS / 3 + 1 / 6


def _sources(
    weights: list[float], lengths: list[int], order: object = "reshuffled"
) -> tuple[MixtureSource, ...]:
    return tuple(
        MixtureSource(f"s{i}", n, w, order)  # type: ignore[arg-type]
        for i, (w, n) in enumerate(zip(weights, lengths, strict=True))
    )


# -- megatron-blend -----------------------------------------------------------------------


@pytest.mark.parametrize("case", range(10))
def test_megatron_blend_is_build_blending_indices_with_epochs_as_windows(
    case: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(drawers_module, "CHECKPOINT", 5 + case)  # resumes from many counts
    rng = np.random.default_rng([case, 7])
    count = int(rng.integers(1, 7))
    weights = [float(x) for x in rng.integers(0, 10, size=count)]
    weights[int(rng.integers(0, count))] += 1.0
    if case % 2:
        weights = [float(x) for x in rng.random(count) + 1e-3]
    lengths = [int(n) for n in rng.integers(1, 40, size=count)]
    num_samples = int(rng.integers(1, 90))
    mixture = Mixture(
        _sources(weights, lengths, "sequential"),
        Mixing(algorithm="megatron-blend"),
        seed=3,
        num_samples=num_samples,
    )
    drawer = mixture_drawer(mixture)
    epochs = 4
    index, sample_index = megatron_build_blending_indices(weights, epochs * num_samples)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    expected = [int(offsets[i] + k % lengths[i]) for i, k in zip(index, sample_index, strict=True)]
    for epoch in range(epochs):
        window = slice(epoch * num_samples, (epoch + 1) * num_samples)
        sources, takes = drawer.sources_range(epoch, 0, num_samples)
        assert sources.tolist() == index[window]
        assert takes.tolist() == sample_index[window]
        assert drawer.draw_epoch(epoch).tolist() == expected[window]
        for start in range(0, num_samples, 7):
            page = drawer.draw_range(epoch, start, start + 11)
            assert page.tolist() == expected[window][start : start + 11]


@pytest.mark.parametrize("wrong_guess", [False, True])
@pytest.mark.parametrize("case", range(6))
def test_megatron_checkpoints_built_on_two_cores_are_the_sequential_counts(
    case: int, wrong_guess: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # NOTE [Two-core megatron checkpoints]: small spans, so that a short stream takes the
    # two-core path; every checkpoint and page must still be Megatron-core's sequence.
    every = 16 + case
    monkeypatch.setattr(drawers_module, "CHECKPOINT", every)
    monkeypatch.setattr(drawers_module, "_SPECULATE_SPANS", 2)
    rng = np.random.default_rng([case, 11])
    count = int(rng.integers(2, 9))
    weights = [float(x) for x in rng.random(count) ** 3 + (0.0 if case % 3 else 1e-3)]
    if case == 0:
        weights = [1.0] * count  # ties everywhere
    lengths = [int(n) for n in rng.integers(1, 50, size=count)]
    size = every * 200 + int(rng.integers(0, every))
    mixture = Mixture(
        _sources(weights, lengths, "sequential"),
        Mixing(algorithm="megatron-blend"),
        num_samples=size,
    )
    drawer = mixture_drawer(mixture)
    calls: list[int] = []
    run = drawer._run  # type: ignore[attr-defined]

    def counting_run(counts: np.ndarray, first: int, spans: int) -> np.ndarray:
        calls.append(first)
        return run(counts, first, spans)  # type: ignore[no-any-return]

    monkeypatch.setattr(drawer, "_run", counting_run)
    if wrong_guess:  # the guess misses: the second half is run again from the true counts
        speculate = drawer._speculate  # type: ignore[attr-defined]

        def missing(checkpoint: int, spans: int) -> tuple[np.ndarray, np.ndarray]:
            guessed, rest = speculate(checkpoint, spans)
            guessed = guessed.copy()
            guessed[0] += 1
            guessed[1] -= 1
            return guessed, rest + 1

        monkeypatch.setattr(drawer, "_speculate", missing)
    drawer.build_to(size)  # type: ignore[attr-defined]
    # The warm-up, both halves, and the second half again when the guess missed (always
    # when it was made wrong; a warm-up this short may miss on its own).
    assert len(calls) == 4 if wrong_guess else len(calls) in (3, 4)
    index, sample_index = megatron_build_blending_indices(weights, size)
    taken = np.zeros(count, dtype=np.int64)
    for j, checkpoint in enumerate(drawer._counts):  # type: ignore[attr-defined]
        assert checkpoint.tolist() == taken.tolist(), j
        window = np.asarray(index[j * every : (j + 1) * every], dtype=np.int64)
        taken += np.bincount(window, minlength=count)
    sources, takes = drawer.sources_range(0, size - 3 * every, size)
    assert sources.tolist() == index[size - 3 * every :]
    assert takes.tolist() == sample_index[size - 3 * every :]


@pytest.mark.parametrize("count", [2, 3, 8, 64, 300])
def test_megatron_guess_meets_the_true_counts_after_one_span(
    count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At the real span (65,536 positions per 64 sources) the guess's warm-up merges into
    # the true sequence, so the second half is kept: skewed weights, one source dominant.
    monkeypatch.setattr(drawers_module, "_SPECULATE_SPANS", 2)
    rng = np.random.default_rng(count)
    weights = [float(x) for x in rng.random(count) ** 4]
    weights[0] = 50.0 * sum(weights)
    every = drawers_module._checkpoint_every(count)
    mixture = Mixture(
        _sources(weights, [10] * count, "sequential"), Mixing(algorithm="megatron-blend")
    )
    drawer = mixture_drawer(mixture)
    calls: list[int] = []
    run = drawer._run  # type: ignore[attr-defined]
    monkeypatch.setattr(drawer, "_run", lambda c, f, s: calls.append(f) or run(c, f, s))
    drawer.build_to(5 * every)  # type: ignore[attr-defined]
    assert len(calls) == 3  # warm-up, first half, second half: the guess was kept
    expected = np.zeros(count, dtype=np.int64)
    empty = np.empty(0, dtype=np.int64)
    kernels.blend(drawer._p, expected, 0, 5 * every, 5 * every, empty, empty)  # type: ignore[attr-defined]
    assert drawer._counts[5].tolist() == expected.tolist()  # type: ignore[attr-defined]


def test_a_long_checkpoint_build_stops_at_the_deadline_and_keeps_what_it_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # NOTE [Deadlines]: the build goes in steps and checks the request's deadline between
    # them; a later request goes on from the checkpoints already built.
    monkeypatch.setattr(drawers_module, "CHECKPOINT", 64)
    monkeypatch.setattr(drawers_module, "_STEP_SPANS", 4)
    mixture = Mixture(
        _sources([3.0, 1.0, 2.0], [10, 20, 30], "sequential"), Mixing(algorithm="megatron-blend")
    )
    drawer = mixture_drawer(mixture)
    steps: list[int] = []
    run = drawer._run  # type: ignore[attr-defined]

    def stopping_run(counts: np.ndarray, first: int, spans: int) -> np.ndarray:
        steps.append(spans)
        if len(steps) == 5:  # the request's time runs out during its fifth step
            monkeypatch.setattr(time, "monotonic", lambda: math.inf)
        return run(counts, first, spans)  # type: ignore[no-any-return]

    monkeypatch.setattr(drawer, "_run", stopping_run)
    with deadline(60.0), pytest.raises(DeadlineExceeded):
        drawer.build_to(64 * 1000)  # type: ignore[attr-defined]
    assert max(steps) <= 4 and len(steps) <= 6  # the step under way ends, no more start
    built = len(drawer._counts)  # type: ignore[attr-defined]
    assert 1 < built < 1000
    monkeypatch.undo()
    drawer.build_to(64 * 1000)  # type: ignore[attr-defined]
    index, _ = megatron_build_blending_indices([3.0, 1.0, 2.0], 64 * 1000)
    expected = np.bincount(np.asarray(index, dtype=np.int64), minlength=3)
    assert drawer._counts[1000].tolist() == expected.tolist()  # type: ignore[attr-defined]


# -- mixture-v1 ---------------------------------------------------------------------------

weights_st = st.lists(
    st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=100.0)), min_size=1, max_size=9
).filter(lambda w: sum(w) > 0)


def _v1(
    weights: list[float], block: int, seed: int = 0, lengths: list[int] | None = None
) -> tuple[Mixture, MixtureV1Drawer]:
    lengths = lengths or [7 + 3 * i for i in range(len(weights))]
    mixture = Mixture(_sources(weights, lengths), Mixing(block=block), seed=seed)
    drawer = mixture_drawer(mixture)
    assert isinstance(drawer, MixtureV1Drawer)
    return mixture, drawer


@settings(max_examples=60, deadline=None)
@given(
    weights=weights_st,
    block=st.integers(1, 300),
    window=st.integers(0, 2**50),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_window_takes_floor_or_ceil_of_p_times_block(
    weights: list[float], block: int, window: int, seed: int
) -> None:
    mixture, drawer = _v1(weights, block, seed)
    p = mixture.sample_proportions
    sources, _ = drawer.stream_range(window * block, (window + 3) * block)
    for row in sources.reshape(3, block):
        counts = np.bincount(row, minlength=p.shape[0])
        assert np.all(counts >= np.floor(p * block)) and np.all(counts <= np.ceil(p * block))


@settings(max_examples=60, deadline=None)
@given(weights=weights_st, block=st.integers(1, 300), window=st.integers(0, 2**52))
def test_cumulative_counts_stay_within_the_proven_bound_far_along(
    weights: list[float], block: int, window: int
) -> None:
    mixture, drawer = _v1(weights, block)
    quotas = drawer.quotas
    counts = quotas.cumulative(window, window + 40)
    windows = np.arange(window, window + 41, dtype=np.int64)
    # Exactly: c_i(W) - p^_i W B = E_i(W') - F_i W' / 2**D within the period (W' = W mod 2**D).
    within = windows & ((1 << PERIOD_BITS) - 1)
    periods = windows >> PERIOD_BITS
    extras = counts - periods[:, None] * quotas.T[None, :] - within[:, None] * quotas.lo[None, :]
    lag = (quotas.F[None, :] * within[:, None] - (extras << PERIOD_BITS)) / 2.0**PERIOD_BITS
    assert np.abs(lag).max() <= PROVEN_BOUND
    # and through the stream itself: what the windows hold is what the counts say
    first = window * block
    sources, takes = drawer.stream_range(first, first + 2 * block)
    for i in range(len(weights)):
        mine = takes[sources == i]
        assert mine.tolist() == list(range(int(counts[0, i]), int(counts[2, i])))
    # The realised proportions are the requested ones to 2**-D / B.
    assert np.all(
        np.abs(quotas.realised - mixture.sample_proportions) <= 2.0**-PERIOD_BITS / block * 2
    )


def test_the_measured_cumulative_deviation_is_far_below_the_proven_bound() -> None:
    # The bound proven is 10.2; measured over many proportions and windows it stays near 1.
    rng = np.random.default_rng(1)
    worst = 0.0
    for _ in range(150):
        count = int(rng.integers(1, 12))
        quotas = WindowQuotas.build(
            (lambda w: w / w.sum())(rng.random(count) ** 3), int(rng.integers(1, 200))
        )
        start = int(rng.integers(0, 2**PERIOD_BITS - 300))
        extras = quotas.extras(start, start + 200)
        windows = np.arange(start, start + 201, dtype=np.int64)[:, None]
        lag = (quotas.F[None, :] * windows - (extras << PERIOD_BITS)) / 2.0**PERIOD_BITS
        worst = max(worst, float(np.abs(lag).max()))
    assert worst < 2.0


@settings(max_examples=40, deadline=None)
@given(
    weights=weights_st,
    block=st.integers(1, 64),
    seed=st.integers(0, 2**32 - 1),
    start=st.integers(0, 400),
    length=st.integers(0, 300),
    far=st.integers(0, 2**40),
)
def test_any_page_equals_the_sequential_stream(
    weights: list[float], block: int, seed: int, start: int, length: int, far: int
) -> None:
    _, drawer = _v1(weights, block, seed)
    whole_s, whole_t = drawer.stream_range(far, far + 800)
    s, t = drawer.stream_range(far + start, far + start + length)
    assert s.tolist() == whole_s[start : start + length].tolist()
    assert t.tolist() == whole_t[start : start + length].tolist()


def test_takes_are_counted_over_the_whole_stream_from_zero() -> None:
    _, drawer = _v1([5.0, 3.0, 1.0], 16, seed=4)
    sources, takes = drawer.stream_range(0, 5000)
    for i in range(3):
        assert takes[sources == i].tolist() == list(range(int(np.sum(sources == i))))


@settings(max_examples=25, deadline=None)
@given(weights=weights_st, block=st.integers(1, 50), num_samples=st.integers(1, 120))
def test_epochs_are_windows_of_one_infinite_stream(
    weights: list[float], block: int, num_samples: int
) -> None:
    mixture = Mixture(
        _sources(weights, [5 + i for i in range(len(weights))]),
        Mixing(block=block),
        seed=2,
        num_samples=num_samples,
    )
    drawer = mixture_drawer(mixture)
    assert isinstance(drawer, MixtureV1Drawer)
    stream = drawer.draw_range(0, 0, num_samples)
    flat = [drawer.draw_epoch(e) for e in range(4)]
    whole_s, whole_t = drawer.stream_range(0, 4 * num_samples)
    elements = source_elements(mixture.orders, mixture.lengths, 2, whole_s, whole_t)
    assert np.concatenate(flat).tolist() == (mixture.offsets[whole_s] + elements).tolist()
    assert flat[0].tolist() == stream.tolist()


@settings(max_examples=25, deadline=None)
@given(
    weights=st.lists(st.floats(min_value=0.1, max_value=10.0), min_size=1, max_size=5),
    lengths=st.lists(st.integers(1, 30), min_size=5, max_size=5),
    seed=st.integers(0, 2**32 - 1),
)
def test_passes_of_reshuffled_sources_are_permutations(
    weights: list[float], lengths: list[int], seed: int
) -> None:
    lengths = lengths[: len(weights)]
    mixture = Mixture(_sources(weights, lengths), Mixing(block=8), seed=seed)
    drawer = mixture_drawer(mixture)
    indices = drawer.draw_range(0, 0, sum(lengths) * 0 + mixture.default_num_samples())
    more = [drawer.draw_epoch(e) for e in range(1, 8)]
    stream = np.concatenate([indices, *more])
    for i, n in enumerate(lengths):
        mine = stream[(stream >= mixture.offsets[i]) & (stream < mixture.offsets[i] + n)]
        for q in range(len(mine) // n):
            assert sorted(mine[q * n : (q + 1) * n].tolist()) == list(
                range(int(mixture.offsets[i]), int(mixture.offsets[i]) + n)
            )


def test_passes_differ_and_a_pass_is_keyed_by_seed_source_and_pass() -> None:
    orders = ("reshuffled", "reshuffled")
    lengths = np.array([1000, 1000], dtype=np.int64)
    k = np.arange(3000, dtype=np.int64)
    a = source_elements(orders, lengths, 1, np.zeros(3000, dtype=np.int64), k)  # type: ignore[arg-type]
    b = source_elements(orders, lengths, 1, np.ones(3000, dtype=np.int64), k)  # type: ignore[arg-type]
    c = source_elements(orders, lengths, 2, np.zeros(3000, dtype=np.int64), k)  # type: ignore[arg-type]
    for q in range(3):
        assert sorted(a[q * 1000 : (q + 1) * 1000].tolist()) == list(range(1000))
    assert a[:1000].tolist() != a[1000:2000].tolist()
    assert a.tolist() != b.tolist() and a.tolist() != c.tolist()


def test_keyed_permutation_kernel_and_numpy_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    n = rng.integers(1, 2**45, size=2000)
    n[:500] = rng.integers(1, 9, size=500)
    x = (rng.random(2000) * n).astype(np.int64)
    keys = mix(rng.integers(0, 2**63, size=2000).astype(np.uint64))
    first = keyed_permutation(n, keys, x)
    monkeypatch.setattr(kernels, "feistel", None)
    assert keyed_permutation(n, keys, x).tolist() == first.tolist()
    assert np.all((first >= 0) & (first < n))


def test_window_arrangement_kernel_and_numpy_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    _, drawer = _v1([4.0, 2.0, 1.0, 0.5], 37, seed=11)
    s1, t1 = drawer.stream_range(10**12, 10**12 + 3000)
    monkeypatch.setattr(kernels, "arrange", kernels._arrange_numpy)
    s2, t2 = drawer.stream_range(10**12, 10**12 + 3000)
    assert s1.tolist() == s2.tolist() and t1.tolist() == t2.tolist()


def test_a_page_far_along_is_drawn_without_replay() -> None:
    mixture, drawer = _v1([7.0, 2.0, 1.0], 1024, seed=0, lengths=[10**6, 10**5, 10**4])
    epoch = 10**12 // mixture.default_num_samples()
    page = drawer.draw_range(epoch, 0, 10**5)
    assert page.shape == (10**5,)
    assert np.all((page >= 0) & (page < mixture.size))


def test_shuffle_seed_order_is_numpy_permutation_cycled() -> None:
    orders = (ShuffleSeed(5),)
    k = np.arange(25, dtype=np.int64)
    got = source_elements(orders, np.array([10]), 0, np.zeros(25, dtype=np.int64), k)
    perm = np.random.default_rng(5).permutation(10)
    assert got.tolist() == [int(perm[j % 10]) for j in range(25)]


@settings(max_examples=25, deadline=None)
@given(
    weights=st.lists(st.floats(min_value=0.1, max_value=10.0), min_size=2, max_size=5),
    token_lengths=st.lists(st.integers(1, 50), min_size=5, max_size=5),
    block=st.integers(8, 128),
)
def test_tokens_unit_mixes_tokens_in_the_requested_proportions(
    weights: list[float], token_lengths: list[int], block: int
) -> None:
    count = len(weights)
    sources = tuple(
        MixtureSource(f"s{i}", 9, w, "sequential", np.full(9, float(token_lengths[i])))
        for i, w in enumerate(weights)
    )
    mixture = Mixture(sources, Mixing(unit="tokens", block=block), seed=1)
    p = np.array(weights) / np.sum(weights)
    means = np.array(token_lengths[:count], dtype=np.float64)
    expected = (p / means) / np.sum(p / means)
    assert np.allclose(mixture.sample_proportions, expected, rtol=1e-12)
    drawer = mixture_drawer(mixture)
    assert isinstance(drawer, MixtureV1Drawer)
    windows = 200
    sources_drawn, _ = drawer.stream_range(0, windows * block)
    tokens = np.bincount(sources_drawn, minlength=count) * means
    # sample counts within the bound of q_i k, so tokens within bound * max length of p_i total
    total = tokens.sum()
    assert np.all(np.abs(tokens - p * total) <= (PROVEN_BOUND + 1) * means.max() * 2)


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Mixture(()), "at least one source"),
        (lambda: Mixture(_sources([1.0] * 4097, [1] * 4097)), "at most 4096"),
        (lambda: Mixture((MixtureSource("a", 3, 1.0), MixtureSource("a", 3, 1.0))), "unique"),
        (lambda: Mixture(_sources([-1.0, 2.0], [3, 3])), "finite number >= 0"),
        (lambda: Mixture(_sources([math.nan, 2.0], [3, 3])), "finite number >= 0"),
        (lambda: Mixture(_sources([0.0, 0.0], [3, 3])), "sum to a finite number > 0"),
        (lambda: Mixture(_sources([1.0], [0])), "empty"),
        (lambda: Mixture((MixtureSource("a", 3),)), "no 'weight'"),
        (
            lambda: Mixture(_sources([1.0], [3]), mixing_from_json({"proportions": "sizes"})),
            "has a 'weight'",
        ),
        (
            lambda: Mixture(_sources([0.5, 0.6], [3, 3]), Mixing(algorithm="hf-interleave")),
            "numpy refuses",
        ),
        (
            lambda: Mixture(
                _sources([0.5, 0.5], [3, 3]), Mixing(algorithm="hf-interleave"), num_samples=5
            ),
            "num_samples",
        ),
        (
            lambda: Mixture(
                _sources([1.0, 0.0], [3, 3]),
                Mixing(algorithm="hf-interleave", stopping="all_exhausted"),
            ),
            "proportion 0",
        ),
        (lambda: mixing_from_json({"algorithm": "megatron-blend", "block": 8}), "'block' only"),
        (lambda: mixing_from_json({"algorithm": "hf-interleave", "unit": "tokens"}), "'unit'"),
        (lambda: mixing_from_json({"stopping": "all_exhausted"}), "'stopping' only"),
        (lambda: mixing_from_json({"proportions": {"temperature": 0}}), "temperature"),
        (lambda: mixing_from_json({"proportions": {"temperature": -1.0}}), "temperature"),
        (lambda: mixing_from_json({"block": 0}), "block"),
        (lambda: mixing_from_json({"algorithm": "round-robin"}), "unknown mixing"),
        (lambda: mixing_from_json({"shuffle": True}), "unknown mixing options"),
        (lambda: Mixture(_sources([1.0], [3]), Mixing(unit="tokens")), "token lengths"),
        (
            lambda: Mixture((MixtureSource.from_json({"name": "a", "order": "random"}, 3),)),
            "unknown order",
        ),
        (
            lambda: Mixture(
                (MixtureSource.from_json({"name": "a", "order": {"shuffle_seed": -1}}, 3),)
            ),
            "shuffle_seed",
        ),
    ],
)
def test_bad_mixtures_are_refused(build: object, message: str) -> None:
    with pytest.raises(InvalidPlanConfig, match=message):
        build()  # type: ignore[operator]


def test_canonical_form_fills_every_default_of_the_algorithm() -> None:
    mixture = Mixture(_sources([7.0, 3.0], [4, 5]))
    assert mixture.canonical() == {
        "sources": [
            {"name": "s0", "order": "reshuffled", "weight": 7.0},
            {"name": "s1", "order": "reshuffled", "weight": 3.0},
        ],
        "mixing": {
            "algorithm": "mixture-v1",
            "proportions": "weights",
            "unit": "samples",
            "block": 1024,
        },
    }
    hf = Mixing(algorithm="hf-interleave").canonical()
    assert hf == {
        "algorithm": "hf-interleave",
        "proportions": "weights",
        "stopping": "first_exhausted",
    }


def test_temperature_flattens_sizes() -> None:
    sources = tuple(MixtureSource(f"s{i}", n) for i, n in enumerate([1000, 10]))
    by_size = Mixture(sources, mixing_from_json({"proportions": "sizes"})).proportions
    hot = Mixture(sources, mixing_from_json({"proportions": {"temperature": 3.0}})).proportions
    assert by_size.tolist() == pytest.approx([1000 / 1010, 10 / 1010])
    sizes = np.array([1000.0, 10.0]) ** (1 / 3)
    assert hot.tolist() == (sizes / sizes.sum()).tolist()


# -- ranks, pages and summaries -----------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["mixture-v1", "hf-interleave", "megatron-blend"])
def test_ranks_are_dealt_as_distributed_sampler_deals_the_epoch(algorithm: str) -> None:
    from torch.utils.data import DistributedSampler

    weights = [0.5, 0.3, 0.2]
    mixture = Mixture(
        _sources(weights, [40, 25, 9], "sequential"), mixing_from_json({"algorithm": algorithm})
    )
    drawer = mixture_drawer(mixture)
    for epoch in range(2):
        stream = drawer.draw_epoch(epoch)
        for world in (1, 2, 3, 4):
            for rank in range(world):
                for drop_last in (False, True):
                    sampler: DistributedSampler[int] = DistributedSampler(
                        range(stream.shape[0]),  # type: ignore[arg-type]
                        num_replicas=world,
                        rank=rank,
                        shuffle=False,
                        drop_last=drop_last,
                    )
                    expected = stream[list(sampler)].tolist()
                    request = StreamRequest(
                        epoch=epoch, rank=rank, world_size=world, drop_last=drop_last
                    )
                    assert mixture_page(drawer, request).tolist() == expected
                    page = StreamRequest(
                        epoch=epoch,
                        rank=rank,
                        world_size=world,
                        offset=3,
                        limit=5,
                        drop_last=drop_last,
                    )
                    assert mixture_page(drawer, page).tolist() == expected[3:8]


def test_a_resume_from_a_global_position_deals_the_rest_over_another_world() -> None:
    mixture = Mixture(_sources([3.0, 1.0], [50, 20]), Mixing(block=8), seed=5)
    drawer = mixture_drawer(mixture)
    stream = drawer.draw_epoch(1)
    start = 23
    rest = [
        mixture_page(drawer, StreamRequest(epoch=1, rank=r, world_size=3, start=start, pad=False))
        for r in range(3)
    ]
    dealt = sorted(np.concatenate(rest).tolist())
    assert dealt == sorted(stream[start:].tolist())
    assert rest[0].tolist() == stream[start::3].tolist()


def test_a_summary_counts_sources_and_tokens_and_hashes_the_stream() -> None:
    sources = tuple(
        MixtureSource(f"s{i}", n, w, "reshuffled", np.arange(n, dtype=np.float64) + 1)
        for i, (n, w) in enumerate([(30, 2.0), (12, 1.0)])
    )
    mixture = Mixture(sources, Mixing(unit="tokens", block=4), seed=1, num_samples=100)
    drawer = mixture_drawer(mixture)
    request = StreamRequest(epoch=2, rank=1, world_size=2)
    summary = summarize_mixture(drawer, request, chunk=7)
    page = mixture_page(drawer, request)
    assert summary.length == page.shape[0] == 50
    assert summary.source_counts.tolist() == [int(np.sum(page < 30)), int(np.sum(page >= 30))]
    tokens = np.concatenate([s.token_lengths for s in sources if s.token_lengths is not None])
    assert summary.source_tokens is not None
    assert summary.source_tokens.tolist() == [
        float(tokens[page[page < 30]].sum()),
        float(tokens[page[page >= 30]].sum()),
    ]
    assert summary.sha256 == hashlib.sha256(np.asarray(page, dtype="<i8").tobytes()).hexdigest()


@pytest.mark.parametrize("algorithm", ["mixture-v1", "hf-interleave", "megatron-blend"])
def test_counts_before_any_position_are_the_stream_counted(
    algorithm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(drawers_module, "CHECKPOINT", 11)
    mixing = mixing_from_json(
        {"algorithm": algorithm, **({"block": 6} if algorithm == "mixture-v1" else {})}
    )
    mixture = Mixture(_sources([0.5, 0.25, 0.25], [60, 30, 17]), mixing, seed=8)
    drawer = mixture_drawer(mixture)
    for epoch in range(3):
        sources, _ = drawer.sources_range(epoch, 0, drawer.num_samples_at(epoch))
        for position in range(0, sources.shape[0] + 1, 5):
            expected = np.bincount(sources[:position], minlength=3)
            assert drawer.counts_before(epoch, position).tolist() == expected.tolist()


def test_shares_report_requested_realised_and_passes_with_a_warning_past_four() -> None:
    sources = tuple(
        MixtureSource(f"s{i}", n, w, "reshuffled", np.full(n, float(t)))
        for i, (n, w, t) in enumerate([(1000, 6.0, 10), (100, 3.0, 20), (10, 1.0, 5)])
    )
    mixture = Mixture(sources, Mixing(block=10), num_samples=1000)
    shares = mixture_shares(mixture_drawer(mixture), epoch=3)
    assert [s.samples for s in shares] == [600, 300, 100]
    assert [s.requested for s in shares] == pytest.approx([0.6, 0.3, 0.1])
    assert [s.realised for s in shares] == [0.6, 0.3, 0.1]
    assert [s.passes for s in shares] == [0.6, 3.0, 10.0]
    assert [s.warning is not None for s in shares] == [False, False, True]
    assert "10.0 times" in (shares[2].warning or "")
    tokens = np.array([6000.0, 6000.0, 500.0])
    assert [s.tokens_realised for s in shares] == pytest.approx((tokens / tokens.sum()).tolist())


@pytest.mark.parametrize("algorithm", ["mixture-v1", "hf-interleave", "megatron-blend"])
def test_a_mixture_records_its_mixing_algorithm_and_only_its_version_binds(algorithm: str) -> None:
    from sampleplan.core.versions import mixture_versions, reproduction_problems

    versions = mixture_versions(algorithm)
    assert versions["algorithm"] == algorithm
    assert (
        versions["algorithm_version"]
        == {
            "mixture-v1": "mixture-v1",
            "hf-interleave": "hf-interleave-v1",
            "megatron-blend": "megatron-blend-v1",
        }[algorithm]
    )
    assert reproduction_problems(versions) == []
    elsewhere = {**versions, "machine": "riscv64", "numpy": "9.0", "torch": "0.1"}
    assert reproduction_problems(elsewhere) == []
    assert reproduction_problems({**versions, "algorithm_version": f"{algorithm}-v9"})


# -- plans as sources ---------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["mixture-v1", "hf-interleave", "megatron-blend"])
def test_a_plan_source_gives_that_plans_stream_epochs_concatenated(algorithm: str) -> None:
    from sampleplan.core.config import PlanConfig
    from sampleplan.core.labels import labels_from_list
    from sampleplan.core.mixtures import PlanStream
    from sampleplan.core.prepared import prepare_plan
    from sampleplan.core.splitting import Split

    labels = labels_from_list([0, 1, 1, 2, 2, 2, 0, 1, 2, 2] * 4)
    plan = prepare_plan(
        labels,
        PlanConfig(split=Split(fractions=(0.75, 0.25), seed=3), num_samples=13, seed=5),
    )
    assert plan.population is not None  # dataset space differs from population space
    weights = [0.6, 0.4] if algorithm == "hf-interleave" else [3.0, 2.0]
    sources = (
        MixtureSource("text", 25, weights[0], "sequential"),
        MixtureSource("balanced", labels.size, weights[1], PlanStream(plan), size=30),
    )
    mixing = mixing_from_json({"algorithm": algorithm})
    mixture = Mixture(
        sources, mixing, seed=1, num_samples=None if algorithm == "hf-interleave" else 90
    )
    drawer = mixture_drawer(mixture)
    taken = np.concatenate([drawer.draw_epoch(e) for e in range(2)])
    from_plan = taken[taken >= 25] - 25
    plan_stream = np.concatenate(
        [plan.indices(StreamRequest(epoch=e, space="dataset")) for e in range(20)]
    )
    if algorithm == "hf-interleave":  # each epoch reads its sources from take 0
        for e in range(2):
            epoch = drawer.draw_epoch(e)
            mine = epoch[epoch >= 25] - 25
            assert mine.tolist() == plan_stream[: mine.shape[0]].tolist()
    else:
        assert from_plan.tolist() == plan_stream[: from_plan.shape[0]].tolist()
        assert from_plan.shape[0] > 13  # more than one of the plan's epochs


def test_sizes_count_a_plan_sources_population() -> None:
    sources = (MixtureSource("a", 100), MixtureSource("b", 100, size=25))
    mixture = Mixture(sources, mixing_from_json({"proportions": "sizes"}))
    assert mixture.proportions.tolist() == [0.8, 0.2]


def test_positions_past_what_is_served_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from sampleplan.core.errors import InvalidStreamRequest

    monkeypatch.setattr(drawers_module, "MAX_SEQUENTIAL", 1000)
    monkeypatch.setattr(drawers_module, "CHECKPOINT", 100)
    blend = mixture_drawer(
        Mixture(_sources([1.0, 1.0], [5, 5]), Mixing(algorithm="megatron-blend"), num_samples=600)
    )
    assert blend.draw_range(1, 0, 10).shape == (10,)
    with pytest.raises(InvalidStreamRequest, match="megatron-blend"):
        blend.draw_range(2, 0, 10)
    hf = mixture_drawer(
        Mixture(
            _sources([0.999, 0.001], [10**6, 10**6], "sequential"),
            Mixing(algorithm="hf-interleave", stopping="all_exhausted"),
        )
    )
    with pytest.raises(InvalidPlanConfig, match="longer than"):
        hf.num_samples_at(0)
    _, v1 = _v1([1.0], 8)
    with pytest.raises(InvalidStreamRequest, match="mixture-v1"):
        v1.stream_range(2**62 - 5, 2**62 + 5)


@pytest.mark.parametrize(
    "orders", [("reshuffled",) * 3, ("reshuffled", "sequential", "reshuffled")]
)
def test_reshuffled_elements_are_the_same_with_or_without_the_kernels(
    orders: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(4)
    lengths = np.array([1, 1000, 2**40 + 7], dtype=np.int64)
    sources = rng.integers(0, 3, size=5000)
    takes = (rng.random(5000) * lengths[sources] * 5).astype(np.int64)
    fast = source_elements(orders, lengths, 9, sources, takes)  # type: ignore[arg-type]
    monkeypatch.setattr(kernels, "reshuffle", None)
    middle = source_elements(orders, lengths, 9, sources, takes)  # type: ignore[arg-type]
    monkeypatch.setattr(kernels, "feistel", None)
    slow = source_elements(orders, lengths, 9, sources, takes)  # type: ignore[arg-type]
    assert fast.tolist() == middle.tolist() == slow.tolist()


@settings(max_examples=30, deadline=None)
@given(
    weights=st.lists(st.floats(min_value=1e-4, max_value=1.0), min_size=1, max_size=40),
    block=st.integers(1, 500),
    start=st.integers(0, 2**PERIOD_BITS - 50),
    width=st.integers(0, 49),
)
def test_the_extras_kernel_and_its_numpy_twin_agree(
    weights: list[float], block: int, start: int, width: int
) -> None:
    p = np.array(weights) / np.sum(weights)
    quotas = WindowQuotas.build(p, block)
    assert quotas.extras(start, start + width).tolist() == (
        quotas.extras_numpy(start, start + width).tolist()
    )
    assert quotas.extras(0, 3).tolist() == quotas.extras_numpy(0, 3).tolist()
    top = 2**PERIOD_BITS
    assert quotas.extras(top - 2, top).tolist() == quotas.extras_numpy(top - 2, top).tolist()
