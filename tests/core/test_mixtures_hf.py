"""Mixing ``hf-interleave`` against Hugging Face ``datasets`` itself (NOTE [hf-interleave])."""

from __future__ import annotations

import numpy as np
import pytest

from sampleplan.core.mixtures import (
    Mixing,
    Mixture,
    MixtureSource,
    ShuffleSeed,
    mixture_drawer,
)
from sampleplan.core.mixtures import drawers as drawers_module
from tests.helpers.mixtures import hf_interleave_stream

datasets = pytest.importorskip("datasets")


def _hf_stream(
    lengths: list[int],
    probabilities: list[float],
    shuffle_seeds: list[int | None],
    seed: int,
    stopping: str,
) -> list[int]:
    """``interleave_datasets`` of datasets holding their ``ConcatDataset`` positions."""
    return hf_interleave_stream(datasets, lengths, probabilities, shuffle_seeds, seed, stopping)


def _case(rng: np.random.Generator) -> tuple[list[int], list[float], list[int | None], int]:
    count = int(rng.integers(1, 6))
    lengths = [int(n) for n in rng.integers(1, 60, size=count)]
    raw = rng.random(count) + 0.05
    probabilities = (raw / raw.sum()).tolist()
    seeds: list[int | None] = [
        int(rng.integers(0, 1000)) if rng.random() < 0.5 else None for _ in range(count)
    ]
    return lengths, probabilities, seeds, int(rng.integers(0, 2**31))


def _mixture(
    lengths: list[int],
    probabilities: list[float],
    shuffle_seeds: list[int | None],
    seed: int,
    stopping: str,
) -> Mixture:
    sources = tuple(
        MixtureSource(f"s{i}", n, p, "sequential" if s is None else ShuffleSeed(s))
        for i, (n, p, s) in enumerate(zip(lengths, probabilities, shuffle_seeds, strict=True))
    )
    return Mixture(
        sources,
        Mixing(algorithm="hf-interleave", stopping=stopping),  # type: ignore[arg-type]
        seed=seed,
    )


@pytest.mark.parametrize("stopping", ["first_exhausted", "all_exhausted"])
@pytest.mark.parametrize("case", range(12))
def test_every_epoch_is_interleave_datasets_with_seed_plus_epoch(stopping: str, case: int) -> None:
    lengths, probabilities, shuffle_seeds, seed = _case(np.random.default_rng([case, 21]))
    drawer = mixture_drawer(_mixture(lengths, probabilities, shuffle_seeds, seed, stopping))
    for epoch in range(3):
        expected = _hf_stream(lengths, probabilities, shuffle_seeds, seed + epoch, stopping)
        assert drawer.num_samples_at(epoch) == len(expected)
        assert drawer.draw_epoch(epoch).tolist() == expected


@pytest.mark.parametrize("stopping", ["first_exhausted", "all_exhausted"])
def test_small_checkpoints_give_the_same_stream_and_pages(
    stopping: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checkpoints every 7 draws: the stop and every page are found across many of them.
    monkeypatch.setattr(drawers_module, "CHECKPOINT", 7)
    rng = np.random.default_rng(5)
    for _ in range(6):
        lengths, probabilities, shuffle_seeds, seed = _case(rng)
        drawer = mixture_drawer(_mixture(lengths, probabilities, shuffle_seeds, seed, stopping))
        expected = _hf_stream(lengths, probabilities, shuffle_seeds, seed, stopping)
        whole = drawer.draw_epoch(0)
        assert whole.tolist() == expected
        for start in range(0, len(expected), 5):
            for stop in (start, start + 1, start + 13, len(expected) + 3):
                assert drawer.draw_range(0, start, stop).tolist() == expected[start:stop]


def test_a_zero_probability_source_is_never_taken_as_in_datasets() -> None:
    lengths, probabilities, seeds = [10, 5, 8], [0.6, 0.0, 0.4], [None, None, 3]
    drawer = mixture_drawer(_mixture(lengths, probabilities, seeds, 4, "first_exhausted"))
    assert drawer.draw_epoch(0).tolist() == _hf_stream(
        lengths, probabilities, seeds, 4, "first_exhausted"
    )


def test_sizes_and_temperature_proportions_are_what_datasets_is_given() -> None:
    lengths = [30, 7, 12]
    sources = tuple(MixtureSource(f"s{i}", n, None, "sequential") for i, n in enumerate(lengths))
    for proportions in ("sizes", {"temperature": 2.0}):
        from sampleplan.core.mixtures import mixing_from_json

        mixing = mixing_from_json({"algorithm": "hf-interleave", "proportions": proportions})
        mixture = Mixture(sources, mixing, seed=9)
        p = mixture.sample_proportions.tolist()
        expected = _hf_stream(lengths, p, [None] * 3, 9, "first_exhausted")
        assert mixture_drawer(mixture).draw_epoch(0).tolist() == expected


def test_an_epoch_ending_on_a_checkpoint_is_paged_to_its_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With checkpoints every draw, every epoch ends on a checkpoint boundary.
    monkeypatch.setattr(drawers_module, "CHECKPOINT", 1)
    monkeypatch.setattr(drawers_module, "_GROUP", 1)
    lengths, probabilities = [4, 6], [0.5, 0.5]
    drawer = mixture_drawer(_mixture(lengths, probabilities, [None, None], 3, "first_exhausted"))
    expected = _hf_stream(lengths, probabilities, [None, None], 3, "first_exhausted")
    n = drawer.num_samples_at(0)
    assert drawer.draw_range(0, n, n + 5).tolist() == []
    assert drawer.draw_epoch(0).tolist() == expected
    counts = drawer.counts_before(0, n)
    assert (
        counts.tolist() == np.bincount([0 if i < 4 else 1 for i in expected], minlength=2).tolist()
    )
