"""``stratified-v2`` (NOTE [stratified-v2]) against the peers people would use instead.

Single labels: scikit-learn's ``StratifiedShuffleSplit`` and ``train_test_split(stratify=)``
with the same part sizes; label sets: iterative-stratification's
``MultilabelStratifiedShuffleSplit``. The measures are Sechidis's label distribution (LD)
and its label-pair form (LPD), computed here from the parts, over many seeds and shapes.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit
from sklearn.model_selection import StratifiedShuffleSplit, train_test_split

from sampleplan.core.config import PlanConfig
from sampleplan.core.errors import InvalidSplit
from sampleplan.core.labels import labels_from_list
from sampleplan.core.labelsets import label_sets_from_list
from sampleplan.core.prepared import prepare_plan
from sampleplan.core.splitting import Split
from sampleplan.core.stratify import (
    STRATIFY_V2,
    STRATIFY_VERSION,
    label_distribution,
    pair_indicators,
    stratified_parts,
)

SEEDS = range(20)


def _part_of(n: int, test: npt.ArrayLike) -> npt.NDArray[np.intp]:
    out = np.zeros(n, dtype=np.intp)
    out[np.asarray(test)] = 1
    return out


def _single_labels(n: int, k: int, seed: int) -> np.ndarray:
    """Heavy-tailed classes, each with at least two samples."""
    rng = np.random.default_rng(seed)
    shares = rng.pareto(1.0, k) + 0.05
    y = rng.choice(k, size=n, p=shares / shares.sum())
    small = np.flatnonzero(np.bincount(y, minlength=k) < 2)
    return np.concatenate([y, np.repeat(small, 2)])


@pytest.mark.parametrize(("n", "k", "test"), [(97, 5, 13), (200, 7, 50), (1000, 20, 300)])
def test_single_label_ld_never_above_scikit_learns(n: int, k: int, test: int) -> None:
    ours_total = peers_total = 0.0
    for seed in SEEDS:
        y = _single_labels(n, k, seed)
        size = y.shape[0]
        labels = labels_from_list(y.tolist())
        onehot = y[:, None] == np.array(labels.classes)[None, :]
        split = Split(seed=seed, lengths=(size - test, test), stratify=True)
        parts = stratified_parts(split, labels, version=STRATIFY_V2)
        assert [p.shape[0] for p in parts] == [size - test, test]
        ours = label_distribution(onehot, _part_of(size, parts[1]), 2)
        # Every class within floor/ceil of its exact share in both parts.
        exact = onehot.sum(axis=0) * test / size
        got = onehot[parts[1]].sum(axis=0)
        assert (np.floor(exact) <= got).all() and (got <= np.ceil(exact)).all()
        _, sss = next(StratifiedShuffleSplit(1, test_size=test, random_state=seed).split(y, y))
        _, tts = train_test_split(np.arange(size), test_size=test, stratify=y, random_state=seed)
        peers = [label_distribution(onehot, _part_of(size, t), 2) for t in (sss, tts)]
        assert ours <= min(peers) + 1e-15, seed
        ours_total += ours
        peers_total += peers[0]
    assert ours_total <= peers_total


def test_single_label_v1_kept_and_more_parts_within_floor_and_ceil() -> None:
    y = np.concatenate([_single_labels(300, 9, 4), np.repeat(np.arange(9), 3)])
    labels = labels_from_list(y.tolist())
    split = Split(seed=3, fractions=(0.6, 0.3, 0.1), stratify=True)
    parts = stratified_parts(split, labels, version=STRATIFY_V2)
    for part in parts:
        exact = np.bincount(y, minlength=9) * part.shape[0] / y.shape[0]
        got = np.bincount(y[part], minlength=9)
        assert (np.floor(exact) <= got).all() and (got <= np.ceil(exact)).all()
    two = Split(seed=3, fractions=(0.7, 0.3), stratify=True)
    v1 = stratified_parts(two, labels)
    assert [p.tolist() for p in v1] == [
        p.tolist() for p in stratified_parts(two, labels, version=STRATIFY_VERSION)
    ]
    v2 = stratified_parts(two, labels, version=STRATIFY_V2)
    assert [p.tolist() for p in v2] == [
        p.tolist() for p in stratified_parts(two, labels, version=STRATIFY_V2)
    ]


def _label_sets(n: int, q: int, seed: int) -> np.ndarray | None:
    rng = np.random.default_rng(seed)
    y = rng.random((n, q)) < rng.uniform(0.1, 0.45, q)
    return None if (y.sum(axis=0) < 2).any() else y


def _ld_lpd(y: np.ndarray, part_of: npt.NDArray[np.intp]) -> tuple[float, float]:
    return label_distribution(y, part_of, 2), label_distribution(pair_indicators(y), part_of, 2)


@pytest.mark.parametrize(
    ("n", "q", "test"), [(16, 5, 4), (16, 5, 8), (24, 4, 6), (40, 6, 10), (60, 5, 15)]
)
def test_small_label_sets_no_worse_than_iterative_stratification(n: int, q: int, test: int) -> None:
    """Means over the seeds where both are finite, and no more infinite ones (a part
    all of whose samples carry a label) than the peer."""
    sums = np.zeros((2, 2))  # (ours, peer) x (LD, LPD)
    infinite = np.zeros((2, 2), dtype=np.int64)
    for seed in range(30):
        y = _label_sets(n, q, seed)
        if y is None:
            continue
        sets = label_sets_from_list([np.flatnonzero(row).tolist() for row in y])
        order = [int(c) for c in sets.classes]
        split = Split(seed=seed, lengths=(n - test, test), stratify=True)
        parts = stratified_parts(split, sets, version=STRATIFY_V2)
        assert [p.shape[0] for p in parts] == [n - test, test]
        ours = _ld_lpd(y[:, order], _part_of(n, parts[1]))
        peer_split = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=test, random_state=seed)
        _, peer_test = next(peer_split.split(np.zeros(n), y))
        peer = _ld_lpd(y, _part_of(n, peer_test))
        for measure in range(2):
            values = (ours[measure], peer[measure])
            infinite[:, measure] += [math.isinf(v) for v in values]
            if not any(math.isinf(v) for v in values):
                sums[:, measure] += values
    assert (infinite[0] <= infinite[1]).all(), infinite
    assert (sums[0] <= sums[1]).all(), sums


def test_label_set_splits_are_deterministic_and_v1_kept() -> None:
    y = _label_sets(16, 5, 1)
    assert y is not None
    sets = label_sets_from_list([np.flatnonzero(row).tolist() for row in y])
    split = Split(seed=9, lengths=(12, 4), stratify=True)
    first = stratified_parts(split, sets, version=STRATIFY_V2)
    again = stratified_parts(split, sets, version=STRATIFY_V2)
    assert [p.tolist() for p in first] == [p.tolist() for p in again]
    v1 = stratified_parts(split, sets)
    assert [p.tolist() for p in v1] == [
        p.tolist() for p in stratified_parts(split, sets, version=STRATIFY_VERSION)
    ]


def test_a_plan_takes_its_population_from_the_definition_it_names() -> None:
    y = _single_labels(200, 7, 2)
    labels = labels_from_list(y.tolist())
    split = Split(seed=5, fractions=(0.75, 0.25), stratify=True)
    for definitions, version in (
        (None, STRATIFY_VERSION),
        ({"stratify": STRATIFY_V2}, STRATIFY_V2),
    ):
        plan = prepare_plan(labels, PlanConfig(split=split, definitions=definitions))
        assert plan.population is not None
        assert (
            plan.population.tolist() == stratified_parts(split, labels, version=version)[0].tolist()
        )


def test_pinned_parts() -> None:
    """stratified-v2 pinned: a change here is a new version, not a new expected value."""
    y = _label_sets(16, 5, 1)
    assert y is not None
    sets = label_sets_from_list([np.flatnonzero(row).tolist() for row in y])
    split = Split(seed=9, lengths=(12, 4), stratify=True)
    assert stratified_parts(split, sets, version=STRATIFY_V2)[1].tolist() == [4, 6, 10, 14]
    assert stratified_parts(split, sets)[1].tolist() == [4, 8, 10, 12]  # stratified-v1
    labels = labels_from_list(_single_labels(60, 4, 3).tolist())
    split = Split(seed=2, fractions=(0.7, 0.3), stratify=True)
    assert stratified_parts(split, labels, version=STRATIFY_V2)[1].tolist() == [
        1,
        9,
        12,
        13,
        17,
        18,
        26,
        27,
        31,
        36,
        38,
        45,
        49,
        51,
        53,
        54,
        59,
        61,
        63,
    ]
    assert stratified_parts(split, labels)[1].tolist() == [
        1,
        9,
        12,
        13,
        17,
        18,
        26,
        27,
        31,
        33,
        36,
        38,
        45,
        49,
        51,
        53,
        54,
        59,
        61,
    ]


def test_scikit_learns_argument_checks() -> None:
    """A class of one sample is refused by both (a 422 here); a test part smaller than the
    number of classes is refused by scikit-learn only: here every class still gets its
    floor or ceil, so the part holds as many classes as it has samples."""
    y = np.array([0] * 10 + [1] * 5 + [2])
    with pytest.raises(ValueError, match="least populated class"):
        next(StratifiedShuffleSplit(1, test_size=4, random_state=0).split(y, y))
    split = Split(seed=0, lengths=(12, 4), stratify=True)
    with pytest.raises(InvalidSplit, match="class 2 has 1 sample"):
        stratified_parts(split, labels_from_list(y.tolist()), version=STRATIFY_V2)
    y = np.array([0] * 10 + [1] * 5 + [2] * 2 + [3] * 2 + [4] * 2)
    with pytest.raises(ValueError, match="greater or equal to the number of classes"):
        train_test_split(np.arange(y.shape[0]), test_size=3, stratify=y, random_state=0)
    parts = stratified_parts(
        Split(seed=0, lengths=(18, 3), stratify=True),
        labels_from_list(y.tolist()),
        version=STRATIFY_V2,
    )
    got = np.bincount(y[parts[1]], minlength=5)
    exact = np.bincount(y) * 3 / y.shape[0]
    assert got.sum() == 3 and (np.floor(exact) <= got).all() and (got <= np.ceil(exact)).all()
