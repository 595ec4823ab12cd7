"""Label sets: canonical CSR form, weights against the formulas written out, streams against torch.

The oracles: each reduce rule and LVIS's repeat factor written out here over Python lists
(detectron2's ``repeat_factors_from_category_frequency`` as its source computes it), and
torch's ``WeightedRandomSampler`` on those weights (``tests/helpers/reference.py``).
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampleplan.core.config import PlanConfig
from sampleplan.core.errors import InvalidLabels, InvalidPlanConfig, InvalidWeights
from sampleplan.core.labels import labels_from_list
from sampleplan.core.labelsets import (
    hierarchical_codes,
    label_sets_from_csr,
    label_sets_from_list,
    labels_or_label_sets,
)
from sampleplan.core.prepared import prepare_plan
from sampleplan.core.splitting import Split
from sampleplan.core.stats import plan_statistics, stream_class_counts
from sampleplan.core.streams import StreamRequest
from tests.helpers import reference

SETS = [[0, 3], [2], [], [3, 0, 0], [1], [0], [0, 2, 3], [], [3]]


# -- the formulas, written out over Python lists ----------------------------------------


def carriers(sets: list[list[int]]) -> Counter[int]:
    """How many samples carry each label (a label twice in one sample counts once)."""
    return Counter(c for labels in sets for c in set(labels))


def class_aware(sets: list[list[int]], reduce: str, unlabelled: float = 0.0) -> list[float]:
    """inverse_frequency per label, combined by ``reduce`` (labels in sorted order)."""
    n = carriers(sets)
    out = []
    for labels in sets:
        terms = [1.0 / n[c] for c in sorted(set(labels))]
        if not terms:
            out.append(unlabelled)
        elif reduce == "sum":
            total = 0.0
            for t in terms:
                total += t
            out.append(total)
        elif reduce == "max":
            out.append(max(terms))
        else:
            out.append(sum(terms) / len(terms))
    return out


def detectron2_repeat_factors(sets: list[list[int]], repeat_thresh: float) -> list[float]:
    """detectron2 ``RepeatFactorTrainingSampler.repeat_factors_from_category_frequency``,
    step by step as its source does (in float64: it ends with a float32 tensor, we do not)."""
    category_freq: dict[int, float] = {}
    for labels in sets:
        for cat_id in set(labels):
            category_freq[cat_id] = category_freq.get(cat_id, 0) + 1
    num_images = len(sets)
    for k, v in category_freq.items():
        category_freq[k] = v / num_images
    category_rep = {
        cat_id: max(1.0, math.sqrt(repeat_thresh / cat_freq))
        for cat_id, cat_freq in category_freq.items()
    }
    return [max({category_rep[c] for c in set(labels)}, default=1.0) for labels in sets]


# -- canonical form ------------------------------------------------------------------------


def test_csr_is_sorted_deduplicated_and_names_the_dataset() -> None:
    sets = label_sets_from_list(SETS)
    assert sets.size == len(SETS)
    assert sets.values() == [sorted(set(s)) for s in SETS]
    assert sets.offsets.tolist() == [0, 2, 3, 3, 5, 6, 7, 10, 10, 11]
    assert sets.class_counts().tolist() == [carriers(SETS)[c] for c in range(4)]
    assert sets.unlabelled_count() == 2
    assert sets.mean_cardinality() == 11 / 9
    # Order within a set and duplicates do not change the dataset (NOTE [Canonical label sets]).
    shuffled = [list(reversed(s)) + s[:1] for s in SETS]
    assert label_sets_from_list(shuffled).digest() == sets.digest()
    assert label_sets_from_list(SETS[:-1]).digest() != sets.digest()


def test_single_label_ids_stay_and_label_sets_of_one_are_their_own_dataset() -> None:
    flat = labels_from_list([0, 2, 0, 1])
    ones = label_sets_from_list([[0], [2], [0], [1]])
    assert labels_or_label_sets([0, 2, 0, 1]).digest() == flat.digest()
    assert ones.digest() != flat.digest()
    np.testing.assert_array_equal(hierarchical_codes(ones), flat.codes)


def test_csr_entry_point_takes_arrow_like_parts() -> None:
    """Offsets plus flat values (ints, numpy unicode, Python strings), as Arrow lists have."""
    offsets = np.array([0, 2, 2, 5], dtype=np.int32)
    ints = label_sets_from_csr(offsets, np.array([7, 3, 3, 9, 7], dtype=np.int64))
    assert ints.values() == [[3, 7], [], [3, 7, 9]]
    assert ints.classes == (3, 7, 9)
    names = label_sets_from_csr(offsets, np.array(["b", "a", "a", "c", "b"]))
    assert names.values() == [["a", "b"], [], ["a", "b", "c"]]
    assert label_sets_from_csr(offsets, ["b", "a", "a", "c", "b"]).digest() == names.digest()
    assert names.digest() == label_sets_from_list([["a", "b"], [], ["c", "b", "a"]]).digest()
    # A dictionary-encoded column (Arrow DictionaryArray): indices into its dictionary.
    encoded = label_sets_from_csr(offsets, np.array([1, 0, 0, 2, 1]), dictionary=["a", "b", "c"])
    assert encoded.digest() == names.digest()
    with pytest.raises(InvalidLabels, match="out of range"):
        label_sets_from_csr(offsets, np.array([1, 0, 0, 3, 1]), dictionary=["a", "b", "c"])


@pytest.mark.parametrize(
    ("offsets", "values", "words"),
    [
        ([1, 2], [0], "start at 0"),
        ([0, 2, 1], [0, 1], "must not decrease"),
        ([0, 1], [0, 1], "end at 1"),
        ([0], [], "no sample"),
        (np.array([0.0, 1.0]), [0], "integers"),
        ([0, 1], np.array([0.5]), "integers or strings"),
    ],
)
def test_csr_refuses_bad_parts(offsets: object, values: object, words: str) -> None:
    with pytest.raises(InvalidLabels, match=words):
        label_sets_from_csr(offsets, values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ([], "must not be empty"),
        ([[0], 1], "labels[1] is 1 (int), not a list"),
        ([[[0]], [1]], "nest one level"),
        ([[0, 1], ["a"]], "all integers or all strings"),
        ([[0], [None]], "labels[1] holds null"),
        ([[0], [2.0]], "labels[1] holds a float"),
        ([[True]], "boolean"),
        ([[2**64]], "int64"),
    ],
)
def test_list_refusals(values: object, words: str) -> None:
    with pytest.raises(InvalidLabels, match=re.escape(words)):
        label_sets_from_list(values)


# -- weights against the formulas --------------------------------------------------------


@pytest.mark.parametrize("reduce", ["sum", "max", "mean"])
def test_class_aware_weights_follow_each_reduce(reduce: str) -> None:
    plan = prepare_plan(label_sets_from_list(SETS), PlanConfig(label_reduce=reduce))  # type: ignore[arg-type]
    expected = class_aware(SETS, reduce)
    assert plan.weights.tolist() == expected  # bit for bit: same operations, same order


def test_other_class_strategies_reduce_their_class_weights() -> None:
    n = carriers(SETS)
    plan = prepare_plan(
        label_sets_from_list(SETS),
        PlanConfig(strategy="inverse_sqrt_frequency", label_reduce="max"),
    )
    assert plan.weights.tolist() == [
        max((1.0 / math.sqrt(n[c]) for c in s), default=0.0) for s in SETS
    ]
    beta = 0.9
    plan = prepare_plan(
        label_sets_from_list(SETS),
        PlanConfig(strategy="effective_number", beta=beta, label_reduce="mean"),
    )
    eff = {c: (1 - beta) / (1 - beta ** n[c]) for c in n}
    want = [sum(eff[c] for c in sorted(set(s))) / len(set(s)) if s else 0.0 for s in SETS]
    np.testing.assert_allclose(plan.weights, want, rtol=1e-15)
    plan = prepare_plan(
        label_sets_from_list(SETS),
        PlanConfig(strategy="class_weights", class_weights={"3": 4.0, "1": 0.5}),
    )
    table = {0: 1.0, 1: 0.5, 2: 1.0, 3: 4.0}
    assert plan.weights.tolist() == [sum(table[c] for c in sorted(set(s))) for s in SETS]


@pytest.mark.parametrize("threshold", [0.001, 0.2, 0.5, 1.0])
def test_repeat_factor_is_detectron2s(threshold: float) -> None:
    plan = prepare_plan(
        label_sets_from_list(SETS), PlanConfig(strategy="repeat_factor", threshold=threshold)
    )
    assert plan.weights.tolist() == detectron2_repeat_factors(SETS, threshold)


def test_repeat_factor_default_threshold_is_lvis() -> None:
    plan = prepare_plan(label_sets_from_list(SETS), PlanConfig(strategy="repeat_factor"))
    assert plan.weights.tolist() == detectron2_repeat_factors(SETS, 0.001)
    assert PlanConfig(strategy="repeat_factor").canonical(9)["threshold"] == 0.001


def test_unlabelled_weight_is_documented_and_configurable() -> None:
    sets = label_sets_from_list(SETS)
    empty = [i for i, s in enumerate(SETS) if not s]
    assert prepare_plan(sets, PlanConfig()).weights[empty].tolist() == [0.0, 0.0]
    assert prepare_plan(sets, PlanConfig(strategy="uniform")).weights.tolist() == [1.0] * len(SETS)
    given_weight = prepare_plan(sets, PlanConfig(unlabelled_weight=0.25))
    assert given_weight.weights.tolist() == class_aware(SETS, "sum", unlabelled=0.25)
    # The default, given explicitly, is the same plan.
    assert PlanConfig(unlabelled_weight=0.0).canonical(9) == PlanConfig().canonical(9)
    assert PlanConfig(label_reduce="sum").canonical(9) == PlanConfig().canonical(9)
    assert PlanConfig(unlabelled_weight=0.25).canonical(9)["unlabelled_weight"] == 0.25
    with pytest.raises(InvalidWeights, match="all zero"):
        prepare_plan(label_sets_from_list([[], []]), PlanConfig())


def test_label_fields_are_validated() -> None:
    with pytest.raises(InvalidPlanConfig, match="label_reduce"):
        PlanConfig(label_reduce="min")  # type: ignore[arg-type]
    with pytest.raises(InvalidPlanConfig, match="class-based"):
        PlanConfig(strategy="uniform", label_reduce="max")
    with pytest.raises(InvalidPlanConfig, match="threshold"):
        PlanConfig(threshold=0.1)
    with pytest.raises(InvalidPlanConfig, match="threshold"):
        PlanConfig(strategy="repeat_factor", threshold=float("inf"))
    with pytest.raises(InvalidPlanConfig, match="unlabelled_weight"):
        PlanConfig(unlabelled_weight=float("nan"))


# -- streams against torch ---------------------------------------------------------------


@pytest.mark.parametrize("reduce", ["sum", "max", "mean"])
@pytest.mark.parametrize("replacement", [True, False])
def test_streams_are_torch_wrs_on_those_weights(reduce: str, replacement: bool) -> None:
    rng = np.random.default_rng(5)
    sets = [sorted(set(rng.integers(0, 6, size=rng.integers(0, 4)).tolist())) for _ in range(200)]
    num_samples = 150 if not replacement else 333
    plan = prepare_plan(
        label_sets_from_list(sets),
        PlanConfig(
            label_reduce=reduce,
            unlabelled_weight=0.5,
            seed=11,
            num_samples=num_samples,
            replacement=replacement,
        ),  # type: ignore[arg-type]
    )
    weights = class_aware(sets, reduce, unlabelled=0.5)
    for epoch in (0, 3):
        stream = reference.weighted_stream(weights, num_samples, replacement, 11 + epoch)
        assert plan.draw_epoch(epoch).tolist() == stream
        for rank in range(3):
            page = plan.indices(
                StreamRequest(epoch=epoch, rank=rank, world_size=3, offset=5, limit=40)
            )
            assert page.tolist() == reference.distributed_shard(stream, rank, 3)[5:45]


def test_repeat_factor_stream_is_torch_wrs_on_detectron2s_factors() -> None:
    plan = prepare_plan(
        label_sets_from_list(SETS * 20), PlanConfig(strategy="repeat_factor", threshold=0.3, seed=4)
    )
    weights = detectron2_repeat_factors(SETS * 20, 0.3)
    assert plan.draw_epoch(2).tolist() == reference.weighted_stream(
        weights, len(SETS) * 20, True, 6
    )


@pytest.mark.parametrize("algorithm", ["torch", "hierarchical"])
@pytest.mark.parametrize(
    ("strategy", "reduce"),
    [
        ("inverse_frequency", None),
        ("inverse_frequency", "max"),
        ("inverse_frequency", "mean"),
        ("inverse_sqrt_frequency", "mean"),
        ("repeat_factor", None),
        ("uniform", None),
    ],
)
def test_single_labels_as_sets_of_one_are_todays_plan(
    algorithm: str, strategy: str, reduce: str | None
) -> None:
    targets = (np.arange(300) * 7 % 5).tolist() + [4] * 40
    split = Split(seed=3, fractions=(0.8, 0.2))
    config = PlanConfig(
        strategy=strategy, algorithm=algorithm, seed=9, split=split, label_reduce=reduce
    )  # type: ignore[arg-type]
    today = prepare_plan(labels_from_list(targets), config)
    as_sets = prepare_plan(label_sets_from_list([[t] for t in targets]), config)
    assert as_sets.weights.tobytes() == today.weights.tobytes()
    for epoch in (0, 1):
        request = StreamRequest(epoch=epoch, rank=1, world_size=2, offset=3, limit=100)
        assert as_sets.indices(request).tolist() == today.indices(request).tolist()
    if algorithm == "torch":
        assert as_sets.draw_epoch(4).tolist() == today.draw_epoch(4).tolist()
    ours, theirs = plan_statistics(as_sets), plan_statistics(today)
    assert [r.count for r in ours.classes] == [r.count for r in theirs.classes]
    for field in ("expected_draws", "data_share", "expected_share", "expected_distinct_samples"):
        assert [getattr(r, field) for r in ours.classes] == pytest.approx(
            [getattr(r, field) for r in theirs.classes], rel=1e-12
        )


def test_hierarchical_draws_label_sets_per_sample() -> None:
    """Several labels: each position is its own category (hierarchical-v1's per-sample table)."""
    sets = label_sets_from_list(SETS * 50)
    plan = prepare_plan(sets, PlanConfig(algorithm="hierarchical", num_samples=200_000, seed=1))
    np.testing.assert_array_equal(plan.codes, np.arange(sets.size))
    counts = np.bincount(plan.draw_range(0, 0, 200_000), minlength=sets.size)
    p = plan.weights / plan.weights.sum()
    assert counts[plan.weights == 0].sum() == 0
    # Within 5 standard deviations of the expectation, per sample.
    sd = np.sqrt(200_000 * p * (1 - p))
    assert (np.abs(counts - 200_000 * p) <= 5 * sd + 1).all()
    assert plan.draw_range(3, 100, 160).tolist() == plan.draw_range(3, 0, 200)[100:160].tolist()


# -- statistics --------------------------------------------------------------------------


def test_label_statistics_count_occurrences() -> None:
    plan = prepare_plan(label_sets_from_list(SETS), PlanConfig(num_samples=1000))
    stats = plan_statistics(plan)
    w = np.array(class_aware(SETS, "sum"))
    p = w / w.sum()
    n = carriers(SETS)
    occurrences = sum(n.values())
    expected = {c: 1000 * sum(p[i] for i, s in enumerate(SETS) if c in s) for c in range(4)}
    total = sum(expected.values())
    for row in stats.classes:
        assert row.count == n[row.code]
        assert row.data_share == pytest.approx(n[row.code] / occurrences)
        assert row.expected_draws == pytest.approx(expected[row.code])
        assert row.expected_share == pytest.approx(expected[row.code] / total)
        assert row.class_weight == 1.0 / n[row.code]
    assert stats.label_sets is not None
    assert stats.label_sets.unlabelled == 2
    assert stats.label_sets.mean_cardinality == pytest.approx(11 / 9)
    assert stats.label_sets.expected_unlabelled_draws == 0.0
    assert stats.label_sets.expected_mean_cardinality == pytest.approx(total / 1000)
    stream = plan.draw_epoch(0)
    counted = stream_class_counts(plan, stream)
    assert counted.tolist() == [sum(c in SETS[i] for i in stream.tolist()) for c in range(4)]


# -- properties over random label sets ----------------------------------------------------

label_set_lists = st.lists(st.lists(st.integers(0, 7), max_size=5), min_size=1, max_size=60).filter(
    lambda sets: any(sets)
)


@settings(max_examples=60, deadline=None)
@given(
    sets=label_set_lists,
    reduce=st.sampled_from(["sum", "max", "mean"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_label_sets_weigh_and_draw_as_written(
    sets: list[list[int]], reduce: str, seed: int
) -> None:
    canon = label_sets_from_list(sets)
    assert canon.values() == [sorted(set(s)) for s in sets]
    assert label_sets_from_list([list(reversed(s)) * 2 for s in sets]).digest() == canon.digest()
    plan = prepare_plan(canon, PlanConfig(label_reduce=reduce, seed=seed))  # type: ignore[arg-type]
    expected = class_aware(sets, reduce)
    np.testing.assert_allclose(plan.weights, expected, rtol=1e-15, atol=0)
    stream = reference.weighted_stream(plan.weights.tolist(), len(sets), True, seed)
    assert plan.draw_epoch(0).tolist() == stream
    rf = prepare_plan(canon, PlanConfig(strategy="repeat_factor", threshold=0.3))
    assert rf.weights.tolist() == detectron2_repeat_factors(sets, 0.3)


@settings(max_examples=40, deadline=None)
@given(sets=label_set_lists, data=st.data())
def test_subsets_keep_each_samples_labels(sets: list[list[int]], data: st.DataObject) -> None:
    canon = label_sets_from_list(sets)
    positions = np.array(
        data.draw(st.lists(st.integers(0, len(sets) - 1), max_size=30)), dtype=np.int64
    )
    assert canon.subset(positions).values() == [sorted(set(sets[i])) for i in positions.tolist()]


def test_npz_label_sets_are_csr_and_compressed_archives_are_refused() -> None:
    import io

    from sampleplan.core.manifests import label_sets_from_npz

    plain, packed = io.BytesIO(), io.BytesIO()
    np.savez(plain, offsets=np.array([0, 2, 2, 3]), values=np.array(["b", "a", "c"]))
    np.savez_compressed(packed, offsets=np.array([0, 2, 2, 3]), values=np.array(["b", "a", "c"]))
    assert label_sets_from_npz(plain.getvalue()).values() == [["a", "b"], [], ["c"]]
    with pytest.raises(InvalidLabels, match=r"np\.savez_compressed"):
        label_sets_from_npz(packed.getvalue())
    with pytest.raises(InvalidLabels, match="'offsets'"):
        other = io.BytesIO()
        np.savez(other, codes=np.array([0]))
        label_sets_from_npz(other.getvalue())
