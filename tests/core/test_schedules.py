"""Schedules against real torch: weights and lengths written out here from the formulas.

Nothing here calls sampleplan to compute an expected weight: ``power`` is docs/design.md's
formula, ``dynamic_balance`` is catalyst's ``DynamicBalanceClassSampler._update``
(``min(D ** (exp_lambda ** epoch), max_d)``, ``int(D * min_class_size)``) written out.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampleplan.core.config import PlanConfig, plan_id
from sampleplan.core.errors import InvalidPlanConfig
from sampleplan.core.labels import labels_from_list
from sampleplan.core.prepared import prepare_plan
from sampleplan.core.schedules import DynamicBalanceSchedule, PowerSchedule, schedule_from_json
from sampleplan.core.stats import plan_statistics, summarize_stream
from sampleplan.core.streams import StreamRequest
from tests.helpers import reference


def power_weights(
    targets: list[int], start: float, end: float, epochs: int, epoch: int
) -> list[float]:
    p = start + (end - start) * min(epoch, epochs) / epochs
    counts = Counter(targets)
    return [float(counts[t]) ** -p for t in targets]


def catalyst_quotas(
    targets: list[int], lam: float, max_d: float | None, epoch: int
) -> dict[int, int]:
    """catalyst's samples_per_classes at ``epoch`` (mode 'downsampling')."""
    counts = Counter(targets)
    min_class_size = min(counts.values())
    original_d = {key: value / min_class_size for key, value in counts.items()}
    cap = np.inf if max_d is None else max_d
    current_d = {key: min(value ** (lam**epoch), cap) for key, value in original_d.items()}
    return {key: int(value * min_class_size) for key, value in current_d.items()}


def dynamic_weights(
    targets: list[int], lam: float, max_d: float | None, epoch: int
) -> tuple[list[float], int]:
    quotas = catalyst_quotas(targets, lam, max_d, epoch)
    counts = Counter(targets)
    return [quotas[t] / counts[t] for t in targets], sum(quotas.values())


labels_st = st.lists(st.integers(0, 5), min_size=2, max_size=200)


@settings(max_examples=12, deadline=None)
@given(
    labels=labels_st,
    start=st.floats(-2, 2),
    end=st.floats(-2, 2),
    epochs=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 30),
    replacement=st.booleans(),
    algorithm_exact=st.booleans(),
)
def test_power_schedule_streams_equal_torch_every_epoch(
    labels: list[int],
    start: float,
    end: float,
    epochs: int,
    seed: int,
    replacement: bool,
    algorithm_exact: bool,
) -> None:
    num_samples = len(labels) if replacement else max(1, len(labels) // 2)
    schedule = PowerSchedule(start=start, end=end, epochs=epochs)
    plan = prepare_plan(
        labels_from_list(labels),
        PlanConfig(seed=seed, schedule=schedule, replacement=replacement, num_samples=num_samples),
    )
    for epoch in range(21):
        weights = power_weights(labels, start, end, epochs, epoch)
        assert plan.weights_at(epoch).tolist() == weights
        assert plan.num_samples_at(epoch) == num_samples
        expected = reference.weighted_stream(weights, num_samples, replacement, seed + epoch)
        if algorithm_exact and replacement:
            got = plan.draw_range(epoch, 0, num_samples)
        else:
            got = plan.indices(StreamRequest(epoch=epoch))
        assert got.tolist() == expected


@settings(max_examples=12, deadline=None)
@given(
    labels=labels_st,
    lam=st.floats(0.05, 0.95),
    max_d=st.one_of(st.none(), st.floats(1, 6)),
    seed=st.integers(0, 2**32 - 30),
    world_size=st.integers(1, 3),
)
def test_dynamic_balance_streams_equal_torch_with_catalyst_quotas(
    labels: list[int], lam: float, max_d: float | None, seed: int, world_size: int
) -> None:
    plan = prepare_plan(
        labels_from_list(labels),
        PlanConfig(seed=seed, schedule=DynamicBalanceSchedule(lam=lam, max_d=max_d)),
    )
    classes = sorted(set(labels))
    for epoch in range(21):
        weights, length = dynamic_weights(labels, lam, max_d, epoch)
        assert plan.weights_at(epoch).tolist() == weights
        assert plan.num_samples_at(epoch) == length
        stream = reference.weighted_stream(weights, length, True, seed + epoch)
        for rank in range(world_size):
            page = plan.indices(StreamRequest(epoch=epoch, rank=rank, world_size=world_size))
            assert page.tolist() == reference.distributed_shard(stream, rank, world_size)
        # The expected draws of each class are catalyst's quotas.
        quotas = catalyst_quotas(labels, lam, max_d, epoch)
        stats = plan_statistics(plan.at_epoch(epoch))
        for row in stats.classes:
            assert math.isclose(row.expected_draws, quotas[classes[row.code]], rel_tol=1e-9)


def test_hierarchical_follows_the_epoch_weights() -> None:
    """A hierarchical plan's epoch e equals a hierarchical plan made with epoch e's weights."""
    labels = [0] * 50 + [1] * 5 + [2] * 20
    scheduled = prepare_plan(
        labels_from_list(labels),
        PlanConfig(algorithm="hierarchical", seed=3, schedule=PowerSchedule(0.0, 1.0, 4)),
    )
    for epoch in (0, 2, 4, 9):
        fixed = prepare_plan(
            labels_from_list(labels),
            PlanConfig(
                strategy="sample_weights",
                weights=np.array(power_weights(labels, 0.0, 1.0, 4, epoch)),
                algorithm="hierarchical",
                seed=3,
            ),
        )
        request = StreamRequest(epoch=epoch, offset=10, limit=40)
        assert scheduled.indices(request).tolist() == fixed.indices(request).tolist()


def test_summary_follows_the_epoch_length() -> None:
    labels = [0] * 40 + [1] * 4
    plan = prepare_plan(labels_from_list(labels), PlanConfig(schedule=DynamicBalanceSchedule(0.5)))
    for epoch in (0, 1, 5):
        summary = summarize_stream(plan, StreamRequest(epoch=epoch))
        _, length = dynamic_weights(labels, 0.5, None, epoch)
        assert summary.length == length
        stream = reference.weighted_stream(
            dynamic_weights(labels, 0.5, None, epoch)[0], length, True, epoch
        )
        assert summary.class_counts.tolist() == [
            sum(labels[i] == c for i in stream) for c in (0, 1)
        ]


def test_plans_without_a_schedule_keep_their_ids() -> None:
    """A schedule enters the canonical config only when set; dynamic_balance nulls num_samples."""
    config = PlanConfig()
    assert "schedule" not in config.canonical(10)
    scheduled = PlanConfig(schedule=DynamicBalanceSchedule(0.9))
    canonical = scheduled.canonical(10)
    assert canonical["num_samples"] is None
    assert canonical["schedule"] == {"kind": "dynamic_balance", "lambda": 0.9, "max_d": None}
    assert plan_id("d", canonical) != plan_id("d", config.canonical(10))
    power = PlanConfig(
        schedule=schedule_from_json({"kind": "power", "start": 0, "end": 1, "epochs": 3})
    )
    assert power.canonical(10)["schedule"] == {
        "kind": "power",
        "start": 0.0,
        "end": 1.0,
        "epochs": 3,
    }
    assert power.canonical(10)["num_samples"] == 10


@pytest.mark.parametrize(
    "value",
    [
        {"kind": "dynamic_balance", "lambda": 1.0},
        {"kind": "dynamic_balance", "lambda": 0.0},
        {"kind": "dynamic_balance", "lambda": float("nan")},
        {"kind": "dynamic_balance", "lambda": "0.5"},
        {"kind": "dynamic_balance", "max_d": 0.5},
        {"kind": "power", "epochs": 0},
        {"kind": "power", "epochs": 1.5},
        {"kind": "power", "epochs": True},
        {"kind": "power", "start": float("inf")},
        {"kind": "power", "end": 11},
        {"kind": "power", "speed": 1},
        {"kind": "cosine"},
        {"start": 0},
        [1, 2],
        "power",
    ],
)
def test_bad_schedules_are_refused(value: object) -> None:
    with pytest.raises(InvalidPlanConfig):
        schedule_from_json(value)


def test_a_schedule_with_another_strategy_is_refused() -> None:
    with pytest.raises(InvalidPlanConfig, match="schedule"):
        PlanConfig(strategy="uniform", schedule=PowerSchedule())
