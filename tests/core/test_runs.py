"""Run updates against the rule written out in plain Python (NOTE [Run updates])."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampleplan.core.errors import InvalidRunUpdate
from sampleplan.core.runs import RunUpdate, apply_updates, check_run_id


def reference(weights: list[float], updates: list[dict[str, Any]]) -> list[float]:
    """Each occurrence applied in turn, updates in the order (step, rank, arrival)."""
    out = list(weights)
    for u in sorted(updates, key=lambda u: (u["step"], u["rank"], u["seq"])):
        for i, v in zip(u["indices"], u["values"], strict=True):
            if u["op"] == "set":
                out[i] = v
            elif u["op"] == "mul":
                out[i] = out[i] * v
            else:
                out[i] = (1.0 - u["alpha"]) * out[i] + u["alpha"] * v
    return out


@st.composite
def update_dicts(draw: st.DrawFn, size: int) -> dict[str, Any]:
    op = draw(st.sampled_from(["set", "mul", "ema"]))
    n = draw(st.integers(0, 8))
    return {
        "op": op,
        "alpha": draw(st.floats(0.01, 1.0)) if op == "ema" else None,
        "rank": draw(st.integers(0, 2)),
        "step": draw(st.integers(0, 3)),
        "indices": draw(st.lists(st.integers(0, size - 1), min_size=n, max_size=n)),
        "values": draw(st.lists(st.floats(0.5, 4.0), min_size=n, max_size=n)),
    }


def as_update(u: dict[str, Any]) -> RunUpdate:
    return RunUpdate(
        epoch=0,
        rank=u["rank"],
        step=u["step"],
        op=u["op"],
        alpha=u["alpha"],
        indices=np.array(u["indices"], dtype=np.int64),
        values=np.array(u["values"], dtype=np.float64),
        seq=u["seq"],
    )


@settings(max_examples=60, deadline=None)
@given(data=st.data(), size=st.integers(1, 12), order_seed=st.integers(0, 1000))
def test_updates_in_any_arrival_order_give_the_rule(
    data: st.DataObject, size: int, order_seed: int
) -> None:
    weights = data.draw(st.lists(st.floats(0.5, 2.0), min_size=size, max_size=size))
    updates = data.draw(st.lists(update_dicts(size), max_size=8))
    # Arrival order only matters within one (step, rank): seq numbers keep it.
    for seq, u in enumerate(updates):
        u["seq"] = seq
    shuffled = updates[:]
    random.Random(order_seed).shuffle(shuffled)
    got = apply_updates(
        np.array(weights), [as_update(u) for u in shuffled], num_samples=size, replacement=True
    )
    assert got.tolist() == reference(weights, updates)


def update(
    op: str = "set",
    alpha: float | None = None,
    indices: list[int] | None = None,
    values: list[float] | None = None,
) -> RunUpdate:
    return as_update(
        {
            "rank": 0,
            "step": 0,
            "op": op,
            "alpha": alpha,
            "indices": [0] if indices is None else indices,
            "values": [1.0] if values is None else values,
            "seq": 0,
        }
    )


@pytest.mark.parametrize(
    "bad",
    [
        update(indices=[3]),
        update(indices=[-1]),
        update(values=[-0.5]),
        update(values=[float("nan")]),
        update(values=[float("inf")]),
        update(indices=[0, 1], values=[1.0]),
        update(op="ema"),
        update(op="ema", alpha=0.0),
        update(op="ema", alpha=1.5),
        update(op="mul", alpha=0.5),
        update(op="pow"),
    ],
)
def test_bad_updates_are_refused(bad: RunUpdate) -> None:
    with pytest.raises(InvalidRunUpdate):
        bad.check(population_size=3)


def test_results_that_cannot_be_drawn_from_are_refused() -> None:
    weights = np.array([1.0, 2.0, 3.0])
    zeros = update(indices=[0, 1, 2], values=[0.0, 0.0, 0.0])
    with pytest.raises(InvalidRunUpdate, match="all zero"):
        apply_updates(weights, [zeros], num_samples=3, replacement=True)
    huge = update("mul", indices=[0, 0], values=[1e300, 1e300])
    with pytest.raises(InvalidRunUpdate, match="finite"):
        apply_updates(weights, [huge], num_samples=3, replacement=True)
    one_zero = update(indices=[0], values=[0.0])
    with pytest.raises(InvalidRunUpdate, match="without replacement"):
        apply_updates(weights, [one_zero], num_samples=3, replacement=False)
    assert weights.tolist() == [1.0, 2.0, 3.0]  # never changed in place


@pytest.mark.parametrize("run_id", ["", "a" * 129, "a/b", "a b", "ü"])
def test_bad_run_ids(run_id: str) -> None:
    with pytest.raises(InvalidRunUpdate):
        check_run_id(run_id)
