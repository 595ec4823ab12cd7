"""Stratified splits (NOTE [stratified-v1]): class shares per part, exact lengths, determinism.

Without ``stratify`` a split is ``torch.utils.data.random_split``'s, checked against torch.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampleplan.core.config import PlanConfig
from sampleplan.core.errors import InvalidSplit
from sampleplan.core.labels import labels_from_list
from sampleplan.core.labelsets import label_sets_from_list
from sampleplan.core.prepared import prepare_plan
from sampleplan.core.splitting import Split
from sampleplan.core.stratify import population_indices, stratified_parts
from tests.helpers import reference


def _check_partition(parts: list[np.ndarray], n: int, lengths: list[int]) -> None:
    assert [len(p) for p in parts] == lengths
    joined = np.sort(np.concatenate(parts))
    np.testing.assert_array_equal(joined, np.arange(n))
    for p in parts:
        assert (np.diff(p) > 0).all()  # increasing dataset indices


@pytest.mark.parametrize(
    "split",
    [
        Split(seed=0, fractions=(0.7, 0.3), stratify=True),
        Split(seed=5, fractions=(0.5, 0.3, 0.2), stratify=True),
        Split(seed=9, lengths=(100, 57, 43), stratify=True),
    ],
)
def test_single_label_parts_are_within_one_sample_of_exact(split: Split) -> None:
    rng = np.random.default_rng(1)
    targets = rng.choice(6, size=200, p=[0.5, 0.2, 0.15, 0.1, 0.03, 0.02]).tolist()
    labels = labels_from_list(targets)
    parts = stratified_parts(split, labels)
    lengths = split.part_lengths(200)
    _check_partition(parts, 200, lengths)
    counts = labels.class_counts()
    for j, part in enumerate(parts):
        got = np.bincount(labels.codes[part], minlength=labels.num_classes)
        exact = counts * lengths[j] / 200
        assert (np.abs(got - exact) <= 1).all(), (j, got, exact)


def test_same_seed_same_split_and_the_seed_matters() -> None:
    labels = labels_from_list([i % 4 for i in range(101)])
    a = Split(seed=3, fractions=(0.6, 0.4), stratify=True)
    assert population_indices(a, labels).tolist() == population_indices(a, labels).tolist()
    b = Split(seed=4, fractions=(0.6, 0.4), stratify=True)
    assert population_indices(a, labels).tolist() != population_indices(b, labels).tolist()


def test_without_stratify_the_split_is_random_splits() -> None:
    labels = labels_from_list([i % 4 for i in range(101)])
    split = Split(seed=3, fractions=(0.6, 0.4))
    assert population_indices(split, labels).tolist() == reference.population(101, [0.6, 0.4], 3)
    sets = label_sets_from_list([[i % 4, 5] for i in range(101)])
    assert population_indices(split, sets).tolist() == reference.population(101, [0.6, 0.4], 3)


def test_stratify_enters_the_plan_id_only_when_true() -> None:
    plain = PlanConfig(split=Split(seed=1, fractions=(0.5, 0.5))).canonical(10)
    assert "stratify" not in plain["split"]
    stratified = PlanConfig(split=Split(seed=1, fractions=(0.5, 0.5), stratify=True)).canonical(10)
    assert stratified["split"]["stratify"] is True


def test_a_class_too_small_for_the_parts_is_refused() -> None:
    with pytest.raises(InvalidSplit, match="class 'b' has 2 sample"):
        stratified_parts(
            Split(seed=0, fractions=(0.5, 0.25, 0.25), stratify=True),
            labels_from_list(["a"] * 10 + ["b"] * 2),
        )
    with pytest.raises(InvalidSplit, match="label 7 has 1 sample"):
        stratified_parts(
            Split(seed=0, fractions=(0.5, 0.5), stratify=True),
            label_sets_from_list([[0], [0, 7], [0], []]),
        )


def _multilabel(seed: int, n: int, k: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    freq = 0.6 / (1 + np.arange(k))  # a long tail of labels
    return [np.flatnonzero(rng.random(k) < freq).tolist() for _ in range(n)]


@pytest.mark.parametrize("fractions", [(0.8, 0.2), (0.5, 0.3, 0.2)])
def test_iterative_stratification_keeps_every_labels_share(fractions: tuple[float, ...]) -> None:
    """Sechidis et al.'s property: each label's count in each part follows the part's share,
    far closer than a random split gets it; parts keep random_split's lengths exactly."""
    sets = _multilabel(2, 600, 12)
    canon = label_sets_from_list(sets)
    split = Split(seed=7, fractions=fractions, stratify=True)
    parts = stratified_parts(split, canon)
    lengths = split.part_lengths(600)
    _check_partition(parts, 600, lengths)
    counts = canon.class_counts()
    worst = 0.0
    for j, part in enumerate(parts):
        got = canon.subset(part).class_counts()
        exact = counts * lengths[j] / 600
        worst = max(worst, float(np.abs(got - exact).max()))
        # Within the split's rounding: at most a couple of samples per label and part.
        assert (np.abs(got - exact) <= 2).all(), (j, got, exact)
    # A random split of the same data misses some label by far more.
    random_train = canon.subset(
        np.array(reference.population(600, list(fractions), 7))
    ).class_counts()
    assert np.abs(random_train - counts * lengths[0] / 600).max() > worst


def test_stratified_plans_draw_from_the_stratified_part() -> None:
    sets = label_sets_from_list(_multilabel(3, 200, 6))
    split = Split(seed=1, fractions=(0.75, 0.25), stratify=True)
    plan = prepare_plan(sets, PlanConfig(split=split))
    expected = stratified_parts(split, sets)[0]
    assert plan.population is not None
    np.testing.assert_array_equal(plan.population, expected)
    assert plan.label_sets is not None
    assert plan.label_sets.values() == sets.subset(expected).values()


@settings(max_examples=30, deadline=None)
@given(
    targets=st.lists(st.integers(0, 4), min_size=10, max_size=120),
    seed=st.integers(0, 2**32 - 1),
    first=st.floats(0.3, 0.9),
)
def test_single_label_property(targets: list[int], seed: int, first: float) -> None:
    labels = labels_from_list(targets)
    counts = labels.class_counts()
    split = Split(seed=seed, fractions=(first, 1 - first), stratify=True)
    lengths = split.part_lengths(len(targets))
    if (counts < 2).any() or min(lengths) == 0:
        with pytest.raises(InvalidSplit):
            stratified_parts(split, labels)
        return
    parts = stratified_parts(split, labels)
    _check_partition(parts, len(targets), lengths)
    for j, part in enumerate(parts):
        got = np.bincount(labels.codes[part], minlength=labels.num_classes)
        assert (np.abs(got - counts * lengths[j] / len(targets)) <= 1).all()


@settings(max_examples=30, deadline=None)
@given(
    sets=st.lists(st.lists(st.integers(0, 5), max_size=4), min_size=6, max_size=80),
    seed=st.integers(0, 2**32 - 1),
)
def test_label_set_property(sets: list[list[int]], seed: int) -> None:
    canon = label_sets_from_list(sets)
    split = Split(seed=seed, fractions=(0.5, 0.5), stratify=True)
    counts = canon.class_counts()
    if ((counts > 0) & (counts < 2)).any():
        with pytest.raises(InvalidSplit):
            stratified_parts(split, canon)
        return
    parts = stratified_parts(split, canon)
    _check_partition(parts, len(sets), split.part_lengths(len(sets)))
    assert [p.tolist() for p in stratified_parts(split, canon)] == [p.tolist() for p in parts]
