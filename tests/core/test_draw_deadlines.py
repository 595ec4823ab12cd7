"""NOTE [Deadlines] in the long loops of drawing and preparing: past the deadline they
stop at the next chunk; before it they draw what torch draws."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager

import numpy as np
import pytest
import torch

from sampleplan.core import exact
from sampleplan.core.config import PlanConfig
from sampleplan.core.deadlines import deadline
from sampleplan.core.errors import DeadlineExceeded
from sampleplan.core.exact import CumulativeTable, draw_exact_with_replacement
from sampleplan.core.hierarchical import HierarchicalTable, draw_hierarchical
from sampleplan.core.labels import labels_from_array
from sampleplan.core.prepared import prepare_plan

backends = pytest.mark.parametrize("backend", exact.AVAILABLE_BACKENDS)


def _passed() -> AbstractContextManager[None]:
    """A deadline that has passed by the time anything checks it."""
    return deadline(-1.0)


@backends
def test_an_exact_draw_past_its_deadline_stops(backend: exact.Backend) -> None:
    table = CumulativeTable.from_weights(np.linspace(0.5, 2.0, 1000), backend=backend)
    with _passed(), pytest.raises(DeadlineExceeded):
        draw_exact_with_replacement(table, 7, 0, 5_000_000, backend=backend)


@backends
def test_an_exact_draw_within_its_deadline_is_torchs(backend: exact.Backend) -> None:
    weights = np.linspace(0.5, 2.0, 1000)
    table = CumulativeTable.from_weights(weights, backend=backend)
    with deadline(60.0):
        got = draw_exact_with_replacement(table, 7, 0, 20_000, backend=backend)
    generator = torch.Generator().manual_seed(7)
    expected = torch.multinomial(torch.tensor(weights), 20_000, True, generator=generator)
    assert got.tolist() == expected.tolist()


def test_a_split_exact_draw_stops_in_its_helpers_too() -> None:
    if "numba" not in exact.AVAILABLE_BACKENDS:
        pytest.skip("the split draw is numba's")
    table = CumulativeTable.from_weights(np.ones(64), backend="numba")
    began = time.monotonic()
    with _passed(), pytest.raises(DeadlineExceeded):
        draw_exact_with_replacement(table, 1, 0, 50_000_000, backend="numba", threads=2)
    assert time.monotonic() - began < 5.0


def test_a_hierarchical_draw_past_its_deadline_stops() -> None:
    codes = np.arange(1000) % 7
    table = HierarchicalTable.build(codes, np.ones(1000))
    with _passed(), pytest.raises(DeadlineExceeded):
        draw_hierarchical(table, 3, 0, 0, 1_000_000)


def test_preparing_a_plan_past_its_deadline_stops() -> None:
    labels = labels_from_array(np.array([0, 1, 1, 2] * 1000))
    with _passed(), pytest.raises(DeadlineExceeded):
        prepare_plan(labels, PlanConfig())
    with deadline(60.0):
        prepared = prepare_plan(labels, PlanConfig())
    counts = np.bincount([0, 1, 1, 2] * 1000)
    assert prepared.weights.tolist() == (1.0 / counts[[0, 1, 1, 2] * 1000]).tolist()
