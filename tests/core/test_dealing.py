"""Dealing an epoch from a global position: elastic resume and exactly-once evaluation.

The oracle is torch: the epoch is ``list(WeightedRandomSampler(...))`` and the ranks'
shares are what ``DistributedSampler`` deals from a list (``tests/helpers/reference.py``).
"""

from __future__ import annotations

import math
from itertools import zip_longest

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DistributedSampler

from sampleplan.core.config import PlanConfig
from sampleplan.core.dealing import global_position
from sampleplan.core.errors import InvalidStreamRequest
from sampleplan.core.labels import labels_from_list
from sampleplan.core.prepared import prepare_plan
from sampleplan.core.streams import StreamRequest, cut_page, shard_positions
from tests.helpers import reference


def _dealt(n: int, world_size: int, **options: object) -> list[list[int]]:
    """Every rank's epoch-stream positions for a deal of ``n`` positions."""
    return [
        shard_positions(n, StreamRequest(rank=r, world_size=world_size, **options)).tolist()  # type: ignore[arg-type]
        for r in range(world_size)
    ]


def _round_robin(shares: list[list[int]]) -> list[int]:
    """The ranks' shares interleaved as they were dealt: rank 0's first, rank 1's first, ..."""
    return [x for column in zip_longest(*shares) for x in column if x is not None]


@pytest.mark.parametrize("n", [1, 2, 7, 12, 13])
@pytest.mark.parametrize("world_size", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("drop_last", [False, True])
def test_a_fresh_deal_is_distributed_samplers(n: int, world_size: int, drop_last: bool) -> None:
    for rank, share in enumerate(_dealt(n, world_size, drop_last=drop_last)):
        sampler = DistributedSampler(
            range(n), num_replicas=world_size, rank=rank, shuffle=False, drop_last=drop_last
        )
        assert share == list(sampler)


@pytest.mark.parametrize("n", [1, 7, 13, 100])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_unpadded_deal_gives_every_position_exactly_once(n: int, world_size: int) -> None:
    shares = _dealt(n, world_size, pad=False)
    assert sorted(x for share in shares for x in share) == list(range(n))
    for rank, share in enumerate(shares):
        assert share == list(range(n))[rank::world_size]
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_start_past_the_epoch_is_refused() -> None:
    with pytest.raises(InvalidStreamRequest, match="start should be at most"):
        StreamRequest(start=11).length(10)
    with pytest.raises(InvalidStreamRequest, match="start should be a non-negative"):
        StreamRequest(start=-1)
    # drop_last leaves no tail to pad: pad does not matter then.
    assert StreamRequest(pad=False, drop_last=True).length(10) == 10
    assert StreamRequest(world_size=3, pad=False, drop_last=True).length(10) == 3


@st.composite
def elastic_cases(draw: st.DrawFn) -> tuple[int, int, int, int, int, str]:
    n = draw(st.integers(1, 60))
    before = draw(st.integers(1, 8))
    after = draw(st.integers(1, 8))
    position = draw(st.integers(0, math.ceil(n / before)))
    epoch = draw(st.integers(0, 3))
    mode = draw(st.sampled_from(["pad", "drop_last", "none"]))
    return n, before, after, position, epoch, mode


@settings(max_examples=80, deadline=None)
@given(elastic_cases())
def test_elastic_resume_continues_the_torch_epoch(
    case: tuple[int, int, int, int, int, str],
) -> None:
    n, before, after, position, epoch, mode = case
    labels = [0] * (n - n // 3) + [1] * (n // 3)
    plan = prepare_plan(labels_from_list(labels), PlanConfig(seed=5))
    stream = reference.weighted_stream(
        reference.inverse_frequency(labels), n, replacement=True, seed=5 + epoch
    )

    # Every old rank handed out ``position`` indices of its DistributedSampler share.
    consumed = [
        plan.indices(StreamRequest(epoch=epoch, rank=r, world_size=before, limit=position)).tolist()
        for r in range(before)
    ]
    for rank, share in enumerate(consumed):
        assert share == reference.distributed_shard(stream, rank, before)[:position]
    padded = [stream[i % n] for i in range(position * before)]
    assert _round_robin(consumed) == padded

    # The new ranks deal the rest from the global position rank 0 recorded.
    start = global_position(n, 0, before, position)
    options = {"pad": mode == "pad", "drop_last": mode == "drop_last"}
    requests = [
        StreamRequest(epoch=epoch, rank=r, world_size=after, start=start, **options)  # type: ignore[arg-type]
        for r in range(after)
    ]
    rest = [plan.indices(request).tolist() for request in requests]
    positions = [shard_positions(n, request).tolist() for request in requests]
    remainder = stream[start:]
    lengths = [len(share) for share in rest]
    if mode == "none":
        assert _round_robin(rest) == remainder
        assert max(lengths) - min(lengths) <= 1
    elif mode == "pad":
        # DistributedSampler over the remainder: padded from the remainder's own start.
        for rank, share in enumerate(rest):
            assert share == reference.distributed_shard(remainder, rank, after)
        assert _round_robin(rest)[: len(remainder)] == remainder
        assert len(set(lengths)) == 1
    else:
        kept = len(remainder) // after * after
        assert _round_robin(rest) == remainder[:kept]
        assert len(set(lengths)) == 1
    # Nothing before the resume point comes again; padding repeats the remainder only.
    assert all(p >= start for share in positions for p in share)
    if mode != "pad":
        flat = [p for share in positions for p in share]
        assert len(flat) == len(set(flat))


def test_elastic_resume_of_a_hierarchical_plan_is_its_own_stream() -> None:
    labels = [0] * 40 + [1] * 7
    plan = prepare_plan(labels_from_list(labels), PlanConfig(algorithm="hierarchical", seed=3))
    whole = plan.draw_range(2, 0, plan.num_samples)
    rest = [
        plan.indices(StreamRequest(epoch=2, rank=r, world_size=3, start=17, pad=False))
        for r in range(3)
    ]
    assert _round_robin([share.tolist() for share in rest]) == whole[17:].tolist()
    assert np.array_equal(rest[1], whole[18::3])


def test_torch_without_replacement_resumes_within_its_permutation() -> None:
    labels = [0] * 30 + [1] * 9
    plan = prepare_plan(labels_from_list(labels), PlanConfig(replacement=False, seed=1))
    stream = reference.weighted_stream(
        reference.inverse_frequency(labels), 39, replacement=False, seed=1
    )
    rest = [
        plan.indices(StreamRequest(world_size=2, rank=r, start=12, pad=False)).tolist()
        for r in range(2)
    ]
    assert _round_robin(rest) == stream[12:]
    assert sorted(stream[:12] + rest[0] + rest[1]) == list(range(39))
    assert torch.equal(torch.tensor(stream), torch.tensor(stream[:12] + _round_robin(rest)))


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 40),
    world_size=st.integers(1, 9),
    data=st.data(),
)
def test_a_page_cut_from_an_epoch_is_distributed_samplers_share_of_it(
    n: int, world_size: int, data: st.DataObject
) -> None:
    """cut_page reads slices where it can (dealt_values); the values must not change."""
    stream = np.random.default_rng(n * 31 + world_size).integers(0, 1000, n).astype(np.int64)
    stream.flags.writeable = False  # as cached epochs are
    start = data.draw(st.integers(0, n), label="start")
    rank = data.draw(st.integers(0, world_size - 1), label="rank")
    mode = data.draw(st.sampled_from(["pad", "drop_last", "neither"]), label="mode")
    rest = stream[start:].tolist()
    if mode == "neither":
        share = rest[rank::world_size]
    else:
        sampler = DistributedSampler(
            rest, num_replicas=world_size, rank=rank, shuffle=False, drop_last=mode == "drop_last"
        )
        share = [rest[i] for i in sampler] if rest else []
    offset = data.draw(st.integers(0, len(share)), label="offset")
    limit = data.draw(st.none() | st.integers(0, len(share) + 2), label="limit")
    request = StreamRequest(
        rank=rank,
        world_size=world_size,
        start=start,
        offset=offset,
        limit=limit,
        pad=mode != "neither",
        drop_last=mode == "drop_last",
    )
    page = cut_page(stream, n, request)
    assert page.tolist() == share[offset : None if limit is None else offset + limit]
