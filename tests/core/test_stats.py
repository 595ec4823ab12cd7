"""Plan statistics against brute force: the expected figures equal averages over many epochs.

Epochs are drawn with torch's own ``WeightedRandomSampler`` (tests/helpers/reference.py), from the
weights the plan computed; the statistics under test never see those draws.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal, getcontext

import numpy as np
import pytest

from sampleplan.core.batches import batching_from_json
from sampleplan.core.config import PlanConfig
from sampleplan.core.labels import labels_from_list
from sampleplan.core.prepared import PreparedPlan, prepare_plan
from sampleplan.core.splitting import Split
from sampleplan.core.stats import (
    plan_statistics,
    stream_class_counts,
    stream_digest,
    summarize_batches,
    summarize_stream,
)
from sampleplan.core.streams import Space, StreamRequest
from tests.helpers import reference

EPOCHS = 3000


@dataclass
class Empirical:
    draws: np.ndarray  # mean draws per class per epoch
    draws_se: np.ndarray
    distinct: np.ndarray  # mean distinct samples per class per epoch
    distinct_se: np.ndarray
    total_distinct: float


def brute_force(plan: PreparedPlan, epochs: int = EPOCHS) -> Empirical:
    k = plan.num_classes
    draws = np.zeros((epochs, k))
    distinct = np.zeros((epochs, k))
    weights = plan.weights.tolist()
    for e in range(epochs):
        stream = np.asarray(
            reference.weighted_stream(weights, plan.num_samples, plan.config.replacement, seed=e),
            dtype=np.int64,
        )
        draws[e] = np.bincount(plan.codes[stream], minlength=k)
        seen = np.unique(stream)
        distinct[e] = np.bincount(plan.codes[seen], minlength=k)
    root = np.sqrt(epochs)
    return Empirical(
        draws=draws.mean(0),
        draws_se=draws.std(0) / root,
        distinct=distinct.mean(0),
        distinct_se=distinct.std(0) / root,
        total_distinct=float(distinct.sum(1).mean()),
    )


def _labels(counts: list[int]) -> list[int]:
    rng = np.random.default_rng(sum(counts))
    labels = np.repeat(np.arange(len(counts)), counts)
    rng.shuffle(labels)
    return labels.tolist()


CASES = {
    "inverse_frequency": (_labels([50, 10, 3]), PlanConfig()),
    "more draws than samples": (_labels([40, 8, 2]), PlanConfig(num_samples=120)),
    "split, sqrt": (
        _labels([60, 25, 6]),
        PlanConfig(strategy="inverse_sqrt_frequency", split=Split(seed=3, fractions=(0.7, 0.3))),
    ),
    "class weights, one zero": (
        _labels([30, 12, 5]),
        PlanConfig(strategy="class_weights", class_weights={"0": 1.0, "1": 0.0, "2": 4.0}),
    ),
    "sample weights": (
        _labels([20, 9, 4]),
        PlanConfig(
            strategy="sample_weights",
            weights=np.random.default_rng(7).uniform(0.1, 3.0, size=33),
            num_samples=25,
        ),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_with_replacement_matches_brute_force(case: str) -> None:
    labels, config = CASES[case]
    plan = prepare_plan(labels_from_list(labels), config)
    stats = plan_statistics(plan)
    empirical = brute_force(plan)
    assert stats.exact
    for c, row in enumerate(stats.classes):
        # 4.5 standard errors: a false alarm about once in 150,000 comparisons.
        assert row.expected_draws == pytest.approx(
            empirical.draws[c], abs=4.5 * empirical.draws_se[c] + 1e-9
        )
        assert row.expected_distinct_samples == pytest.approx(
            empirical.distinct[c], abs=4.5 * empirical.distinct_se[c] + 1e-9
        )
        if row.count:
            assert row.expected_coverage == pytest.approx(row.expected_distinct_samples / row.count)
        if empirical.distinct[c] > 0:
            assert row.mean_repeats_per_drawn_sample == pytest.approx(
                empirical.draws[c] / empirical.distinct[c], rel=0.03
            )
        else:
            assert row.mean_repeats_per_drawn_sample is None
        assert row.expected_share == pytest.approx(row.expected_draws / plan.num_samples)
        assert row.data_share == pytest.approx(row.count / plan.population_size)
    assert stats.expected_distinct_samples == pytest.approx(empirical.total_distinct, rel=0.01)
    assert sum(r.expected_draws for r in stats.classes) == pytest.approx(plan.num_samples)


def test_class_weight_and_counts() -> None:
    labels, config = CASES["split, sqrt"]
    plan = prepare_plan(labels_from_list(labels), config)
    population = reference.population(len(labels), [0.7, 0.3], 3)
    train = [labels[i] for i in population]
    weights = reference.inverse_sqrt_frequency(train)
    for row in plan_statistics(plan).classes:
        assert row.count == train.count(row.code)
        assert row.class_weight == weights[train.index(row.code)]


@pytest.mark.parametrize(
    ("counts", "num_samples", "exact"),
    [
        ([50, 10, 3], 30, False),  # unequal weights: the documented approximation
        ([200, 40, 8], 100, False),
        ([12, 12, 12], 20, True),  # equal weights: exact
        ([30, 6, 2], 38, True),  # every sample drawn: exact
    ],
)
def test_without_replacement_matches_brute_force(
    counts: list[int], num_samples: int, exact: bool
) -> None:
    plan = prepare_plan(
        labels_from_list(_labels(counts)), PlanConfig(replacement=False, num_samples=num_samples)
    )
    stats = plan_statistics(plan)
    empirical = brute_force(plan, epochs=2000)
    assert stats.exact is exact
    # The approximation is within 2 % of the per-class figures on plans this small.
    rel = 0.0 if exact else 0.02
    for c, row in enumerate(stats.classes):
        assert row.mean_repeats_per_drawn_sample == 1.0
        assert row.expected_draws == row.expected_distinct_samples
        tol = rel * empirical.draws[c] + 4.5 * empirical.draws_se[c] + 1e-9
        assert row.expected_draws == pytest.approx(empirical.draws[c], abs=tol)
    assert stats.expected_distinct_samples == pytest.approx(num_samples)
    assert stats.mean_repeats_per_drawn_sample == pytest.approx(1.0)


def test_without_replacement_all_drawn_covers_everything() -> None:
    plan = prepare_plan(labels_from_list(_labels([30, 6, 2])), PlanConfig(replacement=False))
    for row in plan_statistics(plan).classes:
        assert row.expected_coverage == 1.0
        assert row.expected_draws == row.count


def test_coverage_is_accurate_for_tiny_probabilities() -> None:
    """1 - (1 - 1/n)^n for n = 10^6, against 50-digit decimal arithmetic."""
    n = 1_000_000
    plan = prepare_plan(labels_from_list([0] * n), PlanConfig())
    getcontext().prec = 50
    exact = 1 - (1 - Decimal(1) / n) ** n
    coverage = plan_statistics(plan).classes[0].expected_coverage
    assert coverage is not None
    assert abs(Decimal(coverage) - exact) < Decimal("1e-12")


def test_an_absent_class_has_no_coverage() -> None:
    # Class 2's only sample lands in the validation part.
    labels = [0] * 8 + [1] * 3 + [2]
    population = reference.population(len(labels), [9, 3], 0)
    assert 11 not in population or pytest.skip("the split keeps class 2")
    plan = prepare_plan(labels_from_list(labels), PlanConfig(split=Split(seed=0, lengths=(9, 3))))
    row = plan_statistics(plan).classes[2]
    assert row.count == 0
    assert row.expected_draws == 0
    assert row.expected_coverage is None
    assert row.mean_repeats_per_drawn_sample is None


def test_stream_digest_and_counts_match_torch() -> None:
    labels = _labels([40, 8, 2])
    plan = prepare_plan(labels_from_list(labels), PlanConfig(seed=5))
    weights = reference.inverse_frequency(labels)
    stream = reference.weighted_stream(weights, len(labels), True, seed=5 + 2)
    drawn = plan.draw_epoch(2)
    assert (
        stream_digest(drawn)
        == hashlib.sha256(np.asarray(stream, dtype="<i8").tobytes()).hexdigest()
    )
    expected = np.bincount(np.asarray(labels)[stream], minlength=3)
    assert stream_class_counts(plan, drawn).tolist() == expected.tolist()


def test_hierarchical_draws_match_the_same_statistics() -> None:
    """Algorithm hierarchical draws the same distribution (its own generator, no torch oracle)."""
    labels = _labels([50, 10, 3])
    plan = prepare_plan(labels_from_list(labels), PlanConfig(algorithm="hierarchical", seed=9))
    stats = plan_statistics(plan)
    epochs = 2000
    draws = np.zeros((epochs, 3))
    distinct = np.zeros((epochs, 3))
    for e in range(epochs):
        stream = plan.draw_range(e, 0, plan.num_samples)
        draws[e] = np.bincount(plan.codes[stream], minlength=3)
        distinct[e] = np.bincount(plan.codes[np.unique(stream)], minlength=3)
    for c, row in enumerate(stats.classes):
        se_draws = draws[:, c].std() / np.sqrt(epochs)
        se_distinct = distinct[:, c].std() / np.sqrt(epochs)
        assert row.expected_draws == pytest.approx(draws[:, c].mean(), abs=4.5 * se_draws)
        assert row.expected_distinct_samples == pytest.approx(
            distinct[:, c].mean(), abs=4.5 * se_distinct
        )


@pytest.mark.parametrize("algorithm", ["torch", "hierarchical"])
@pytest.mark.parametrize("space", ["population", "dataset"])
def test_summary_in_chunks_equals_the_whole_stream(algorithm: str, space: str) -> None:
    labels = _labels([40, 8, 2])
    config = PlanConfig(algorithm=algorithm, split=Split(seed=1, fractions=(0.8, 0.2)))
    plan = prepare_plan(labels_from_list(labels), config)
    request = StreamRequest(epoch=4, rank=2, world_size=3, space=space)
    whole = plan.indices(request)
    summary = summarize_stream(plan, request, chunk=5)
    assert summary.length == whole.shape[0] == plan.rank_length(3)
    assert summary.sha256 == stream_digest(whole)
    positions = plan.indices(StreamRequest(epoch=4, rank=2, world_size=3))
    assert summary.class_counts.tolist() == stream_class_counts(plan, positions).tolist()


@pytest.mark.parametrize("space", ["population", "dataset"])
def test_summary_of_a_ranks_batches_is_that_of_its_batches_whole(space: Space) -> None:
    labels = labels_from_list(_labels([30, 12, 9]))
    batching = batching_from_json({"kind": "m_per_class", "m": 2, "batch_size": 6})
    config = PlanConfig(split=Split(seed=3, fractions=(0.7, 0.3)), batching=batching)
    plan = prepare_plan(labels, config)
    assert plan.batch_table is not None
    request = StreamRequest(epoch=3, rank=1, world_size=3, space=space, offset=2, limit=1)
    # Chunks of 2 batches (12 indices): the summary is made of several pages.
    summary = summarize_batches(plan, request, chunk=12)
    whole = plan.batches(StreamRequest(epoch=3, rank=1, world_size=3, space=space))
    assert summary.num_batches == whole.shape[0] == plan.rank_batches(3)
    assert summary.batch_size == whole.shape[1] == 6
    assert summary.sha256 == stream_digest(whole.reshape(-1))
    positions = plan.batches(StreamRequest(epoch=3, rank=1, world_size=3)).reshape(-1)
    assert summary.class_counts.tolist() == stream_class_counts(plan, positions).tolist()
    assert summary.class_counts.sum() == whole.size


def test_summary_of_a_stream_without_replacement_draws_its_epoch_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    labels = _labels([40, 8, 2])
    plan = prepare_plan(labels_from_list(labels), PlanConfig(replacement=False, num_samples=30))
    weights = plan.weights.tolist()
    stream = reference.weighted_stream(weights, 30, False, seed=plan.config.seed + 4)
    whole = reference.distributed_shard(stream, 1, 4)
    draws: list[int] = []
    draw_epoch = PreparedPlan.draw_epoch

    def counted(self: PreparedPlan, epoch: int) -> np.ndarray:
        draws.append(epoch)
        return draw_epoch(self, epoch)

    monkeypatch.setattr(PreparedPlan, "draw_epoch", counted)
    summary = summarize_stream(plan, StreamRequest(epoch=4, rank=1, world_size=4), chunk=3)
    assert summary.length == len(whole) == 8
    assert summary.sha256 == stream_digest(np.asarray(whole, dtype=np.int64))
    assert draws == [4]


def test_rows_of_any_slice_are_the_table_s_rows() -> None:
    """The columns make the same rows, a slice at a time (NOTE [Class tables by the page])."""
    codes = np.repeat(np.arange(7), [1, 2, 3, 5, 8, 13, 21])
    plan = prepare_plan(labels_from_list(codes.tolist()), PlanConfig())
    stats = plan_statistics(plan)
    rows = stats.classes
    assert len(rows) == stats.num_classes == 7
    for start, stop in [(0, 7), (2, 5), (6, 9), (7, 8), (-1, 2)]:
        assert stats.rows(start, stop) == rows[max(start, 0) : stop]
    assert stats.expected_shares.tolist() == [r.expected_share for r in rows]
    assert stats.data_shares.tolist() == [r.data_share for r in rows]
    assert stats.mean_repeats.tolist() == [r.mean_repeats_per_drawn_sample for r in rows]
