"""Batch plans (``batches-v1``): contracts counted, the definition written out, pinned batches.

The module docstring of ``sampleplan.core.batches`` (NOTE [batches-v1]) is the spec. The
reference below implements it again, scalar and in plain Python integers, from the text
(Philox4x64-10 from the spec implementation in ``tests.helpers.philox``); the vectorised code
must agree with it batch for batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampleplan.core.batches import (
    BATCHES_VERSION,
    BatchTable,
    ClassQuota,
    MPerClass,
    batch_page,
    batching_from_json,
    default_num_batches,
    keyed_permutation,
)
from sampleplan.core.config import PlanConfig
from sampleplan.core.errors import InvalidPlanConfig
from sampleplan.core.labels import labels_from_list
from sampleplan.core.prepared import prepare_plan
from sampleplan.core.streams import StreamRequest
from tests.helpers.batches_spec import M64, TAG, spec_members, spec_mix, spec_perm
from tests.helpers.philox import spec_philox4x64_10
from tests.helpers.statistics import chi_square_limit

# ---------------------------------------------------------------------------------------
# The definition, written out from NOTE [batches-v1] (steps 1 to 3 in tests.helpers).
# ---------------------------------------------------------------------------------------


def spec_draw(members: dict[int, list[int]], k_member: int, k: int, j: int) -> int:
    n = len(members[k])
    t, p = divmod(j, n)
    return members[k][spec_perm(n, spec_mix((spec_mix(k_member ^ k) + t) & M64), p)]


def spec_batch(
    codes: Sequence[int], batching: dict[str, Any], seed: int, epoch: int, b: int
) -> list[int]:
    members = spec_members(codes)
    k_class, k_member, _, _ = spec_philox4x64_10((0, 0, 0, TAG), (seed, epoch))
    if batching["kind"] == "class_quota":
        out = []
        for name in sorted(batching["quota"], key=int):
            q = batching["quota"][name]
            out += [spec_draw(members, k_member, int(name), b * q + i) for i in range(q)]
        return out
    m, size = batching["m"], batching["batch_size"]
    classes = sorted(members)
    big_k, g = len(classes), size // m
    per_round = big_k // g
    left_out = big_k - per_round * g
    r, u = divmod(b, per_round)
    k_round = spec_philox4x64_10((r, 1, 0, TAG), (seed, epoch))[0]
    out = []
    for slot in range(g):
        h = (r * left_out + left_out + spec_perm(per_round * g, k_round, u * g + slot)) % big_k
        k = classes[spec_perm(big_k, k_class, h)]
        prior = r - (r * left_out - h + big_k - 1) // big_k
        out += [spec_draw(members, k_member, k, prior * m + i) for i in range(m)]
    return out


def _table(
    codes: Sequence[int], batching: dict[str, Any], num_batches: int | None = None
) -> BatchTable:
    spec = batching_from_json(batching)
    assert spec is not None
    names = list(range(max(codes) + 1))
    return BatchTable.build(np.asarray(codes), names, spec, num_batches)


def _codes(counts: Sequence[int], seed: int = 0) -> list[int]:
    codes = [c for c, n in enumerate(counts) for _ in range(n)]
    return np.random.default_rng(seed).permutation(codes).tolist()


M_PER_CLASS = {"kind": "m_per_class", "m": 3, "batch_size": 12}
QUOTA = {"kind": "class_quota", "quota": {"0": 2, "2": 3, "3": 1}}


def test_version() -> None:
    assert BATCHES_VERSION == "batches-v1"


def test_mix_is_splitmix64s_finaliser() -> None:
    # SplitMix64 with state 0: the first output is mix(0x9E3779B97F4A7C15).
    assert spec_mix(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF
    from sampleplan.core.batches import mix64

    values = np.array([0, 1, 0x9E3779B97F4A7C15, M64], dtype=np.uint64)
    assert [int(v) for v in mix64(values)] == [spec_mix(int(v)) for v in values]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3000), key=st.integers(0, M64))
def test_keyed_permutation_is_the_defined_bijection(n: int, key: int) -> None:
    got = keyed_permutation(np.arange(n), n, key)
    assert sorted(got.tolist()) == list(range(n))
    for x in {0, n // 2, n - 1}:
        assert int(got[x]) == spec_perm(n, key, x)


@pytest.mark.parametrize(
    ("counts", "batching", "num_batches"),
    [
        ((7, 3, 12, 5, 1, 9, 4), M_PER_CLASS, 40),  # 7 classes, 4 per batch: R = 3 left out
        ((6, 6, 6, 6), {"kind": "m_per_class", "m": 2, "batch_size": 4}, 15),  # R = 0
        ((5, 0, 8, 2), QUOTA, 17),  # class 1 empty; class 3 smaller than nothing
        ((1, 2, 3), {"kind": "m_per_class", "m": 4, "batch_size": 12}, 5),  # m > every n_k
    ],
)
@pytest.mark.parametrize(("seed", "epoch"), [(0, 0), (7, 3), (2**32 - 1, 2**32 - 1)])
def test_batches_are_the_ones_defined(
    counts: tuple[int, ...], batching: dict[str, Any], num_batches: int, seed: int, epoch: int
) -> None:
    codes = _codes(counts)
    table = _table(codes, batching, num_batches)
    got = table.draw(seed, epoch, np.arange(num_batches))
    for b in range(num_batches):
        assert got[b].tolist() == spec_batch(codes, batching, seed, epoch, b), b


def test_pinned_batches() -> None:
    """batches-v1 pinned: a change here is a new BATCHES_VERSION, not a new expected value."""
    codes = _codes((7, 3, 12, 5, 1, 9, 4))
    table = _table(codes, M_PER_CLASS, 40)
    assert table.draw(5, 2, [0, 1, 39]).tolist() == PINNED_M_PER_CLASS
    quota = _table(_codes((5, 0, 8, 2)), QUOTA, 17)
    assert quota.draw(5, 2, [0, 16]).tolist() == PINNED_QUOTA


# Batch 0 opens with the one-sample class 4 three times: m exceeds its size.
PINNED_M_PER_CLASS = [
    [0, 0, 0, 33, 23, 29, 9, 11, 36, 7, 6, 2],
    [21, 4, 3, 34, 25, 16, 31, 15, 19, 8, 28, 38],
    [0, 0, 0, 18, 25, 18, 10, 20, 35, 26, 21, 13],
]
PINNED_QUOTA = [[4, 2, 10, 9, 11, 12], [4, 2, 9, 1, 3, 8]]


# ---------------------------------------------------------------------------------------
# The contracts, counted.
# ---------------------------------------------------------------------------------------


def _check_contract(table: BatchTable, codes: np.ndarray, batches: np.ndarray) -> int:
    """Count every batch's classes against the contract; the number of batches checked."""
    batching = table.batching
    for batch in batches:
        per_class = Counter(codes[batch].tolist())
        if isinstance(batching, MPerClass):
            assert len(per_class) == batching.batch_size // batching.m
            assert set(per_class.values()) == {batching.m}
        else:
            assert isinstance(batching, ClassQuota)
            assert per_class == {int(name): q for name, q in batching.quota}
    return int(batches.shape[0])


def _check_cycles(table: BatchTable, codes: np.ndarray, batches: np.ndarray) -> None:
    """Each class's members, in batch order, go through whole permutations of the class."""
    flat = batches.reshape(-1)
    for k in np.unique(codes[flat]):
        drawn = flat[codes[flat] == k]
        members = np.flatnonzero(codes == k)
        n = members.shape[0]
        for start in range(0, drawn.shape[0], n):
            cycle = drawn[start : start + n]
            # No member repeats before the class is used up; a full cycle is the class.
            assert np.unique(cycle).shape[0] == cycle.shape[0]
            if cycle.shape[0] == n:
                assert sorted(cycle.tolist()) == members.tolist()


@pytest.mark.parametrize(
    ("counts", "batching"),
    [
        ((40, 13, 7, 22, 3, 9, 30, 5, 11), {"kind": "m_per_class", "m": 4, "batch_size": 16}),
        ((40, 13, 7, 22, 3, 9, 30, 5, 11), {"kind": "m_per_class", "m": 2, "batch_size": 18}),
        ((3, 3), {"kind": "m_per_class", "m": 5, "batch_size": 10}),
        ((50, 4, 9), {"kind": "class_quota", "quota": {"0": 5, "1": 5, "2": 2}}),
    ],
)
def test_every_batch_of_many_epochs_and_seeds_meets_its_contract(
    counts: tuple[int, ...], batching: dict[str, Any]
) -> None:
    codes = np.asarray(_codes(counts, seed=1))
    table = _table(codes.tolist(), batching, 60)
    checked = 0
    for seed in (0, 1, 99):
        for epoch in range(8):
            batches = table.draw(seed, epoch, np.arange(table.num_batches))
            checked += _check_contract(table, codes, batches)
            _check_cycles(table, codes, batches)
    assert checked == 3 * 8 * 60


@st.composite
def batch_plans(draw: st.DrawFn) -> tuple[list[int], dict[str, Any]]:
    """Random class counts (some empty, some tiny) and a contract they can meet."""
    counts = draw(st.lists(st.integers(0, 12), min_size=1, max_size=9))
    present = [c for c, n in enumerate(counts) if n]
    if not present:
        counts[0], present = 1, [0]
    codes = _codes(counts, seed=draw(st.integers(0, 5)))
    if draw(st.booleans()):
        m = draw(st.integers(1, 5))
        g = draw(st.integers(1, len(present)))
        return codes, {"kind": "m_per_class", "m": m, "batch_size": m * g}
    named = draw(st.lists(st.sampled_from(present), min_size=1, unique=True))
    quota = {str(c): draw(st.integers(1, 6)) for c in named}
    return codes, {"kind": "class_quota", "quota": quota}


@settings(max_examples=40, deadline=None)
@given(
    plan=batch_plans(),
    num_batches=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
    epoch=st.integers(0, 50),
)
def test_any_plan_meets_its_contract_and_cycles(
    plan: tuple[list[int], dict[str, Any]], num_batches: int, seed: int, epoch: int
) -> None:
    codes, batching = plan
    table = _table(codes, batching, num_batches)
    batches = table.draw(seed, epoch, np.arange(num_batches))
    assert _check_contract(table, np.asarray(codes), batches) == num_batches
    _check_cycles(table, np.asarray(codes), batches)
    b = num_batches // 2
    assert batches[b].tolist() == spec_batch(codes, batching, seed, epoch, b)


def test_the_batch_at_offset_k_alone_is_the_kth_of_the_epoch() -> None:
    codes = _codes((40, 13, 7, 22, 3, 9, 30, 5, 11))
    table = _table(codes, {"kind": "m_per_class", "m": 2, "batch_size": 8}, 500)
    epoch = table.draw(3, 4, np.arange(500))
    for k in (0, 1, 3, 4, 5, 250, 499):
        assert (table.draw(3, 4, [k])[0] == epoch[k]).all()
    pieces = [table.draw(3, 4, np.arange(a, b)) for a, b in ((0, 7), (7, 300), (300, 500))]
    assert (np.concatenate(pieces) == epoch).all()


@pytest.mark.parametrize(("num_batches", "world_size"), [(60, 4), (61, 4), (5, 3), (2, 5)])
def test_ranks_take_whole_batches_equally_and_together_the_epoch(
    num_batches: int, world_size: int
) -> None:
    codes = np.asarray(_codes((20, 15, 9, 4)))
    table = _table(codes.tolist(), {"kind": "m_per_class", "m": 2, "batch_size": 4}, num_batches)
    epoch = table.draw(0, 1, np.arange(num_batches))
    shards = [
        batch_page(table, 0, StreamRequest(epoch=1, rank=r, world_size=world_size), None)
        for r in range(world_size)
    ]
    length = -(-num_batches // world_size)
    assert [s.shape for s in shards] == [(length, 4)] * world_size
    # DistributedSampler's rule on the list of batches: pad from the start, then [r::w].
    padded = [epoch[i % num_batches].tolist() for i in range(length * world_size)]
    for rank, shard in enumerate(shards):
        assert shard.tolist() == padded[rank::world_size]
    if num_batches % world_size == 0:  # disjoint: no batch on two ranks, none left out
        together = sorted(tuple(b) for s in shards for b in s.tolist())
        assert together == sorted(tuple(b) for b in epoch.tolist())
    # A page of a rank's batches is a slice of its batches.
    page = batch_page(
        table, 0, StreamRequest(epoch=1, rank=1, world_size=world_size, offset=1, limit=2), None
    )
    assert page.tolist() == shards[1][1:3].tolist()


def test_a_padded_rank_page_wrapping_a_huge_epoch_costs_its_own_size() -> None:
    codes = _codes((20, 15, 9, 4, 7))
    table = _table(codes, {"kind": "m_per_class", "m": 2, "batch_size": 4}, 10**12 + 1)
    request = StreamRequest(epoch=2, rank=2, world_size=3, offset=333_333_333_330, limit=10)
    page = batch_page(table, 9, request, None)
    wanted = [(2 + 3 * i) % (10**12 + 1) for i in range(333_333_333_330, 333_333_333_334)]
    assert wanted[-1] < wanted[0]  # the page wraps around the end of the epoch
    assert page.tolist() == [table.draw(9, 2, [b])[0].tolist() for b in wanted]
    assert page.tolist()[-1] == spec_batch(
        codes, {"kind": "m_per_class", "m": 2, "batch_size": 4}, 9, 2, wanted[-1]
    )


def test_space_dataset_maps_population_positions_back() -> None:
    labels = labels_from_list(_codes((30, 12, 9)))
    config = PlanConfig(
        split=None,
        batching=batching_from_json({"kind": "class_quota", "quota": {"0": 2, "1": 2, "2": 2}}),
    )
    from sampleplan.core.splitting import Split

    split_config = PlanConfig(split=Split(seed=3, fractions=(0.7, 0.3)), batching=config.batching)
    prepared = prepare_plan(labels, split_config)
    population = prepared.batches(StreamRequest(epoch=2))
    dataset = prepared.batches(StreamRequest(epoch=2, space="dataset"))
    assert prepared.population is not None
    assert (prepared.population[population] == dataset).all()
    for batch in dataset:
        assert Counter(labels.codes[batch].tolist()) == {0: 2, 1: 2, 2: 2}


# ---------------------------------------------------------------------------------------
# Frequencies: classes and members as the contract expects.
# ---------------------------------------------------------------------------------------


def test_class_and_member_frequencies_match_the_contract() -> None:
    counts = (12, 5, 9, 7, 3, 10, 6)
    codes = np.asarray(_codes(counts, seed=2))
    table = _table(codes.tolist(), {"kind": "m_per_class", "m": 2, "batch_size": 6}, 30)
    k, g = len(counts), 3
    first_classes: Counter[int] = Counter()
    first_member: dict[int, Counter[int]] = {c: Counter() for c in range(k)}
    appearances = np.zeros(k, dtype=np.int64)
    epochs = 1500
    for epoch in range(epochs):
        batches = table.draw(11, epoch, np.arange(30))
        classes = codes[batches]
        appearances += np.bincount(classes[:, ::2].reshape(-1), minlength=k)
        # Batch 0's classes, and each class's first member, over epochs: uniform.
        first_classes.update(classes[0, ::2].tolist())
        for c in range(k):
            drawn = batches.reshape(-1)[classes.reshape(-1) == c]
            first_member[c][int(drawn[0])] += 1
    # Every class sits out equally often: each appears in G/K of the batches, up to one
    # round's rounding per epoch.
    expected = epochs * 30 * g / k
    assert np.all(np.abs(appearances - expected) <= epochs)
    observed = np.array([first_classes[c] for c in range(k)], dtype=np.float64)
    share = epochs * g / k
    assert float(((observed - share) ** 2 / share).sum()) < chi_square_limit(k - 1)
    for c, n in enumerate(counts):
        if n == 1:
            continue
        seen = np.array([first_member[c][m] for m in np.flatnonzero(codes == c)], dtype=np.float64)
        chi = float(((seen - epochs / n) ** 2 / (epochs / n)).sum())
        assert chi < chi_square_limit(n - 1), (c, seen)


# ---------------------------------------------------------------------------------------
# Configs and bad input.
# ---------------------------------------------------------------------------------------


def test_default_num_batches_is_one_pass_rounded_down() -> None:
    assert default_num_batches(1000, 32) == 31  # MPerClassSampler: 1000 - 1000 % 32, / 32
    assert default_num_batches(10, 32) == 1
    labels = labels_from_list(_codes((40, 30, 30)))
    prepared = prepare_plan(
        labels,
        PlanConfig(batching=batching_from_json({"kind": "m_per_class", "m": 4, "batch_size": 8})),
    )
    assert prepared.num_batches == 12


def test_canonical_form_only_grows_for_batch_plans() -> None:
    assert "batching" not in PlanConfig().canonical(10)
    config = PlanConfig(batching=MPerClass(m=2, batch_size=4), num_batches=9)
    assert config.canonical(10, 9)["batching"] == {"kind": "m_per_class", "m": 2, "batch_size": 4}
    assert config.canonical(10, 9)["num_batches"] == 9
    quota = batching_from_json({"kind": "class_quota", "quota": {"b": 1, "a": 2, "c": 0}})
    assert quota is not None
    assert quota.canonical() == {"kind": "class_quota", "quota": {"a": 2, "b": 1}}


@pytest.mark.parametrize(
    ("batching", "message"),
    [
        ("m_per_class", "should be an object or null"),
        ({"kind": "m_per_batch"}, "kind should be 'm_per_class' or 'class_quota'"),
        ({"kind": "m_per_class", "m": 4}, "needs batch_size"),
        ({"kind": "m_per_class", "m": 4, "batch_size": 32, "x": 1}, "unknown: x"),
        ({"kind": "m_per_class", "m": 3, "batch_size": 32}, "m must divide batch_size"),
        ({"kind": "m_per_class", "m": 0, "batch_size": 32}, "positive integer value"),
        ({"kind": "m_per_class", "m": -4, "batch_size": 32}, "positive integer value"),
        ({"kind": "m_per_class", "m": 4.0, "batch_size": 32}, "should be an integer"),
        ({"kind": "m_per_class", "m": True, "batch_size": 32}, "should be an integer"),
        ({"kind": "m_per_class", "m": "4", "batch_size": 32}, "should be an integer"),
        ({"kind": "m_per_class", "m": 1, "batch_size": 2**21}, "at most 2\\*\\*20"),
        ({"kind": "class_quota", "quota": {}}, "non-empty object"),
        ({"kind": "class_quota", "quota": [1, 2]}, "non-empty object"),
        ({"kind": "class_quota", "quota": {"a": 0, "b": 0}}, "at least one sample"),
        ({"kind": "class_quota", "quota": {"a": -1}}, "non-negative integers"),
        ({"kind": "class_quota", "quota": {"a": float("nan")}}, "non-negative integers"),
        ({"kind": "class_quota", "quota": {"a": 2**21}}, "at most 2\\*\\*20"),
    ],
)
def test_bad_batching_is_refused(batching: Any, message: str) -> None:
    with pytest.raises(InvalidPlanConfig, match=message):
        batching_from_json(batching)


@pytest.mark.parametrize(
    ("counts", "batching", "extra", "message"),
    [
        ((5, 5, 5), {"kind": "m_per_class", "m": 2, "batch_size": 8}, {}, "need 4 classes"),
        ((5, 0, 5), {"kind": "m_per_class", "m": 2, "batch_size": 6}, {}, "need 3 classes"),
        ((5, 5), {"kind": "class_quota", "quota": {"7": 1}}, {}, "does not have: '7'"),
        ((5, 5), {"kind": "class_quota", "quota": {"0": 1}}, {"num_batches": 0}, "positive"),
        ((5, 5), {"kind": "class_quota", "quota": {"0": 1}}, {"num_batches": -3}, "positive"),
        ((5, 5), {"kind": "class_quota", "quota": {"0": 4}}, {"num_batches": 2**61}, "2\\*\\*62"),
        ((5, 5), {"kind": "class_quota", "quota": {"0": 1}}, {"replacement": False}, "replacement"),
    ],
)
def test_batching_that_the_labels_cannot_meet_is_refused(
    counts: tuple[int, ...], batching: dict[str, Any], extra: dict[str, Any], message: str
) -> None:
    labels = labels_from_list([c for c, n in enumerate(counts) for _ in range(n)])
    with pytest.raises(InvalidPlanConfig, match=message):
        prepare_plan(labels, PlanConfig(batching=batching_from_json(batching), **extra))


def test_a_quota_for_a_class_outside_the_population_is_refused() -> None:
    # Class 1 exists in the dataset but not in the population (a split left it out).
    spec = batching_from_json({"kind": "class_quota", "quota": {"0": 1, "1": 1}})
    assert spec is not None
    with pytest.raises(InvalidPlanConfig, match="no sample in the population: '1'"):
        BatchTable.build(np.array([0, 2, 2, 0]), [0, 1, 2], spec, None)


def test_num_batches_needs_batching() -> None:
    with pytest.raises(InvalidPlanConfig, match="only applies to plans with 'batching'"):
        PlanConfig(num_batches=3)


def test_draw_bounds() -> None:
    table = _table([0, 1, 1, 0], {"kind": "class_quota", "quota": {"0": 1, "1": 1}}, 4)
    assert table.draw(0, 0, []).shape == (0, 2)
    for bad in ([4], [-1]):
        with pytest.raises(ValueError, match="batch indices"):
            table.draw(0, 0, bad)
    with pytest.raises(ValueError, match="seed and epoch"):
        table.draw(-1, 0, [0])
