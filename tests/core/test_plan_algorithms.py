"""How a plan draws: the exact path, the hierarchical algorithm, pages anywhere."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampleplan.core.config import PlanConfig
from sampleplan.core.errors import InvalidPlanConfig
from sampleplan.core.labels import labels_from_array, labels_from_list
from sampleplan.core.prepared import prepare_plan
from sampleplan.core.streams import StreamRequest
from tests.helpers import reference


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 300),
    seed=st.integers(0, 2**32 - 1),
    epoch=st.integers(0, 2**32 - 1),
    world_size=st.integers(1, 7),
    data=st.data(),
)
def test_pages_drawn_by_range_equal_torch_whole_epoch(
    n: int, seed: int, epoch: int, world_size: int, data: st.DataObject
) -> None:
    """Skip-ahead pages of the exact path, sharded, equal torch's sharded epoch.

    (seed + epoch may pass 2**32.)
    """
    labels = data.draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    num_samples = data.draw(st.integers(2, 3 * n))
    plan = prepare_plan(labels_from_list(labels), PlanConfig(seed=seed, num_samples=num_samples))
    assert plan.draws_by_range
    rank = data.draw(st.integers(0, world_size - 1))
    stream = reference.weighted_stream(
        reference.inverse_frequency(labels), num_samples, True, seed + epoch
    )
    shard = reference.distributed_shard(stream, rank, world_size)
    offset = data.draw(st.integers(0, len(shard)))
    limit = data.draw(st.integers(0, len(shard)))
    page = plan.indices(
        StreamRequest(epoch=epoch, rank=rank, world_size=world_size, offset=offset, limit=limit)
    )
    assert page.tolist() == shard[offset : offset + limit]


def test_a_single_draw_goes_through_torch() -> None:
    """torch.multinomial draws one sample by another code path: the plan follows it."""
    labels = [0, 1, 1, 2, 2, 2]
    plan = prepare_plan(labels_from_list(labels), PlanConfig(num_samples=1, seed=3))
    assert not plan.draws_by_range
    for epoch in range(5):
        expected = reference.weighted_stream(
            reference.inverse_frequency(labels), 1, True, 3 + epoch
        )
        assert plan.indices(StreamRequest(epoch=epoch)).tolist() == expected


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 200),
    num_samples=st.integers(1, 500),
    world_size=st.integers(1, 9),
    epoch=st.integers(0, 10),
    data=st.data(),
)
def test_hierarchical_pages_shard_one_epoch_stream(
    n: int, num_samples: int, world_size: int, epoch: int, data: st.DataObject
) -> None:
    labels = data.draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    plan = prepare_plan(
        labels_from_list(labels),
        PlanConfig(algorithm="hierarchical", num_samples=num_samples, seed=7),
    )
    epoch_stream = plan.draw_range(epoch, 0, num_samples).tolist()
    rank = data.draw(st.integers(0, world_size - 1))
    shard = reference.distributed_shard(epoch_stream, rank, world_size)
    offset = data.draw(st.integers(0, len(shard)))
    page = plan.indices(StreamRequest(epoch=epoch, rank=rank, world_size=world_size, offset=offset))
    assert page.tolist() == shard[offset:]


def test_hierarchical_draws_the_plan_distribution() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(4, size=5000, p=[0.85, 0.1, 0.04, 0.01])
    plan = prepare_plan(
        labels_from_array(labels), PlanConfig(algorithm="hierarchical", num_samples=200_000)
    )
    drawn = plan.draw_range(0, 0, 200_000)
    shares = np.bincount(plan.codes[drawn], minlength=4) / 200_000
    np.testing.assert_allclose(shares, 0.25, atol=0.01)  # inverse frequency balances the classes


def test_hierarchical_page_at_offset_1e12_is_cheap() -> None:
    labels = np.arange(100_000, dtype=np.int64) % 10
    plan = prepare_plan(
        labels_from_array(labels), PlanConfig(algorithm="hierarchical", num_samples=10**12 + 10**6)
    )
    plan.draw_range(0, 0, 10)  # build the table once
    started = time.perf_counter()
    page = plan.indices(StreamRequest(epoch=3, rank=1, world_size=4, offset=10**11, limit=100_000))
    elapsed = time.perf_counter() - started
    assert page.shape == (100_000,)
    assert page.min() >= 0 and page.max() < 100_000
    assert elapsed < 5  # O(limit), not O(offset); the benchmark measures the real figure


def test_hierarchical_needs_replacement_and_accepts_huge_populations() -> None:
    with pytest.raises(InvalidPlanConfig, match="replacement"):
        PlanConfig(algorithm="hierarchical", replacement=False)
    labels = labels_from_array(np.zeros(2, dtype=np.int64))
    object.__setattr__(labels, "codes", np.zeros(2**24 + 1, dtype=np.uint8))
    plan = prepare_plan(labels, PlanConfig(algorithm="hierarchical"))
    page = plan.indices(StreamRequest(offset=2**24 - 1))
    assert page.shape == (2,) and page.min() >= 0 and page.max() <= 2**24
