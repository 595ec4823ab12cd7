"""Runs over mixtures in the core: per-epoch source weights (NOTE [Mixture runs])."""

from __future__ import annotations

import numpy as np
import pytest

from sampleplan.core.mixtures import Mixture, MixtureSource, mixing_from_json, mixture_drawer
from sampleplan.core.mixtures.orders import source_elements
from sampleplan.core.mixtures.runs import RunMixtureDrawer, initial_run_weights, weighted_mixture
from tests.helpers.mixtures import megatron_build_blending_indices

ALGORITHMS = ["mixture-v1", "megatron-blend", "hf-interleave"]


def _mixture(algorithm: str) -> Mixture:
    hf = algorithm == "hf-interleave"
    weights = [0.5, 0.3, 0.2] if hf else [5.0, 3.0, 2.0]
    sources = tuple(
        MixtureSource(name, n, w)
        for name, n, w in zip(["a", "b", "c"], [23, 17, 9], weights, strict=True)
    )
    mixing = {"algorithm": algorithm, **({"block": 10} if algorithm == "mixture-v1" else {})}
    return Mixture(sources, mixing_from_json(mixing), seed=4, num_samples=None if hf else 40)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_run_whose_weights_never_change_is_its_plan(algorithm: str) -> None:
    mixture = _mixture(algorithm)
    plan = mixture_drawer(mixture)
    run = RunMixtureDrawer(mixture, lambda epoch: initial_run_weights(mixture))
    for epoch in range(4):
        assert run.draw_epoch(epoch).tolist() == plan.draw_epoch(epoch).tolist()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_change_applies_from_its_epoch_and_takes_continue(algorithm: str) -> None:
    mixture = _mixture(algorithm)
    plan = mixture_drawer(mixture)
    first = initial_run_weights(mixture)
    later = np.array([0.0, 1.0, 3.0])
    run = RunMixtureDrawer(mixture, lambda epoch: first if epoch < 2 else later)
    for epoch in (0, 1):
        assert run.draw_epoch(epoch).tolist() == plan.draw_epoch(epoch).tolist()
    changed = mixture_drawer(weighted_mixture(mixture, later))
    for epoch in (2, 3):
        sources, takes = run.sources_range(epoch, 0, run.num_samples_at(epoch))
        assert sources.tolist() == changed.sources_range(epoch, 0, 10**6)[0].tolist()
        assert 0 not in sources.tolist()
    # Each source's takes over the epochs are 0, 1, 2, ... with no gap or repeat (every
    # epoch from 0 for hf-interleave), so a reshuffled source goes on through its passes.
    every = [run.sources_range(e, 0, run.num_samples_at(e)) for e in range(4)]
    for i in range(3):
        if algorithm == "hf-interleave":
            for sources, takes in every:
                assert takes[sources == i].tolist() == list(range(int((sources == i).sum())))
        else:
            got = np.concatenate([takes[sources == i] for sources, takes in every])
            assert got.tolist() == list(range(got.shape[0]))
    elements = run.draw_range(3, 0, 5)
    sources, takes = every[3]
    expected = mixture.offsets[sources[:5]] + source_elements(
        mixture.orders, mixture.lengths, run.take_seed(3), sources[:5], takes[:5]
    )
    assert elements.tolist() == expected.tolist()


def test_megatron_blend_after_a_change_is_build_blending_indices_of_the_new_weights() -> None:
    mixture = _mixture("megatron-blend")
    later = np.array([1.0, 1.0, 6.0])
    run = RunMixtureDrawer(
        mixture, lambda epoch: initial_run_weights(mixture) if epoch < 1 else later
    )
    index, _ = megatron_build_blending_indices(later.tolist(), 3 * 40)
    sources, _ = run.sources_range(2, 0, 40)
    assert sources.tolist() == index[80:120]
