"""Schedules: a plan's weights (and length) as a function of the epoch.

A plan with a ``schedule`` draws epoch ``e`` from ``weights_at(e)`` and ``num_samples_at(e)``
instead of one fixed weight vector; everything else about the stream (seed ``seed + e``,
sharding, paging, both algorithms) is unchanged. Both kinds give every member of a class
the same weight, computed from the population's class counts only, so a schedule is a
pure function of ``(counts, epoch)`` and any replica recomputes it.

NOTE [Schedule formulas]
    ``power`` (a curriculum from the natural to the balanced distribution, or back)::

        p(e) = start + (end - start) * min(e, epochs) / epochs
        class weight = count ** -p(e)

    ``p = 0`` is the natural distribution, ``0.5`` inverse square root, ``1`` inverse
    frequency. ``num_samples`` is the plan's (the population size when null).

    ``dynamic_balance`` (catalyst's ``DynamicBalanceClassSampler``, mode ``downsampling``)::

        n_min = smallest count of a class present in the population
        D_c = n_c / n_min
        D_c(e) = min(D_c ** (lambda ** e), max_d)        # max_d null: no cap
        quota_c(e) = int(D_c(e) * n_min)
        sample weight = quota_c(e) / n_c

    so that one epoch's expected draws of class ``c`` are ``quota_c(e)`` when
    ``num_samples`` is null (then the sum of the quotas, and epochs differ in length).

    Every formula is evaluated per class with Python floats (C ``pow``, one rounding per
    operation, in the order written above), not with numpy's vectorised ``power``, whose
    SIMD kernels may round differently: anyone can recompute the weights bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sampleplan.core.errors import InvalidPlanConfig

__all__ = ["DynamicBalanceSchedule", "PowerSchedule", "Schedule", "schedule_from_json"]

Float64Array = npt.NDArray[np.float64]
Int64Array = npt.NDArray[np.int64]

#: Largest ``|start|`` and ``|end|`` of a power schedule: ``count ** -p`` stays a normal
#: float64 for any count below 2**62 (and sums of such weights stay finite).
MAX_POWER = 10.0

#: Most epochs a power schedule may take to reach ``end`` (epochs are below 2**32).
MAX_EPOCHS = 2**32


def _number(value: object, name: str, kind: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPlanConfig(
            f"schedule {kind!r}: {name} should be a number, but got {value!r:.40}"
        )
    number = float(value)
    if not math.isfinite(number):
        raise InvalidPlanConfig(f"schedule {kind!r}: {name} should be finite, but got {value}")
    return number


@dataclass(frozen=True)
class PowerSchedule:
    """Class weight ``count ** -p(e)``, ``p`` moving linearly from ``start`` to ``end``."""

    start: float = 0.0
    end: float = 1.0
    epochs: int = 10

    def __post_init__(self) -> None:
        for name, value in (("start", self.start), ("end", self.end)):
            if not -MAX_POWER <= value <= MAX_POWER:
                raise InvalidPlanConfig(
                    f"schedule 'power': {name} should be in [-{MAX_POWER:g}, {MAX_POWER:g}], "
                    f"but got {name}={value}"
                )
        if not 1 <= self.epochs <= MAX_EPOCHS:
            raise InvalidPlanConfig(
                f"schedule 'power': epochs should be an integer in [1, 2**32], "
                f"but got epochs={self.epochs}"
            )

    def canonical(self) -> dict[str, Any]:
        return {"kind": "power", "start": self.start, "end": self.end, "epochs": self.epochs}

    def exponent(self, epoch: int) -> float:
        """``p(e)``; see NOTE [Schedule formulas]."""
        return self.start + (self.end - self.start) * min(epoch, self.epochs) / self.epochs

    def class_weights(self, counts: Int64Array, epoch: int) -> Float64Array:
        """The weight of one member of each class at ``epoch`` (absent classes: as count 1)."""
        p = self.exponent(epoch)
        return np.array([math.pow(float(max(int(n), 1)), -p) for n in counts], dtype=np.float64)

    def num_samples(self, counts: Int64Array, epoch: int) -> int | None:
        """``None``: the plan's ``num_samples`` (the population size when null)."""
        return None


@dataclass(frozen=True)
class DynamicBalanceSchedule:
    """catalyst's ``DynamicBalanceClassSampler`` quotas, as weights ``quota_c / n_c``."""

    lam: float = 0.9
    max_d: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.lam < 1.0:
            raise InvalidPlanConfig(
                f"schedule 'dynamic_balance': lambda should be in (0, 1), but got lambda={self.lam}"
            )
        if self.max_d is not None and not self.max_d >= 1.0:
            raise InvalidPlanConfig(
                "schedule 'dynamic_balance': max_d should be at least 1 (no class is cut "
                f"below the smallest one) or null, but got max_d={self.max_d}"
            )

    def canonical(self) -> dict[str, Any]:
        return {"kind": "dynamic_balance", "lambda": self.lam, "max_d": self.max_d}

    def quotas(self, counts: Int64Array, epoch: int) -> list[int]:
        """``quota_c(e)`` of every class (0 for a class absent from the population)."""
        present = [int(n) for n in counts if n > 0]
        if not present:
            return [0] * len(counts)
        n_min = min(present)
        exponent = self.lam**epoch
        cap = math.inf if self.max_d is None else self.max_d
        out = []
        for n in counts:
            if n <= 0:
                out.append(0)
                continue
            d = int(n) / n_min
            out.append(int(min(d**exponent, cap) * n_min))
        return out

    def class_weights(self, counts: Int64Array, epoch: int) -> Float64Array:
        quotas = self.quotas(counts, epoch)
        return np.array(
            [q / int(n) if n > 0 else 0.0 for q, n in zip(quotas, counts, strict=True)],
            dtype=np.float64,
        )

    def num_samples(self, counts: Int64Array, epoch: int) -> int | None:
        """The sum of the quotas: used when the plan's ``num_samples`` is null."""
        return sum(self.quotas(counts, epoch))


Schedule = PowerSchedule | DynamicBalanceSchedule

_FIELDS: Mapping[str, tuple[str, ...]] = {
    "power": ("kind", "start", "end", "epochs"),
    "dynamic_balance": ("kind", "lambda", "max_d"),
}


def schedule_from_json(value: object) -> Schedule | None:
    """Build a schedule from its JSON form (``None`` stays ``None``), validating it."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidPlanConfig(
            f"schedule should be null or an object with a 'kind', but got {value!r:.60}"
        )
    kind = value.get("kind")
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise InvalidPlanConfig(
            f"schedule kind should be one of {', '.join(map(repr, _FIELDS))}, "
            f"but got kind={kind!r:.40}"
        )
    unknown = sorted(str(k) for k in value if k not in _FIELDS[kind])
    if unknown:
        raise InvalidPlanConfig(
            f"schedule {kind!r} has no field {', '.join(map(repr, unknown))}; "
            f"its fields are {', '.join(map(repr, _FIELDS[kind]))}"
        )
    if kind == "power":
        epochs = value.get("epochs", 10)
        if isinstance(epochs, bool) or not isinstance(epochs, int):
            raise InvalidPlanConfig(
                f"schedule 'power': epochs should be an integer, but got {epochs!r:.40}"
            )
        return PowerSchedule(
            start=_number(value.get("start", 0.0), "start", kind),
            end=_number(value.get("end", 1.0), "end", kind),
            epochs=epochs,
        )
    max_d = value.get("max_d")
    return DynamicBalanceSchedule(
        lam=_number(value.get("lambda", 0.9), "lambda", kind),
        max_d=None if max_d is None else _number(max_d, "max_d", kind),
    )
