"""The versions manifest: what defines a plan's streams, and whether this code reproduces them.

A plan records :func:`runtime_versions` where it is created (its ``versions``);
:func:`reproduction_problems` says why another process cannot draw the same streams.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping

import numpy as np
import torch

from sampleplan.core.algorithms import ALGORITHMS, BATCHES, algorithm_named
from sampleplan.core.config import PlanConfig
from sampleplan.core.mixtures import MIXING_ALGORITHMS, mixing_algorithm
from sampleplan.core.stratify import STRATIFY_VERSION, STRATIFY_VERSIONS
from sampleplan.core.weighting import WEIGHTS_VERSIONS


def runtime_versions(
    algorithm: str,
    *,
    batching: bool | str = False,
    stratify: bool | str = False,
    weights: str | None = None,
) -> dict[str, str]:
    """What defines a plan's streams here: reproducing them elsewhere needs the same.

    Batch plans also record ``batches``, the version of their batches' definition (NOTE
    [batches-v1], [batches-v2]); plans with a stratified split ``stratify``, the version of
    its definition (NOTE [stratified-v1], [stratified-v2]: their population); plans whose
    weights follow ``weights-v2`` (NOTE [Weight formulas]), ``weights``. ``True`` stands
    for the first version. What is recorded for a plan of the first versions is what
    release 0.1.0 recorded.
    """
    from sampleplan import __version__

    versions = {
        **algorithm_named(algorithm).versions(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "machine": platform.machine(),
        "sampleplan": __version__,
    }
    if batching:
        versions.update(BATCHES.versions(BATCHES.version if batching is True else batching))
    if stratify:
        versions["stratify"] = STRATIFY_VERSION if stratify is True else stratify
    if weights is not None:
        versions["weights"] = weights
    return versions


def mixture_versions(algorithm: str) -> dict[str, str]:
    """What defines a mixture's streams: its mixing algorithm and version (NOTE [Mixing
    algorithms]), with numpy, the CPU architecture and sampleplan for the record."""
    from sampleplan import __version__

    return {
        **mixing_algorithm(algorithm).versions(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "sampleplan": __version__,
    }


def plan_versions(config: PlanConfig) -> dict[str, str]:
    """:func:`runtime_versions` of a plan made from ``config``: what its ``versions`` holds."""
    stratified = config.split is not None and config.split.stratify
    return runtime_versions(
        config.algorithm,
        batching=config.batches_version if config.batching is not None else False,
        stratify=config.stratify_version if stratified else False,
        # Recorded only where it is not the first: plans of weights-v1 record what 0.1.0 did.
        weights=config.applied_definitions().get("weights"),
    )


def _public_version(version: str) -> str:
    """``2.13.0+cu128`` -> ``2.13.0``: the builds of one release share its CPU code."""
    return version.split("+", 1)[0]


def reproduction_problems(versions: Mapping[str, str]) -> list[str]:
    """Why a plan's streams, defined by ``versions``, cannot be reproduced here (empty: they can).

    ``versions`` is what :func:`runtime_versions` recorded where the plan was created.
    The algorithm's definition must be the one this code implements. For an algorithm
    that is :attr:`~sampleplan.core.algorithms.Algorithm.machine_bound` (``torch``:
    ``torch.multinomial`` is promised neither across torch releases nor across CPU
    architectures), both must match too.
    """
    name = versions.get("algorithm")
    mixing = MIXING_ALGORITHMS.get(name) if name is not None else None
    if mixing is not None:
        # Integers, binary64 and named generators only: the version is the whole contract.
        if versions.get("algorithm_version") != mixing.version:
            return [
                f"the mixture's stream is defined by {versions.get('algorithm_version')!r}, "
                f"this code implements {mixing.version!r}"
            ]
        return []
    algorithm = ALGORITHMS.get(name) if name is not None else None
    if algorithm is None:
        return [f"unknown algorithm {name!r}"]
    here = runtime_versions(algorithm.name)
    problems: list[str] = []
    if versions.get("algorithm_version") != here["algorithm_version"]:
        problems.append(
            f"the plan's stream is defined by {versions.get('algorithm_version')!r}, "
            f"this code implements {here['algorithm_version']!r}"
        )
    # A stratified split's population is its definition's: another definition draws from
    # other samples. Absent: no stratified split (or one recorded before the key existed,
    # when stratified-v1 was the only definition).
    recorded_stratify = versions.get("stratify", STRATIFY_VERSION)
    if recorded_stratify not in STRATIFY_VERSIONS:
        problems.append(
            f"the plan's stratified split is defined by {recorded_stratify!r}, "
            f"this code implements {', '.join(map(repr, STRATIFY_VERSIONS))}"
        )
    recorded_weights = versions.get("weights", WEIGHTS_VERSIONS[0])
    if recorded_weights not in WEIGHTS_VERSIONS:
        problems.append(
            f"the plan's weights are defined by {recorded_weights!r}, "
            f"this code implements {', '.join(map(repr, WEIGHTS_VERSIONS))}"
        )
    if not algorithm.machine_bound:
        # The version is the whole contract (NOTE [hierarchical-v1]).
        return problems
    recorded_torch = versions.get("torch", "?")
    if _public_version(recorded_torch) != _public_version(here["torch"]):
        problems.append(
            f"the plan was drawn with torch {recorded_torch}, this is torch {here['torch']}"
        )
    if versions.get("machine") != here["machine"]:
        problems.append(
            f"the plan was drawn on CPU architecture {versions.get('machine')!r}, "
            f"this is {here['machine']!r}"
        )
    return problems
