"""A plan's configuration: how to weight a dataset and draw from it, and the plan's name.

:class:`PlanConfig` is the validated configuration; its :meth:`~PlanConfig.canonical`
JSON form, with the dataset's id, names the plan (:func:`plan_id`): the same inputs give
the same plan, and a plan made before a field existed keeps its id.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from sampleplan.core.algorithms import BATCHES, Algorithm, AlgorithmName, algorithm_named
from sampleplan.core.batches import BATCHES_VERSION, BATCHES_VERSIONS, Batching
from sampleplan.core.errors import InvalidPlanConfig
from sampleplan.core.labelsets import LABEL_REDUCES, LabelReduce
from sampleplan.core.schedules import DynamicBalanceSchedule, Schedule
from sampleplan.core.splitting import SEED_LIMIT, Split
from sampleplan.core.stratify import STRATIFY_VERSION, STRATIFY_VERSIONS
from sampleplan.core.weighting import (
    CLASS_BASED,
    DEFAULT_THRESHOLD,
    STRATEGIES,
    WEIGHTS_VERSION,
    WEIGHTS_VERSIONS,
    Strategy,
)

_PLAN_HASH_DOMAIN = b"sampleplan/plan/v1\n"

#: Draws per epoch, at most: stream positions (and rank offsets on top) stay int64.
MAX_NUM_SAMPLES = 2**62

#: The definitions a plan may choose (NOTE [Choosing a definition]): every version this
#: code draws, oldest (the default) first.
DEFINITIONS: Mapping[str, tuple[str, ...]] = {
    "batches": BATCHES_VERSIONS,
    "stratify": STRATIFY_VERSIONS,
    "weights": WEIGHTS_VERSIONS,
}
#: The newest of each: what a new plan should ask for.
LATEST_DEFINITIONS: Mapping[str, str] = {key: versions[-1] for key, versions in DEFINITIONS.items()}

# NOTE [Choosing a definition]
#     A plan's id names its request for ever: 0.1.0's requests, sent again to any release,
#     name the same plans with the same streams (tests/storage/test_previous_release.py,
#     on a fresh database too). A request that does not say which definition it wants
#     therefore keeps the first one (``batches-v1``, ``stratified-v1``, ``weights-v1``),
#     and a newer definition is asked for by name: ``"definitions": {"batches":
#     "batches-v2"}`` (``LATEST_DEFINITIONS`` holds the newest of each). The canonical
#     form holds ``definitions`` only with the entries that are not the first version and
#     that apply to the plan (``batches`` to batch plans, ``stratify`` to stratified
#     splits, ``weights`` to ``effective_number``, the one strategy whose weights differ
#     between its versions), so every plan made before keeps its id and a definition that
#     changes nothing for a plan does not make it another plan. The plan's ``versions``
#     records what was drawn.


def _weights_digest(weights: npt.NDArray[np.float64]) -> str:
    data = np.ascontiguousarray(weights, dtype="<f8")
    return hashlib.sha256(data.data).hexdigest()


@dataclass(frozen=True, eq=False)
class PlanConfig:
    """How to weight and draw. Validated on construction; defaults as in docs/design.md."""

    strategy: Strategy = "inverse_frequency"
    beta: float | None = None
    class_weights: Mapping[str, float] | None = None
    weights: npt.NDArray[np.float64] | None = field(default=None, repr=False)
    split: Split | None = None
    num_samples: int | None = None
    replacement: bool = True
    seed: int = 0
    algorithm: AlgorithmName = "torch"
    label_reduce: LabelReduce | None = None
    unlabelled_weight: float | None = None
    threshold: float | None = None
    schedule: Schedule | None = None
    #: Batch plans (``sampleplan.core.batches``): the contract, and batches per epoch
    #: (``None``: ``max(1, population_size // batch_size)``).
    batching: Batching | None = None
    num_batches: int | None = None
    #: The definitions asked for by name (NOTE [Choosing a definition]); absent: the first.
    definitions: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.definitions is not None:
            if not isinstance(self.definitions, Mapping):
                raise InvalidPlanConfig(
                    f"definitions should be an object {{name: version}}, "
                    f"but got {self.definitions!r}"
                )
            for key, version in self.definitions.items():
                known = DEFINITIONS.get(key)
                if known is None:
                    raise InvalidPlanConfig(
                        f"definitions: unknown definition {key!r}; expected one of "
                        f"{', '.join(DEFINITIONS)}"
                    )
                if version not in known:
                    raise InvalidPlanConfig(
                        f"definitions.{key} should be one of {', '.join(known)}, "
                        f"but got {version!r}"
                    )
        if self.strategy not in STRATEGIES:
            raise InvalidPlanConfig(
                f"unknown strategy {self.strategy!r}; expected one of {', '.join(STRATEGIES)}"
            )
        drawing = algorithm_named(self.algorithm)
        if not 0 <= self.seed < SEED_LIMIT:
            raise InvalidPlanConfig(
                f"seed should be in [0, 2**32) (torch's CPU generator keeps only the low 32 bits), "
                f"but got seed={self.seed}"
            )
        if self.num_samples is not None and self.num_samples <= 0:
            raise InvalidPlanConfig(
                "num_samples should be a positive integer value, "
                f"but got num_samples={self.num_samples}"
            )
        if self.beta is not None and self.strategy != "effective_number":
            raise InvalidPlanConfig("'beta' only applies to strategy 'effective_number'")
        if self.beta is not None and not (math.isfinite(self.beta) and 0.0 <= self.beta < 1.0):
            raise InvalidPlanConfig(f"beta should be in [0, 1), but got beta={self.beta}")
        if self.class_weights is not None and self.strategy != "class_weights":
            raise InvalidPlanConfig("'class_weights' only applies to strategy 'class_weights'")
        if self.weights is not None and self.strategy != "sample_weights":
            raise InvalidPlanConfig("'weights' only applies to strategy 'sample_weights'")
        if self.strategy == "class_weights" and not self.class_weights:
            raise InvalidPlanConfig(
                "strategy 'class_weights' needs a non-empty 'class_weights' object"
            )
        if self.strategy == "sample_weights" and self.weights is None:
            raise InvalidPlanConfig(
                "strategy 'sample_weights' needs a 'weights' list, one per sample"
            )
        drawing.check_config(self)
        if self.label_reduce is not None:
            if self.label_reduce not in LABEL_REDUCES:
                raise InvalidPlanConfig(
                    f"unknown label_reduce {self.label_reduce!r}; expected one of "
                    f"{', '.join(LABEL_REDUCES)}"
                )
            if self.strategy not in CLASS_BASED:
                raise InvalidPlanConfig(
                    "'label_reduce' only applies to class-based strategies "
                    f"({', '.join(sorted(CLASS_BASED))}); repeat_factor always takes the max"
                )
        if self.threshold is not None:
            if self.strategy != "repeat_factor":
                raise InvalidPlanConfig("'threshold' only applies to strategy 'repeat_factor'")
            if not (math.isfinite(self.threshold) and self.threshold >= 0.0):
                raise InvalidPlanConfig(
                    f"threshold should be a finite number >= 0, but got threshold={self.threshold}"
                )
        if self.unlabelled_weight is not None:
            if self.strategy == "sample_weights":
                raise InvalidPlanConfig(
                    "'unlabelled_weight' does not apply to strategy 'sample_weights' "
                    "(every sample's weight is given)"
                )
            if not (math.isfinite(self.unlabelled_weight) and self.unlabelled_weight >= 0.0):
                raise InvalidPlanConfig(
                    "unlabelled_weight should be a finite number >= 0, "
                    f"but got unlabelled_weight={self.unlabelled_weight}"
                )
        if self.num_batches is not None and self.batching is None:
            raise InvalidPlanConfig("'num_batches' only applies to plans with 'batching'")
        if self.num_batches is not None and self.num_batches <= 0:
            raise InvalidPlanConfig(
                "num_batches should be a positive integer value, "
                f"but got num_batches={self.num_batches}"
            )
        if self.batching is not None:
            BATCHES.check_config(self)
        if self.schedule is not None and self.strategy != "inverse_frequency":
            raise InvalidPlanConfig(
                "a schedule defines the weights of every epoch: leave 'strategy' at its "
                f"default, but got strategy={self.strategy!r}"
            )
        if self.schedule is not None and self.batching is not None:
            raise InvalidPlanConfig(
                "'schedule' changes a plan's weights and 'batching' fixes its batches' "
                "class make-up: a plan takes one or the other"
            )

    def _definition(self, key: str) -> str:
        return (self.definitions or {}).get(key, DEFINITIONS[key][0])

    @property
    def batches_version(self) -> str:
        """The batch definition a batch plan draws (NOTE [batches-v1], [batches-v2])."""
        return self._definition("batches")

    @property
    def stratify_version(self) -> str:
        """The stratified split's definition (NOTE [stratified-v1], [stratified-v2])."""
        return self._definition("stratify")

    @property
    def weights_version(self) -> str:
        """The weighting formulas' definition (NOTE [Weight formulas] in ``weighting.py``)."""
        return self._definition("weights")

    def applied_definitions(self) -> dict[str, str]:
        """The definitions that are not the first version and apply to this plan."""
        out: dict[str, str] = {}
        if self.batching is not None and self.batches_version != BATCHES_VERSION:
            out["batches"] = self.batches_version
        stratified = self.split is not None and self.split.stratify
        if stratified and self.stratify_version != STRATIFY_VERSION:
            out["stratify"] = self.stratify_version
        if self.strategy == "effective_number" and self.weights_version != WEIGHTS_VERSION:
            out["weights"] = self.weights_version
        return out

    @property
    def drawing_algorithm(self) -> Algorithm:
        """The object that draws the index stream ``algorithm`` names (NOTE [Drawing
        algorithms] in ``algorithms.py``)."""
        return algorithm_named(self.algorithm)

    @property
    def epoch_lengths_vary(self) -> bool:
        """Whether ``num_samples`` depends on the epoch (``dynamic_balance``, num_samples null)."""
        return isinstance(self.schedule, DynamicBalanceSchedule) and self.num_samples is None

    @property
    def reduce(self) -> LabelReduce:
        """How a label set's class weights combine: ``label_reduce``, ``sum`` when absent."""
        if self.strategy == "repeat_factor":
            return "max"
        return self.label_reduce or "sum"

    def default_unlabelled_weight(self) -> float:
        """A sample with no label weighs this unless ``unlabelled_weight`` is given.

        0 for class-based strategies (no class to balance: class-aware sampling never
        draws it); 1 for ``repeat_factor`` (detectron2's ``max(..., default=1.0)``) and
        for ``uniform`` (every sample alike).
        """
        return 0.0 if self.strategy in CLASS_BASED else 1.0

    def resolved_unlabelled_weight(self) -> float:
        if self.unlabelled_weight is None:
            return self.default_unlabelled_weight()
        return float(self.unlabelled_weight)

    def canonical(self, num_samples: int, num_batches: int | None = None) -> dict[str, Any]:
        """The JSON form that names the plan: every default filled, ``num_samples`` resolved.

        Per-sample weights enter by their SHA-256 (they are stored beside the plan).
        ``batching`` and the resolved ``num_batches`` are there only for batch plans, so
        every other plan keeps its id.
        """
        out: dict[str, Any] = {"strategy": self.strategy}
        if self.strategy == "effective_number":
            out["beta"] = 0.999 if self.beta is None else float(self.beta)
        if self.strategy == "class_weights":
            assert self.class_weights is not None
            out["class_weights"] = {str(k): float(v) for k, v in sorted(self.class_weights.items())}
        if self.strategy == "sample_weights":
            assert self.weights is not None
            out["weights_sha256"] = _weights_digest(self.weights)
        if self.split is not None:
            split: dict[str, Any] = {"seed": self.split.seed}
            if self.split.fractions is not None:
                split["fractions"] = [float(f) for f in self.split.fractions]
            else:
                assert self.split.lengths is not None
                split["lengths"] = [int(n) for n in self.split.lengths]
            if self.split.stratify:
                split["stratify"] = True
            out["split"] = split
        else:
            out["split"] = None
        # Multi-label fields enter only when not at their defaults, so plans made before
        # they existed keep their ids.
        if self.strategy == "repeat_factor":
            threshold = DEFAULT_THRESHOLD if self.threshold is None else float(self.threshold)
            out["threshold"] = threshold
        if self.label_reduce is not None and self.label_reduce != "sum":
            out["label_reduce"] = self.label_reduce
        if (
            self.unlabelled_weight is not None
            and float(self.unlabelled_weight) != self.default_unlabelled_weight()
        ):
            out["unlabelled_weight"] = float(self.unlabelled_weight)
        out.update(
            # Null when every epoch has its own length (the sum of its quotas).
            num_samples=None if self.epoch_lengths_vary else num_samples,
            replacement=self.replacement,
            seed=self.seed,
            algorithm=self.algorithm,
        )
        # Only when set: every plan made before schedules existed keeps its id.
        if self.schedule is not None:
            out["schedule"] = self.schedule.canonical()
        if self.batching is not None:
            if num_batches is None:
                raise ValueError("a batch plan's canonical form needs its resolved num_batches")
            out["batching"] = self.batching.canonical()
            out["num_batches"] = num_batches
        # Only the definitions that are not the first and apply: NOTE [Choosing a definition].
        definitions = self.applied_definitions()
        if definitions:
            out["definitions"] = definitions
        return out


def plan_id(dataset_id: str, canonical_config: Mapping[str, Any]) -> str:
    """SHA-256 of the dataset id and the canonical config: same inputs, same plan."""
    h = hashlib.sha256(_PLAN_HASH_DOMAIN)
    h.update(dataset_id.encode())
    h.update(b"\n")
    h.update(json.dumps(canonical_config, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()
