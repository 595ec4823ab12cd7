"""Run updates against the rule written out in plain Python (NOTE [Run updates])."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampleplan.core.errors import InvalidRunUpdate
from sampleplan.core.runs import (
    NextEpoch,
    RunUpdate,
    apply_updates,
    check_run_id,
    parse_op,
    replay,
)


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


@pytest.mark.parametrize("op", ["set", "mul", "ema"])
def test_parse_op_takes_the_three_ops(op: str) -> None:
    assert parse_op(op) == op


@pytest.mark.parametrize("op", ["pow", "SET", "", None, 1])
def test_parse_op_refuses_anything_else_with_one_message(op: object) -> None:
    with pytest.raises(InvalidRunUpdate, match=r"op should be 'set', 'mul' or 'ema', but got op="):
        parse_op(op)


@pytest.mark.parametrize("epoch", [-1, 2**32, 2**63])
def test_an_update_epoch_outside_the_epoch_range_is_refused(epoch: int) -> None:
    bad = RunUpdate(
        epoch=epoch,
        rank=0,
        step=0,
        op="set",
        alpha=None,
        indices=np.array([0], dtype=np.int64),
        values=np.array([1.0]),
    )
    with pytest.raises(InvalidRunUpdate, match=r"epoch should be in \[0, 2\*\*32\)"):
        bad.check(population_size=3)


def test_next_epoch_takes_an_update_that_sorts_last_and_declines_one_that_does_not() -> None:
    weights = np.array([1.0, 2.0, 3.0])
    first = update("mul", indices=[1], values=[3.0])
    state = NextEpoch(weights=weights, last_key=(0, 0)).then(first, num_samples=3, replacement=True)
    assert state is not None and state.weights.tolist() == [1.0, 6.0, 3.0]
    assert weights.tolist() == [1.0, 2.0, 3.0]  # never changed in place
    later = as_update({**_fields(), "step": 2, "indices": [0], "values": [5.0]})
    state = state.then(later, num_samples=3, replacement=True)
    assert state is not None and state.last_key == (2, 0)
    earlier = as_update({**_fields(), "step": 1, "indices": [0], "values": [7.0]})
    assert state.then(earlier, num_samples=3, replacement=True) is None


def test_replay_applies_epoch_by_epoch() -> None:
    weights = np.array([1.0, 1.0])
    # Epoch 1's set comes before epoch 0's mul in the list, yet applies after it.
    later = RunUpdate(1, 0, 0, "set", None, np.array([0]), np.array([4.0]))
    earlier = RunUpdate(0, 0, 0, "mul", None, np.array([0]), np.array([3.0]))
    got, updated = replay(weights, [later, earlier], num_samples=2, replacement=True)
    assert got.tolist() == [4.0, 1.0] and updated
    unchanged, updated = replay(weights, [], num_samples=2, replacement=True)
    assert unchanged is weights and not updated


def _fields() -> dict[str, Any]:
    return {"rank": 0, "step": 0, "op": "set", "alpha": None, "seq": 0}
