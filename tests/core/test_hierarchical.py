"""Algorithm ``hierarchical-v1``: slices, determinism, distribution, and the definition.

The module docstring of ``sampleplan.core.hierarchical`` (NOTE [hierarchical-v1]) is the
definition of the stream. ``_spec_*`` below reimplements it from that text alone, in
plain Python integers and floats (Python floats are IEEE binary64, as the spec needs),
and the vectorised module is checked against it on random inputs.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sampleplan.core.hierarchical import (
    ALGORITHM_VERSION,
    HierarchicalTable,
    _alias_table,
    _members_by_class,
    _mulhi,
    _philox_blocks,
    _sequential_sum,
    draw_hierarchical,
)
from tests.helpers.philox import spec_philox4x64_10
from tests.helpers.statistics import chi_square_limit

U64 = 2**64 - 1

# ---------------------------------------------------------------------------------------
# The definition, written again from NOTE [hierarchical-v1] in plain Python.
# ---------------------------------------------------------------------------------------


@dataclass
class _SpecTable:
    mode: str
    prob: list[float]
    alias: list[int]
    members: list[list[int]]  # per class, ascending; empty in mode "sample"


def _spec_alias_table(masses: Sequence[float]) -> tuple[list[float], list[int]]:
    size = len(masses)
    total = 0.0
    for mass in masses:
        total += mass
    mean = total / size
    p = [mass / mean for mass in masses]
    heavies = [k for k in range(size) if p[k] >= 1.0] or [p.index(max(p))]
    lights = [k for k in range(size) if k not in set(heavies)]
    a, b = len(heavies), len(lights)
    excess = [0.0]
    for h in heavies:
        excess.append(excess[-1] + (p[h] - 1.0))
    deficit = [0.0]
    for light in lights:
        deficit.append(deficit[-1] + (1.0 - p[light]))
    prob, alias = [0.0] * size, [0] * size
    for k in range(1, b + 1):
        j = min(a, 1 + sum(1 for jj in range(1, a + 1) if excess[jj] <= deficit[k - 1]))
        prob[lights[k - 1]], alias[lights[k - 1]] = p[lights[k - 1]], heavies[j - 1]
    for j in range(1, a):
        reached = [k for k in range(b + 1) if deficit[k] >= excess[j]]
        value = 1.0 if not reached else min(1.0, max(0.0, 1.0 - (deficit[reached[0]] - excess[j])))
        prob[heavies[j - 1]], alias[heavies[j - 1]] = value, heavies[j]
    prob[heavies[-1]], alias[heavies[-1]] = 1.0, heavies[-1]
    return prob, alias


def _spec_table(codes: Sequence[int], weights: Sequence[float]) -> _SpecTable:
    num_classes = max(codes) + 1
    members: list[list[int]] = [[] for _ in range(num_classes)]
    for position, code in enumerate(codes):
        members[code].append(position)
    determined = all(len({weights[i] for i in group}) <= 1 for group in members)
    if determined:
        masses = [float(len(group)) * (weights[group[0]] if group else 0.0) for group in members]
        return _SpecTable("class", *_spec_alias_table(masses), members)
    return _SpecTable("sample", *_spec_alias_table(list(weights)), [])


def _spec_draw(table: _SpecTable, seed: int, epoch: int, i: int) -> int:
    r0, r1, r2, _ = spec_philox4x64_10((i, 0, 0, 0), (seed, epoch))
    column = (r0 * len(table.prob)) >> 64
    coin = (r1 >> 11) * 2.0**-53
    category = column if coin < table.prob[column] else table.alias[column]
    if table.mode == "sample":
        return category
    group = table.members[category]
    return group[(r2 * len(group)) >> 64]


# ---------------------------------------------------------------------------------------
# Inputs.
# ---------------------------------------------------------------------------------------

_WEIGHT_VALUES = st.one_of(
    st.sampled_from([0.0, 1.0, 0.5, 1.0 / 3.0, 0.1, 2.0, 1e-9, 1e9]),
    st.floats(0.0, 100.0, allow_subnormal=False),
)


@st.composite
def populations(draw: st.DrawFn) -> tuple[list[int], list[float]]:
    """Codes and weights: class-determined about half the time, with zeros, never all zero."""
    size = draw(st.integers(1, 40))
    num_classes = draw(st.integers(1, 7))
    codes = draw(st.lists(st.integers(0, num_classes - 1), min_size=size, max_size=size))
    if draw(st.booleans()):
        per_class = draw(st.lists(_WEIGHT_VALUES, min_size=num_classes, max_size=num_classes))
        weights = [per_class[c] for c in codes]
    else:
        weights = draw(st.lists(_WEIGHT_VALUES, min_size=size, max_size=size))
    if sum(weights) / max(size, max(codes) + 1) < 2 * sys.float_info.min:
        # All zero, or a mean below float64's normal range (one tiny weight among zeros):
        # build() refuses those (tested on their own), so lift one weight. The mean it
        # checks is the weights' or the classes' masses' (as many as the classes, empty
        # ones too: one sample of weight float_info.min in class 1 of 2 is refused); twice
        # the bound leaves room for the masses' rounding.
        weights[draw(st.integers(0, size - 1))] = draw(st.floats(0.01, 10.0))
    return codes, weights


def _build(codes: Sequence[int], weights: Sequence[float]) -> HierarchicalTable:
    return HierarchicalTable.build(
        np.asarray(codes, dtype=np.int64), np.asarray(weights, dtype=np.float64)
    )


def _implied_distribution(
    prob: npt.NDArray[np.float64], alias: npt.NDArray[np.signedinteger[Any]]
) -> npt.NDArray[np.float64]:
    """The exact probability of each category that an alias table encodes."""
    size = prob.shape[0]
    mass = prob.copy()  # each bucket keeps prob of its own category ...
    mass += np.bincount(alias, weights=1.0 - prob, minlength=size)  # ... and gives the rest away
    distribution: npt.NDArray[np.float64] = mass / size
    return distribution


# ---------------------------------------------------------------------------------------
# The definition.
# ---------------------------------------------------------------------------------------


def test_version() -> None:
    assert ALGORITHM_VERSION == "hierarchical-v1"


@pytest.mark.parametrize(
    ("ctr", "key", "expected"),
    [
        (
            (0, 0, 0, 0),
            (0, 0),
            (0x16554D9ECA36314C, 0xDB20FE9D672D0FDC, 0xD7E772CEE186176B, 0x7E68B68AEC7BA23B),
        ),
        (
            (U64,) * 4,
            (U64, U64),
            (0x87B092C3013FE90B, 0x438C3C67BE8D0224, 0x9CC7D7C69CD777B6, 0xA09CAEBF594F0BA0),
        ),
        (
            (0x243F6A8885A308D3, 0x13198A2E03707344, 0xA4093822299F31D0, 0x082EFA98EC4E6C89),
            (0x452821E638D01377, 0xBE5466CF34E90C6C),
            (0xA528F45403E61D95, 0x38C72DBD566E9788, 0xA5A1610E72FD18B5, 0x57BD43B5E52B7FE6),
        ),
    ],
)
def test_philox_known_answers(
    ctr: tuple[int, ...], key: tuple[int, int], expected: tuple[int, ...]
) -> None:
    """Random123's kat_vectors for philox4x64 10 rounds, for the spec and for numpy."""
    assert spec_philox4x64_10(ctr, key) == expected
    counter = sum(word << (64 * i) for i, word in enumerate(ctr))
    numpy_philox = np.random.Philox(
        counter=(counter - 1) % 2**256, key=np.array(key, dtype=np.uint64)
    )
    assert tuple(int(v) for v in numpy_philox.random_raw(4)) == expected


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, U64),
    epoch=st.integers(0, U64),
    start=st.one_of(st.integers(0, 1000), st.integers(2**64 - 8, 2**64 - 3)),
)
def test_philox_blocks_are_the_blocks_of_the_definition(seed: int, epoch: int, start: int) -> None:
    words = _philox_blocks(seed, epoch, start).random_raw(12).reshape(3, 4)
    for row, i in enumerate(range(start, start + 3)):
        assert tuple(int(v) for v in words[row]) == spec_philox4x64_10((i, 0, 0, 0), (seed, epoch))


@settings(max_examples=200, deadline=None)
@given(
    x=st.lists(
        st.one_of(st.integers(0, U64), st.sampled_from([0, 1, 2**32 - 1, 2**32, U64])),
        min_size=1,
        max_size=8,
    ),
    n=st.one_of(st.integers(0, 2**32 - 1), st.integers(0, U64), st.sampled_from([1, 2**32, U64])),
)
def test_mulhi_is_the_exact_high_word(x: list[int], n: int) -> None:
    expected = [(v * n) >> 64 for v in x]
    assert _mulhi(np.array(x, dtype=np.uint64), n).tolist() == expected
    assert (
        _mulhi(np.array(x, dtype=np.uint64), np.full(len(x), n, dtype=np.uint64)).tolist()
        == expected
    )


@settings(max_examples=300, deadline=None)
@given(population=populations())
@example(population=([1], [sys.float_info.min * 2]))  # class 0 empty: masses' mean normal
def test_table_is_the_one_defined(population: tuple[list[int], list[float]]) -> None:
    codes, weights = population
    table = _build(codes, weights)
    spec = _spec_table(codes, weights)
    assert table.mode == spec.mode
    assert table.prob.tolist() == spec.prob
    assert table.alias.tolist() == spec.alias


@settings(max_examples=100, deadline=None)
@given(
    population=populations(),
    seed=st.integers(0, U64),
    epoch=st.integers(0, U64),
    start=st.one_of(
        st.integers(0, 100), st.integers(10**12, 10**12 + 100), st.integers(2**64 - 40, 2**64 - 20)
    ),
)
def test_draws_are_the_ones_defined(
    population: tuple[list[int], list[float]], seed: int, epoch: int, start: int
) -> None:
    codes, weights = population
    drawn = draw_hierarchical(_build(codes, weights), seed, epoch, start, start + 20)
    spec = _spec_table(codes, weights)
    assert drawn.dtype == np.int64
    assert drawn.tolist() == [_spec_draw(spec, seed, epoch, i) for i in range(start, start + 20)]


def test_pinned_streams() -> None:
    """hierarchical-v1 streams of two fixed inputs, hard-coded.

    If this fails, the definition changed: streams that users rely on to be reproducible
    would silently differ. Do not update these numbers; restore the definition, or give
    the new definition a new ALGORITHM_VERSION (and keep the old one serving its plans).
    """
    codes = [2, 0, 1, 0, 2, 2, 1, 0, 1, 2, 2, 2]
    class_table = _build(codes, [1.0 / codes.count(c) for c in codes])
    sample_table = _build(codes, [0.5, 0.0, 2.0, 1.25, 3.0, 0.125, 0.0, 7.5, 1.0, 0.25, 4.0, 0.75])
    assert class_table.mode == "class"
    assert sample_table.mode == "sample"
    assert draw_hierarchical(class_table, 42, 3, 0, 16).tolist() == PINNED_CLASS_STREAM
    assert draw_hierarchical(sample_table, 42, 3, 0, 16).tolist() == PINNED_SAMPLE_STREAM
    assert draw_hierarchical(class_table, 7, 0, 10**12, 10**12 + 6).tolist() == PINNED_CLASS_FAR
    assert draw_hierarchical(sample_table, 7, 0, 10**12, 10**12 + 6).tolist() == PINNED_SAMPLE_FAR


PINNED_CLASS_STREAM = [2, 5, 1, 8, 11, 6, 1, 9, 6, 1, 8, 1, 3, 8, 8, 2]
PINNED_CLASS_FAR = [6, 1, 2, 0, 7, 11]
PINNED_SAMPLE_STREAM = [10, 8, 2, 10, 7, 7, 3, 7, 7, 4, 7, 0, 3, 4, 7, 7]
PINNED_SAMPLE_FAR = [7, 4, 7, 10, 2, 10]


# ---------------------------------------------------------------------------------------
# Slices and determinism.
# ---------------------------------------------------------------------------------------

_CLASS_INPUTS = ([3, 1, 0, 3, 3, 2, 1, 3, 0, 3] * 50, [1.0] * 500)
_SAMPLE_INPUTS = (list(range(7)) * 70, [float(i % 11) for i in range(490)])
_CLASS_TABLE = _build(*_CLASS_INPUTS)
_SAMPLE_TABLE = _build(*_SAMPLE_INPUTS)


@settings(max_examples=150, deadline=None)
@given(
    table=st.sampled_from([_CLASS_TABLE, _SAMPLE_TABLE]),
    base=st.sampled_from([0, 5 * 10**6, 10**12 - 500, 2**40 - 300, 2**63, 2**64 - 3000]),
    cuts=st.lists(st.integers(0, 2500), min_size=2, max_size=6),
    seed=st.integers(0, U64),
    epoch=st.integers(0, 2**32),
)
def test_a_slice_is_the_concatenation_of_its_pieces(
    table: HierarchicalTable, base: int, cuts: list[int], seed: int, epoch: int
) -> None:
    bounds = [base + c for c in sorted(cuts)]
    whole = draw_hierarchical(table, seed, epoch, bounds[0], bounds[-1])
    pieces = [draw_hierarchical(table, seed, epoch, a, b) for a, b in itertools.pairwise(bounds)]
    assert np.array_equal(whole, np.concatenate(pieces))


def test_a_long_slice_crosses_chunks_consistently() -> None:
    whole = draw_hierarchical(_SAMPLE_TABLE, 3, 1, 10**12, 10**12 + 100_003)
    tail = draw_hierarchical(_SAMPLE_TABLE, 3, 1, 10**12 + 77_777, 10**12 + 100_003)
    assert np.array_equal(whole[77_777:], tail)


@pytest.mark.parametrize("inputs", [_CLASS_INPUTS, _SAMPLE_INPUTS], ids=["class", "sample"])
def test_same_inputs_same_stream_other_keys_other_stream(
    inputs: tuple[list[int], list[float]],
) -> None:
    stream = draw_hierarchical(_build(*inputs), 5, 2, 0, 1000)
    table = _build(*inputs)  # a fresh table: nothing carries over between builds or calls
    assert np.array_equal(stream, draw_hierarchical(table, 5, 2, 0, 1000))
    # The key is (seed, epoch), not seed + epoch; and all 64 bits of the seed count.
    for seed, epoch in [(5, 3), (6, 2), (2, 5), (7, 0), (5 + 2**32, 2), (5, 2 + 2**32)]:
        other = draw_hierarchical(table, seed, epoch, 0, 1000)
        assert np.mean(other == stream) < 0.5, (seed, epoch)


def test_empty_slice_and_bounds() -> None:
    assert draw_hierarchical(_CLASS_TABLE, 0, 0, 10**12, 10**12).shape == (0,)
    assert draw_hierarchical(_CLASS_TABLE, U64, U64, 2**64 - 1, 2**64).shape == (1,)
    for seed, epoch, start, stop in [
        (-1, 0, 0, 1),
        (2**64, 0, 0, 1),
        (0, -1, 0, 1),
        (0, 2**64, 0, 1),
        (0, 0, -1, 1),
        (0, 0, 5, 4),
        (0, 0, 0, 2**64 + 1),
    ]:
        with pytest.raises(ValueError):
            draw_hierarchical(_CLASS_TABLE, seed, epoch, start, stop)


# ---------------------------------------------------------------------------------------
# The distribution.
# ---------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    masses=st.lists(_WEIGHT_VALUES, min_size=1, max_size=60).filter(
        lambda m: sum(m) / len(m) >= sys.float_info.min  # a subnormal mean is refused (below)
    )
)
def test_the_alias_table_encodes_the_weights(masses: list[float]) -> None:
    weights = np.array(masses)
    prob, alias = _alias_table(weights)
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    assert np.all(weights[alias[prob < 1.0]] > 0.0), "an alias must never be a zero mass"
    np.testing.assert_allclose(
        _implied_distribution(prob, alias), weights / weights.sum(), rtol=1e-12, atol=1e-15
    )


def test_weights_whose_mean_is_subnormal_are_refused() -> None:
    with pytest.raises(ValueError, match="mean is subnormal"):
        _alias_table(np.array([0.0, sys.float_info.min]))
    # One sample of the least normal weight, in class 1 of 2: its weights' mean is normal,
    # its classes' masses' (0 and float_info.min) is not.
    with pytest.raises(ValueError, match="mean is subnormal"):
        _build([1], [sys.float_info.min])


def test_equal_masses_whose_mean_rounds_up_still_have_a_heavy() -> None:
    weights = np.full(3, 0.1)  # 0.1 + 0.1 + 0.1 = 0.30000000000000004: every p is below 1
    assert np.all(weights / (float(np.cumsum(weights)[-1]) / 3) < 1.0)
    prob, alias = _alias_table(weights)
    np.testing.assert_allclose(_implied_distribution(prob, alias), [1 / 3] * 3, rtol=1e-15)


def test_class_path_draws_classes_by_mass_and_members_uniformly() -> None:
    rng = np.random.default_rng(20240517)
    codes = rng.permutation(np.repeat(np.arange(6), [5, 40, 1, 300, 12, 90]))
    class_weight = np.array([2.0, 0.5, 7.0, 0.01, 1.0, 0.0])
    table = HierarchicalTable.build(codes, class_weight[codes])
    assert table.mode == "class"
    drawn = draw_hierarchical(table, 11, 0, 0, 400_000)
    weights = class_weight[codes]
    expected = weights / weights.sum() * drawn.shape[0]
    observed = np.bincount(drawn, minlength=codes.shape[0])
    assert observed[weights == 0.0].sum() == 0
    support = weights > 0.0
    chi_square = float((((observed - expected) ** 2)[support] / expected[support]).sum())
    assert chi_square < chi_square_limit(int(support.sum()) - 1)


def test_sample_path_draws_samples_by_weight() -> None:
    rng = np.random.default_rng(7)
    weights = rng.exponential(size=300) * (rng.random(300) < 0.8)
    weights[::37] = 1e-4  # tiny but drawable
    codes = rng.integers(0, 4, 300)
    table = HierarchicalTable.build(codes, weights)
    assert table.mode == "sample"
    drawn = draw_hierarchical(table, 99, 4, 10**12, 10**12 + 600_000)
    expected = weights / weights.sum() * drawn.shape[0]
    observed = np.bincount(drawn, minlength=300)
    assert observed[weights == 0.0].sum() == 0
    support = weights > 0.0
    chi_square = float((((observed - expected) ** 2)[support] / expected[support]).sum())
    assert chi_square < chi_square_limit(int(support.sum()) - 1)


# ---------------------------------------------------------------------------------------
# Edge cases and the choice of path.
# ---------------------------------------------------------------------------------------


def test_zero_weight_samples_and_zero_mass_classes_are_never_drawn() -> None:
    codes = np.array([0, 1, 2, 5, 1, 0, 2, 5] * 25)  # classes 3 and 4 have no member
    by_class = HierarchicalTable.build(codes, np.where(codes == 1, 0.0, 1.0))  # class 1: weight 0
    assert by_class.mode == "class" and by_class.num_categories == 6
    assert not np.isin(codes[draw_hierarchical(by_class, 1, 1, 0, 50_000)], [1, 3, 4]).any()

    weights = np.where(np.arange(200) % 3 == 0, 0.0, np.arange(200.0))
    per_sample = HierarchicalTable.build(codes, weights)
    assert per_sample.mode == "sample"
    drawn = draw_hierarchical(per_sample, 1, 1, 2**40, 2**40 + 50_000)
    assert drawn.min() >= 0 and drawn.max() < 200
    assert np.all(weights[drawn] > 0.0)


def test_one_class_and_one_sample() -> None:
    one_class = HierarchicalTable.build(np.zeros(1000, dtype=np.int64), np.full(1000, 0.25))
    assert one_class.mode == "class" and one_class.num_categories == 1
    drawn = draw_hierarchical(one_class, 0, 0, 0, 100_000)
    counts = np.bincount(drawn, minlength=1000)
    assert counts.sum() == 100_000 and counts.min() > 50 and counts.max() < 160
    for code in (0, 4):
        one = HierarchicalTable.build(np.array([code]), np.array([3.0]))
        assert draw_hierarchical(one, 1, 2, 2**40, 2**40 + 100).tolist() == [0] * 100


def test_class_determined_explicit_weights_take_the_class_path() -> None:
    codes = np.array([1, 0, 1, 1, 0])
    assert HierarchicalTable.build(codes, np.array([0.3, 2.0, 0.3, 0.3, 2.0])).mode == "class"
    assert HierarchicalTable.build(codes, np.array([0.3, 2.0, 0.3, 0.4, 2.0])).mode == "sample"


def test_members_are_grouped_by_class_then_position() -> None:
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 50, 5000)
    table = HierarchicalTable.build(codes, np.ones(5000))
    assert table.members is not None and table.offsets is not None
    assert table.members.tolist() == np.argsort(codes, kind="stable").tolist()
    sorted_table = HierarchicalTable.build(np.sort(codes), np.ones(5000))
    assert sorted_table.members is None  # the identity is not stored
    assert table.members.dtype == np.int32 and table.alias.dtype == np.int32
    assert not table.prob.flags.writeable
    assert (
        table.nbytes
        == table.prob.nbytes + table.alias.nbytes + table.offsets.nbytes + table.members.nbytes
    )


def test_members_in_int64_for_populations_past_int32() -> None:
    codes = np.random.default_rng(4).integers(0, 9, 1001)
    members = _members_by_class(codes, np.int64)
    assert members is not None and members.dtype == np.int64
    assert members.tolist() == np.argsort(codes, kind="stable").tolist()


def test_as_many_classes_as_samples() -> None:
    rng = np.random.default_rng(5)
    codes = rng.permutation(2000)
    weights = rng.random(2000)
    table = HierarchicalTable.build(codes, weights)
    assert table.mode == "class" and table.num_categories == 2000
    spec = _spec_table(codes.tolist(), weights.tolist())
    assert draw_hierarchical(table, 8, 1, 500, 530).tolist() == [
        _spec_draw(spec, 8, 1, i) for i in range(500, 530)
    ]


def test_build_passes_chain_across_chunks() -> None:
    """The build works in chunks of 2**20; results must not depend on where they fall."""
    rng = np.random.default_rng(11)
    size = 2**20 + 77
    values = rng.random(size) * 10.0 ** rng.integers(-8, 8, size)
    running = 0.0
    for value in values.tolist():
        running += value
    assert _sequential_sum(values) == running
    codes = rng.integers(0, 300, size)
    table = HierarchicalTable.build(codes, np.ones(size))
    assert table.members is not None
    assert np.array_equal(table.members, np.argsort(codes, kind="stable"))
    weights = np.ones(size)
    weights[-1] = 2.0  # only the very last position breaks "one weight per class"
    assert HierarchicalTable.build(codes, weights).mode == "sample"


@pytest.mark.parametrize(
    ("codes", "weights"),
    [
        (np.array([], dtype=np.int64), np.array([], dtype=np.float64)),
        (np.array([0, 1]), np.array([1.0])),
        (np.array([[0, 1]]), np.array([[1.0, 1.0]])),
        (np.array([0.0, 1.0]), np.array([1.0, 1.0])),
        (np.array([0, -1]), np.array([1.0, 1.0])),
        (np.array([0, 1]), np.array([1.0, 1.0], dtype=np.float32)),
        (np.array([0, 1]), np.array([1.0, -1.0])),
        (np.array([0, 1]), np.array([1.0, np.nan])),
        (np.array([0, 1]), np.array([1.0, np.inf])),
        (np.array([0, 1]), np.array([0.0, 0.0])),
        (np.array([0, 1]), np.array([1e308, 1e308])),
        (np.array([0, 1]), np.array([5e-324, 5e-324])),
    ],
)
def test_unusable_inputs_are_refused(
    codes: npt.NDArray[np.generic], weights: npt.NDArray[np.generic]
) -> None:
    with pytest.raises(ValueError):
        HierarchicalTable.build(codes, weights)
