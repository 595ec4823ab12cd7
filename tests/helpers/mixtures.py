"""Upstream oracles of mixtures, for the core's tests and the service's.

``megatron_build_blending_indices`` is Megatron-core's ``build_blending_indices``
(helpers.cpp) transcribed; ``hf_interleave_stream`` runs Hugging Face ``datasets``'
``interleave_datasets`` itself on datasets holding their ``ConcatDataset`` positions.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def megatron_build_blending_indices(weights: list[float], size: int) -> tuple[list[int], list[int]]:
    """Megatron-core's ``build_blending_indices`` (helpers.cpp), written out plainly.

    ``weights`` are normalised as megatron.core.datasets.utils.normalize does
    (``numpy.array(w, float64) / numpy.sum(...)``); returns (dataset_index,
    dataset_sample_index).
    """
    w = np.array(weights, dtype=np.float64)
    w = (w / np.sum(w)).tolist()
    current_samples = [0] * len(w)
    dataset_index, dataset_sample_index = [], []
    for sample_idx in range(size):
        sample_idx_double = max(float(sample_idx), 1.0)
        max_error_index = 0
        max_error = w[0] * sample_idx_double - float(current_samples[0])
        for dataset_idx in range(1, len(w)):
            error = w[dataset_idx] * sample_idx_double - float(current_samples[dataset_idx])
            if error > max_error:
                max_error = error
                max_error_index = dataset_idx
        dataset_index.append(max_error_index)
        dataset_sample_index.append(current_samples[max_error_index])
        current_samples[max_error_index] += 1
    return dataset_index, dataset_sample_index


def hf_interleave_stream(
    datasets: Any,
    lengths: list[int],
    probabilities: list[float],
    shuffle_seeds: list[int | None],
    seed: int,
    stopping: str,
) -> list[int]:
    """``datasets.interleave_datasets`` of map-style datasets holding their
    ``ConcatDataset`` positions (``datasets``: the imported module)."""
    parts = []
    offset = 0
    for n, shuffle_seed in zip(lengths, shuffle_seeds, strict=True):
        part = datasets.Dataset.from_dict({"idx": list(range(offset, offset + n))})
        if shuffle_seed is not None:
            part = part.shuffle(seed=shuffle_seed)
        parts.append(part)
        offset += n
    mixed = datasets.interleave_datasets(
        parts, probabilities=probabilities, seed=seed, stopping_strategy=stopping
    )
    return list(mixed["idx"])
