"""The versions manifest: what defines a plan's streams, and whether this code reproduces them.

A plan records :func:`runtime_versions` where it is created (its ``versions``);
:func:`reproduction_problems` says why another process cannot draw the same streams.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping

import numpy as np
import torch

from sampleplan.core.batches import BATCHES_VERSION
from sampleplan.core.config import ALGORITHMS
from sampleplan.core.hierarchical import ALGORITHM_VERSION as HIERARCHICAL_VERSION
from sampleplan.core.stratify import STRATIFY_VERSION

#: Versions of the stream definitions. A change to how an algorithm draws must bump it.
ALGORITHM_VERSIONS: dict[str, str] = {
    "torch": "torch-multinomial-v1",
    "hierarchical": HIERARCHICAL_VERSION,
}


def runtime_versions(
    algorithm: str, *, batching: bool = False, stratify: bool = False
) -> dict[str, str]:
    """What defines a plan's streams here: reproducing them elsewhere needs the same.

    Batch plans also record ``batches``, the version of NOTE [batches-v1]; plans with a
    stratified split ``stratify``, the version of NOTE [stratified-v1] (their population).
    """
    from sampleplan import __version__

    versions = {
        "algorithm": algorithm,
        "algorithm_version": ALGORITHM_VERSIONS[algorithm],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "machine": platform.machine(),
        "sampleplan": __version__,
    }
    if batching:
        versions["batches"] = BATCHES_VERSION
    if stratify:
        versions["stratify"] = STRATIFY_VERSION
    return versions


def _public_version(version: str) -> str:
    """``2.13.0+cu128`` -> ``2.13.0``: the builds of one release share its CPU code."""
    return version.split("+", 1)[0]


def reproduction_problems(versions: Mapping[str, str]) -> list[str]:
    """Why a plan's streams, defined by ``versions``, cannot be reproduced here (empty: they can).

    ``versions`` is what :func:`runtime_versions` recorded where the plan was created.
    The algorithm's definition must be the one this code implements. For ``torch``,
    ``torch.multinomial`` is promised neither across torch releases nor across CPU
    architectures, so both must match too.
    """
    algorithm = versions.get("algorithm")
    if algorithm not in ALGORITHMS:
        return [f"unknown algorithm {algorithm!r}"]
    here = runtime_versions(algorithm)
    problems: list[str] = []
    if versions.get("algorithm_version") != here["algorithm_version"]:
        problems.append(
            f"the plan's stream is defined by {versions.get('algorithm_version')!r}, "
            f"this code implements {here['algorithm_version']!r}"
        )
    # A stratified split's population is NOTE [stratified-v1]'s: another definition draws
    # from other samples. Absent: no stratified split (or one recorded before the key
    # existed, when stratified-v1 was the only definition).
    recorded_stratify = versions.get("stratify", STRATIFY_VERSION)
    if recorded_stratify != STRATIFY_VERSION:
        problems.append(
            f"the plan's stratified split is defined by {recorded_stratify!r}, "
            f"this code implements {STRATIFY_VERSION!r}"
        )
    if algorithm == "hierarchical":
        # Not torch's stream: NOTE [hierarchical-v1] defines it with binary64 arithmetic,
        # uint64 integers and Philox4x64-10 only (numpy, no torch), so that every replica
        # and release keeping the version gives the same stream (DESIGN.md). The version
        # is the whole contract; torch release and CPU architecture play no part.
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
