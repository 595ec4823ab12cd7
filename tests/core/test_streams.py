"""The core's streams equal what torch's own samplers give, for random everything."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampleplan.core.config import PlanConfig
from sampleplan.core.errors import InvalidPlanConfig, InvalidStreamRequest
from sampleplan.core.labels import labels_from_list
from sampleplan.core.prepared import prepare_plan
from sampleplan.core.splitting import Split
from sampleplan.core.streams import StreamRequest
from tests.helpers import reference


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 120))
    k = draw(st.integers(1, 6))
    labels = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    split = draw(
        st.one_of(
            st.none(),
            st.sampled_from([(0.7, 0.3), (0.8, 0.2), (0.5, 0.3, 0.2)]).map(
                lambda f: ("fractions", f)
            ),
            st.integers(1, n).map(lambda a: ("lengths", (a, n - a))),
        )
    )
    replacement = draw(st.booleans())
    return {
        "labels": labels,
        "split": split,
        "split_seed": draw(st.integers(0, 2**32 - 1)),
        "replacement": replacement,
        "num_samples": draw(st.one_of(st.none(), st.integers(1, 3 * n if replacement else 1))),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "epoch": draw(st.integers(0, 5)),
        "world_size": draw(st.integers(1, 5)),
        "rank_frac": draw(st.floats(0, 1, exclude_max=True)),
        "cut": draw(st.tuples(st.integers(0, 400), st.one_of(st.none(), st.integers(0, 400)))),
    }


def _local_population(case: dict[str, Any]) -> list[int]:
    n = len(case["labels"])
    if case["split"] is None:
        return reference.population(n, None, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random_split warns about empty later parts
        return reference.population(n, case["split"][1], case["split_seed"])


@settings(max_examples=150, deadline=None)
@given(case=scenarios())
def test_stream_equals_weighted_random_sampler_sharded_like_distributed_sampler(
    case: dict[str, Any],
) -> None:
    pop = _local_population(case)
    if not pop:
        return  # an empty training part is refused (tested elsewhere)
    targets = [case["labels"][i] for i in pop]
    weights = reference.inverse_frequency(targets)
    num_samples = case["num_samples"] or len(pop)
    if not case["replacement"]:
        num_samples = min(num_samples, len(pop))
    expected_epoch = reference.weighted_stream(
        weights, num_samples, case["replacement"], case["seed"] + case["epoch"]
    )
    world_size = case["world_size"]
    rank = int(case["rank_frac"] * world_size)
    expected_rank = reference.distributed_shard(expected_epoch, rank, world_size)
    offset, limit = case["cut"]
    expected_page = expected_rank[offset : None if limit is None else offset + limit]

    split = None
    if case["split"] is not None:
        kind, parts = case["split"]
        split = Split(seed=case["split_seed"], **{kind: tuple(parts)})
    config = PlanConfig(
        split=split, num_samples=num_samples, replacement=case["replacement"], seed=case["seed"]
    )
    plan = prepare_plan(labels_from_list(case["labels"]), config)
    request = StreamRequest(
        epoch=case["epoch"], rank=rank, world_size=world_size, offset=offset, limit=limit
    )
    assert plan.indices(request).tolist() == expected_page
    assert plan.rank_length(world_size) == len(expected_rank)

    dataset_page = plan.indices(
        StreamRequest(
            epoch=case["epoch"],
            rank=rank,
            world_size=world_size,
            offset=offset,
            limit=limit,
            space="dataset",
        )
    )
    assert dataset_page.tolist() == [pop[i] for i in expected_page]


@pytest.mark.parametrize(
    "strategy",
    ["inverse_sqrt_frequency", "uniform", "effective_number", "class_weights", "sample_weights"],
)
def test_other_strategies_draw_like_weighted_random_sampler(strategy: str) -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=200).tolist()
    extra: dict[str, Any] = {}
    if strategy == "class_weights":
        extra["class_weights"] = {"0": 5.0, "2": 0.5}
    if strategy == "sample_weights":
        extra["weights"] = rng.random(200)
    plan = prepare_plan(labels_from_list(labels), PlanConfig(strategy=strategy, seed=9, **extra))  # type: ignore[arg-type]
    counts = np.bincount(labels)
    expected_weights = {
        "inverse_sqrt_frequency": reference.inverse_sqrt_frequency(labels),
        "uniform": [1.0] * 200,
        "effective_number": [(1 - 0.999) / (1 - 0.999 ** counts[t]) for t in labels],
        "class_weights": [{0: 5.0, 2: 0.5}.get(t, 1.0) for t in labels],
        "sample_weights": list(extra.get("weights", [])),
    }[strategy]
    np.testing.assert_allclose(plan.weights, expected_weights, rtol=1e-15)
    stream = reference.weighted_stream(plan.weights.tolist(), 200, True, 9 + 2)
    assert plan.indices(StreamRequest(epoch=2)).tolist() == stream


def test_inverse_frequency_weights_are_exactly_the_recipe() -> None:
    labels = [0] * 7 + [1] * 3 + [2]
    plan = prepare_plan(labels_from_list(labels), PlanConfig())
    assert plan.weights.dtype == np.float64
    assert plan.weights.tolist() == reference.inverse_frequency(labels)


def test_without_replacement_needs_enough_positive_weights() -> None:
    labels = [0, 1, 1]
    config = PlanConfig(
        strategy="class_weights", class_weights={"1": 0.0}, replacement=False, num_samples=2
    )
    with pytest.raises(InvalidPlanConfig, match="only 1 of"):
        prepare_plan(labels_from_list(labels), config)


def test_large_populations_are_refused_for_torch() -> None:
    labels = labels_from_list([0, 1])
    object.__setattr__(labels, "codes", np.zeros(2**24 + 1, dtype=np.uint8))
    with pytest.raises(InvalidPlanConfig, match="hierarchical"):
        prepare_plan(labels, PlanConfig())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epoch": -1}, "epoch"),
        ({"rank": 2, "world_size": 2}, "rank should be in"),
        ({"world_size": 0}, "world_size"),
        ({"offset": -1}, "offset"),
        ({"limit": -5}, "limit"),
    ],
)
def test_bad_stream_requests(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(InvalidStreamRequest, match=message):
        StreamRequest(**kwargs)  # type: ignore[arg-type]


def test_an_unchecked_request_is_what_was_asked_until_checked() -> None:
    """The client sends what its caller asked for and lets the service judge it."""
    asked = StreamRequest(rank=2, world_size=2, check=False)
    assert (asked.rank, asked.world_size) == (2, 2)
    with pytest.raises(InvalidStreamRequest, match="rank should be in"):
        asked.checked()
    assert StreamRequest(rank=1, world_size=2, check=False).checked() == StreamRequest(
        rank=1, world_size=2
    )


def test_page_bounds_are_computed_once_per_request() -> None:
    request = StreamRequest(rank=1, world_size=3, offset=2, limit=5, start=4)
    bounds = request.bounds(20)
    assert (bounds.length, bounds.first, bounds.stop) == (6, 2, 6)
    assert request.bounds(20) is bounds
    assert request.page_bounds(20) == (2, 6) and request.length(20) == 6
    assert request.bounds(21) is not bounds and request.bounds(21).length == 6
    # Kept on the request, yet no part of its value.
    assert request == StreamRequest(rank=1, world_size=3, offset=2, limit=5, start=4)
    assert "bounds" not in repr(request)


@pytest.mark.parametrize(
    ("request_", "query"),
    [
        (
            StreamRequest(),
            {"epoch": 0, "rank": 0, "world_size": 1, "offset": 0, "space": "population"},
        ),
        (
            StreamRequest(epoch=2, rank=1, world_size=3, offset=5, limit=3, space="dataset"),
            {"epoch": 2, "rank": 1, "world_size": 3, "offset": 5, "space": "dataset", "limit": 3},
        ),
        (
            StreamRequest(start=7, pad=False, drop_last=True, limit=0),
            {
                "epoch": 0,
                "rank": 0,
                "world_size": 1,
                "offset": 0,
                "space": "population",
                "limit": 0,
                "start": 7,
                "pad": "false",
                "drop_last": "true",
            },
        ),
    ],
)
def test_to_query_sends_the_defaults_of_dealing_only_when_changed(
    request_: StreamRequest, query: dict[str, Any]
) -> None:
    assert request_.to_query() == query
    assert list(request_.to_query()) == list(query)


def test_a_whole_streams_query_has_no_page() -> None:
    request = StreamRequest(epoch=1, world_size=2, offset=3, limit=4)
    assert request.to_query(page=False) == {
        "epoch": 1,
        "rank": 0,
        "world_size": 2,
        "space": "population",
    }
    assert request.keywords() == {"epoch": 1, "world_size": 2, "offset": 3, "limit": 4}
    assert StreamRequest(**request.keywords()) == request


def test_rank_length_is_distributed_samplers() -> None:
    for n in range(1, 30):
        for ws in range(1, 8):
            plan = prepare_plan(labels_from_list(list(range(n))), PlanConfig())
            assert plan.rank_length(ws) == math.ceil(n / ws)
