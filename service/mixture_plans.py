"""Mixture plans as the service stores and serves them (plan field ``sources``).

NOTE [Mixture plans in the service]
    A mixture plan's canonical config is ``{"sources": [...], "mixing": {...},
    "num_samples": N, "seed": s}``: each source canonical as the core writes it
    (``name``, ``order``, ``weight`` where proportions are ``"weights"``) plus the id it
    comes from, ``dataset_id`` or ``plan_id``; ``mixing`` with every default of its
    algorithm filled in; ``num_samples`` resolved (the sources' total length when not
    given; ``null`` for ``hf-interleave``, whose stopping strategy ends each epoch). Its id
    is the SHA-256 of that JSON (sorted keys, no spaces) under a domain of its own, so the
    same request names the same plan. It is stored in ``mixture_plans`` and rebuilt from
    its config: the sources' datasets (and token lengths) and plans are read again, and
    the core's :class:`~sampleplan.core.mixtures.Mixture` is made from them exactly as at
    creation.

    A source given by ``dataset_id`` is a stored dataset (its length numbers
    ``ConcatDataset``'s positions); a dataset uploaded with a ``length_column`` has token
    lengths, which ``unit: "tokens"`` needs. A source given by ``plan_id`` is a plan over
    one dataset: its stream, epochs concatenated, in its dataset's space
    (:class:`~sampleplan.core.mixtures.PlanStream`); its length is its dataset's, its
    size (what ``"sizes"`` counts) its population's. A mixture is not a source.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from sampleplan.core.errors import InvalidPlanConfig
from sampleplan.core.mixtures import (
    Mixture,
    MixtureDrawer,
    MixtureSource,
    PlanStream,
    mixing_from_json,
    mixture_drawer,
)
from sampleplan.core.mixtures.orders import order_from_json
from sampleplan.core.mixtures.runs import initial_run_weights
from sampleplan.core.mixtures.stored import stored_mixture
from sampleplan.core.prepared import PreparedPlan

_MIXTURE_HASH_DOMAIN = b"sampleplan/mixture/v1\n"

Float64Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SourceInput:
    """What the service knows of a source besides its JSON: where it comes from, its
    dataset's length, its token lengths (a dataset with lengths) or its plan."""

    length: int
    token_lengths: Float64Array | None = None
    total_tokens: int | None = None
    plan: PreparedPlan | None = None


@dataclass(frozen=True, eq=False)
class MixturePlan:
    """A stored mixture plan: its canonical config, versions, the core's mixture and its
    drawer (which keeps the sequential algorithms' checkpoints)."""

    id: str
    config: dict[str, Any]
    versions: dict[str, str]
    mixture: Mixture
    drawer: MixtureDrawer
    inputs: tuple[SourceInput, ...]

    @cached_property
    def run_weights(self) -> Float64Array:
        """The source weights a run over this plan starts from (NOTE [Mixture runs])."""
        return initial_run_weights(self.mixture)

    @property
    def source_ids(self) -> list[tuple[str | None, str | None]]:
        """``(dataset_id, plan_id)`` of each source, in order."""
        return [(s.get("dataset_id"), s.get("plan_id")) for s in self.config["sources"]]


def mixture_plan_id(canonical: Mapping[str, Any]) -> str:
    """SHA-256 of a mixture plan's canonical config (NOTE [Mixture plans in the service])."""
    h = hashlib.sha256(_MIXTURE_HASH_DOMAIN)
    h.update(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def build_mixture(
    sources: Sequence[Mapping[str, Any]],
    mixing: Mapping[str, Any] | None,
    num_samples: int | None,
    seed: int,
    resolve: Callable[[Mapping[str, Any]], SourceInput],
) -> tuple[dict[str, Any], Mixture, tuple[SourceInput, ...]]:
    """The canonical config, the core's mixture and the sources' inputs of a request.

    ``resolve`` finds a source's dataset or plan (raising the service's 404s). The core
    checks everything else (``InvalidPlanConfig``, a 422).
    """
    if not sources:
        raise InvalidPlanConfig("'sources' should hold at least one source")
    inputs: list[SourceInput] = []
    made: list[MixtureSource] = []
    for value in sources:
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidPlanConfig("every source needs a non-empty string 'name'")
        if ("dataset_id" in value) == ("plan_id" in value):
            raise InvalidPlanConfig(
                f"source {name!r}: give exactly one of 'dataset_id' or 'plan_id'"
            )
        if "plan_id" in value and value.get("order", "plan") != "plan":
            raise InvalidPlanConfig(
                f"source {name!r} is a plan: it takes the plan's own stream, so it has no "
                "'order' (leave it out)"
            )
        source = resolve(value)
        inputs.append(source)
        if source.plan is not None:
            made.append(
                MixtureSource(
                    name=name,
                    length=source.length,
                    weight=value.get("weight"),
                    order=PlanStream(source.plan),
                    size=source.plan.population_size,
                )
            )
        else:
            made.append(
                MixtureSource.from_json(
                    {k: value[k] for k in ("name", "weight", "order") if k in value},
                    source.length,
                    source.token_lengths,
                )
            )
    checked = Mixture(tuple(made), mixing_from_json(mixing), seed=seed, num_samples=num_samples)
    canonical_sources = []
    for value, made_source in zip(sources, checked.sources, strict=True):
        entry = made_source.canonical()
        key = "plan_id" if "plan_id" in value else "dataset_id"
        entry[key] = value[key]
        canonical_sources.append(entry)
    algorithm = checked.mixing.algorithm
    canonical = {
        "sources": canonical_sources,
        "mixing": checked.mixing.canonical(),
        "num_samples": None if algorithm == "hf-interleave" else checked.default_num_samples(),
        "seed": checked.seed,
    }
    # What is served is what the canonical config defines, built by the one builder the
    # client's offline fallback calls too (NOTE [Stored mixtures]).
    mixture = stored_mixture(
        canonical,
        [s.length for s in inputs],
        token_lengths=[s.token_lengths for s in inputs],
        plans={
            value["plan_id"]: source.plan
            for value, source in zip(sources, inputs, strict=True)
            if source.plan is not None
        },
    )
    return canonical, mixture, tuple(inputs)


def mixture_plan(
    plan_id: str,
    canonical: dict[str, Any],
    versions: dict[str, str],
    mixture: Mixture,
    inputs: tuple[SourceInput, ...],
) -> MixturePlan:
    return MixturePlan(plan_id, canonical, versions, mixture, mixture_drawer(mixture), inputs)


def canonical_request(canonical: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A stored plan's sources as a request gives them (a plan source's ``order`` dropped)."""
    out = []
    for source in canonical["sources"]:
        entry = dict(source)
        if "plan_id" in entry:
            entry.pop("order", None)
        else:
            order_from_json(entry["order"], entry["name"])  # stored by this release
        out.append(entry)
    return out
