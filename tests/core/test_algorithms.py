"""Drawing algorithms: one object per algorithm, chosen once (NOTE [Drawing algorithms])."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest

from sampleplan.core.algorithms import (
    ALGORITHMS,
    BATCHES,
    Algorithm,
    AlgorithmName,
    Drawer,
    algorithm_named,
)
from sampleplan.core.batches import MPerClass
from sampleplan.core.config import PlanConfig
from sampleplan.core.errors import InvalidPlanConfig
from sampleplan.core.labels import labels_from_list
from sampleplan.core.prepared import PreparedPlan, prepare_plan
from sampleplan.core.splitting import Split
from sampleplan.core.streams import Int64Array, StreamRequest
from sampleplan.core.versions import plan_versions, reproduction_problems, runtime_versions

LABELS = labels_from_list([0, 1, 1, 2, 2, 2, 0, 1] * 5)


def test_the_registry_holds_every_name_a_config_accepts() -> None:
    assert tuple(ALGORITHMS) == get_args(AlgorithmName) == ("torch", "hierarchical")
    for name, algorithm in ALGORITHMS.items():
        assert algorithm.name == name
        assert PlanConfig(algorithm=name).drawing_algorithm is algorithm
    with pytest.raises(InvalidPlanConfig, match="unknown algorithm 'alias'; expected one of"):
        algorithm_named("alias")


def test_what_each_algorithm_records_and_promises() -> None:
    # These drive the service (epoch cache, limits), the manifest and the offline client:
    # a change here changes answers.
    torch, hierarchical = ALGORITHMS["torch"], ALGORITHMS["hierarchical"]
    assert torch.versions() == {"algorithm": "torch", "algorithm_version": "torch-multinomial-v1"}
    assert (torch.draws_whole_epochs, torch.machine_bound, torch.needs_codes) == (
        True,
        True,
        False,
    )
    assert hierarchical.versions() == {
        "algorithm": "hierarchical",
        "algorithm_version": "hierarchical-v1",
    }
    assert (
        hierarchical.draws_whole_epochs,
        hierarchical.machine_bound,
        hierarchical.needs_codes,
    ) == (False, False, True)
    assert BATCHES.versions() == {"batches": "batches-v1"}
    assert BATCHES.versions("batches-v2") == {"batches": "batches-v2"}
    assert BATCHES.reproduction_problems({"batches": "batches-v1"}) == []
    assert BATCHES.reproduction_problems({"batches": "batches-v2"}) == []
    assert BATCHES.reproduction_problems({"batches": "batches-v0"}) == [
        "they are defined by 'batches-v0', this code implements 'batches-v1', 'batches-v2'"
    ]


def test_a_plan_records_the_versions_of_what_draws_it() -> None:
    stratified = Split(seed=1, fractions=(0.5, 0.5), stratify=True)
    batching = MPerClass(m=2, batch_size=4)
    for config, expected in [
        (PlanConfig(), runtime_versions("torch")),
        (PlanConfig(algorithm="hierarchical"), runtime_versions("hierarchical")),
        (PlanConfig(split=stratified), runtime_versions("torch", stratify=True)),
        (PlanConfig(batching=batching), runtime_versions("torch", batching=True)),
    ]:
        assert plan_versions(config) == expected
    versions = plan_versions(PlanConfig(batching=batching))
    assert list(versions)[:2] == ["algorithm", "algorithm_version"]
    assert versions["batches"] == "batches-v1"


@pytest.mark.parametrize("replacement", [True, False])
def test_a_torch_drawer_gives_its_epoch_in_any_ranges(replacement: bool) -> None:
    plan = prepare_plan(LABELS, PlanConfig(seed=5, num_samples=30, replacement=replacement))
    drawer = ALGORITHMS["torch"].prepare(plan)
    assert drawer.draws_by_range is replacement
    whole = drawer.draw_epoch(3)
    assert whole.tolist() == plan.draw_epoch(3).tolist()
    pieces = [drawer.draw_range(3, lo, min(lo + 7, 30)) for lo in range(0, 30, 7)]
    assert np.concatenate(pieces).tolist() == whole.tolist()


def test_a_hierarchical_drawer_never_draws_a_whole_epoch() -> None:
    plan = prepare_plan(LABELS, PlanConfig(algorithm="hierarchical", seed=2, num_samples=50))
    drawer = ALGORITHMS["hierarchical"].prepare(plan)
    drawer.build()
    assert drawer.draws_by_range
    assert drawer.draw_range(1, 10, 20).tolist() == drawer.draw_range(1, 0, 50)[10:20].tolist()
    with pytest.raises(ValueError, match="never materialised"):
        drawer.draw_epoch(1)


class _Sequential(Algorithm):
    """Position k of every epoch is population position k modulo the population size."""

    name = "sequential"  # type: ignore[assignment]
    version = "sequential-v1"
    draws_whole_epochs = False
    machine_bound = False
    needs_codes = False

    def check_config(self, config: PlanConfig) -> None:
        if config.seed != 0:
            raise InvalidPlanConfig("algorithm 'sequential' has no randomness; leave seed at 0")

    def prepare(self, plan: PreparedPlan) -> Drawer:
        return _SequentialDrawer(plan.population_size)


class _SequentialDrawer(Drawer):
    draws_by_range = True

    def __init__(self, size: int) -> None:
        self.size = size

    def draw_range(self, epoch: int, start: int, stop: int) -> Int64Array:
        return np.arange(start, stop, dtype=np.int64) % self.size

    def draw_epoch(self, epoch: int) -> Int64Array:
        raise ValueError("never drawn whole")


def test_an_algorithm_added_to_the_registry_is_drawn_with_no_other_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The registry is the only place a name is looked at: sharding, paging and the
    manifest work for a new algorithm as they do for the others."""
    monkeypatch.setitem(ALGORITHMS, "sequential", _Sequential())
    with pytest.raises(InvalidPlanConfig, match="no randomness"):
        PlanConfig(algorithm="sequential", seed=1)  # type: ignore[arg-type]
    plan = prepare_plan(LABELS, PlanConfig(algorithm="sequential", num_samples=45))  # type: ignore[arg-type]
    page = plan.indices(StreamRequest(epoch=4, rank=1, world_size=2, offset=3, limit=5))
    assert page.tolist() == [7, 9, 11, 13, 15]
    versions = runtime_versions("sequential")
    assert versions["algorithm_version"] == "sequential-v1"
    assert reproduction_problems({**versions, "torch": "0.1", "machine": "other"}) == []
