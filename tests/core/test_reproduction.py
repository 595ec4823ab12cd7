"""reproduction_problems: what must match before a stream is reproduced on another machine."""

from __future__ import annotations

import pytest
import torch

from sampleplan.core.versions import reproduction_problems, runtime_versions


def test_this_machine_can_reproduce_its_own_plans() -> None:
    assert reproduction_problems(runtime_versions("torch")) == []


def test_a_local_build_tag_is_the_same_release() -> None:
    release = torch.__version__.split("+")[0]
    assert reproduction_problems({**runtime_versions("torch"), "torch": f"{release}+cu128"}) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"torch": "2.6.0"}, "the plan was drawn with torch 2.6.0, this is torch"),
        ({"machine": "aarch64-or-other"}, "drawn on CPU architecture 'aarch64-or-other'"),
        ({"algorithm_version": "torch-multinomial-v0"}, "defined by 'torch-multinomial-v0'"),
        ({"algorithm": "alias"}, "unknown algorithm 'alias'"),
    ],
)
def test_each_difference_is_named(change: dict[str, str], problem: str) -> None:
    problems = reproduction_problems({**runtime_versions("torch"), **change})
    assert len(problems) == 1 and problem in problems[0]


def test_hierarchical_needs_only_its_version() -> None:
    # NOTE [hierarchical-v1]: binary64, uint64 and Philox only; torch draws nothing.
    other_machine = {"torch": "1.13.1", "machine": "riscv64"}
    assert reproduction_problems({**runtime_versions("hierarchical"), **other_machine}) == []
    problems = reproduction_problems(
        {**runtime_versions("hierarchical"), "algorithm_version": "hierarchical-v0"}
    )
    assert len(problems) == 1 and "defined by 'hierarchical-v0'" in problems[0]


def test_a_stratified_split_needs_its_version() -> None:
    # NOTE [stratified-v1] selects the population: another definition draws other samples.
    for algorithm in ("torch", "hierarchical"):
        versions = runtime_versions(algorithm, stratify=True)
        assert versions["stratify"] == "stratified-v1"
        assert reproduction_problems(versions) == []
        # NOTE [stratified-v2] is drawn here too; a definition this code lacks is refused.
        assert reproduction_problems({**versions, "stratify": "stratified-v2"}) == []
        problems = reproduction_problems({**versions, "stratify": "stratified-v9"})
        assert len(problems) == 1 and "'stratified-v9'" in problems[0]
        assert reproduction_problems({**versions, "weights": "weights-v2"}) == []
        problems = reproduction_problems({**versions, "weights": "weights-v9"})
        assert len(problems) == 1 and "'weights-v9'" in problems[0]
    assert "stratify" not in runtime_versions("torch")
