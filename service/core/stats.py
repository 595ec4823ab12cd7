"""Statistics of a plan: what each class gets from the draw."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.core.plan import PreparedPlan


@dataclass(frozen=True)
class ClassStats:
    """One row of a plan's class table (classes in canonical order)."""

    code: int
    count: int
    class_weight: float | None
    expected_share: float
    expected_draws: float


def class_table(plan: PreparedPlan) -> list[ClassStats]:
    """Per class: population count, per-sample weight, and its share of the draws.

    ``expected_share`` is the probability that one draw lands in the class (its share of
    the total weight); ``expected_draws`` is that times ``num_samples``, exact for draws
    with replacement.
    """
    counts = plan.class_counts()
    mass = np.bincount(plan.codes, weights=plan.weights, minlength=plan.num_classes)
    share = mass / mass.sum()
    class_weight: list[float | None]
    if plan.config.strategy == "sample_weights":
        class_weight = [None] * plan.num_classes
    else:
        # Every member of a class has the same weight: read it off its first member.
        first = np.full(plan.num_classes, -1, dtype=np.int64)
        order = np.arange(plan.codes.shape[0] - 1, -1, -1)
        first[plan.codes[order]] = order
        class_weight = [float(plan.weights[i]) if i >= 0 else None for i in first]
    return [
        ClassStats(
            code=c,
            count=int(counts[c]),
            class_weight=class_weight[c],
            expected_share=float(share[c]),
            expected_draws=float(share[c] * plan.num_samples),
        )
        for c in range(plan.num_classes)
    ]
