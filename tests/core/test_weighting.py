"""Every strategy's weights against its formula in plain Python floats and in fractions.

NOTE [Weight formulas] in ``sampleplan/core/weighting.py`` states each formula; here it
is written again in Python floats (``math`` and ``**``) and, where the rounding is
claimed, computed exactly with ``fractions.Fraction`` and rounded once.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from sampleplan.core.config import PlanConfig
from sampleplan.core.labels import labels_from_list
from sampleplan.core.labelsets import label_sets_from_list
from sampleplan.core.prepared import prepare_plan
from sampleplan.core.weighting import (
    STRATEGIES,
    WEIGHTS_V2,
    WEIGHTS_VERSION,
    class_weight_table,
)

#: Many counts: every one up to 3000, then a spread up to 10**7.
COUNTS = np.concatenate(
    [np.arange(1, 3001), np.unique(np.geomspace(3001, 10**7, 400).astype(np.int64))]
).astype(np.int64)
BETAS = (0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 0.999999)


def python_formula(strategy: str, n: int, size: int, *, beta: float, t: float) -> float:
    if strategy == "inverse_frequency":
        return 1.0 / n
    if strategy == "inverse_sqrt_frequency":
        return 1.0 / math.sqrt(n)
    if strategy == "effective_number":
        return (1.0 - beta) / (1.0 - beta**n)
    if strategy == "repeat_factor":
        return max(1.0, math.sqrt(t / (n / size)))
    assert strategy in ("uniform", "class_weights")
    return 1.0


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != "sample_weights"])
def test_every_strategy_is_its_python_formula_bit_for_bit(strategy: str) -> None:
    size = int(COUNTS.sum())
    for beta in BETAS if strategy == "effective_number" else (0.999,):
        table = class_weight_table(
            strategy,  # type: ignore[arg-type]
            COUNTS,
            beta=beta if strategy == "effective_number" else None,
            threshold=0.001 if strategy == "repeat_factor" else None,
            population_size=size,
            version=WEIGHTS_V2,
        )
        assert table is not None
        expected = [python_formula(strategy, n, size, beta=beta, t=0.001) for n in COUNTS.tolist()]
        assert table.tolist() == expected, (strategy, beta)


def _round(x: Fraction) -> float:
    return float(x)  # Fraction -> float rounds to nearest, ties to even: correctly rounded


def test_the_roundings_claimed_hold_exactly() -> None:
    small = COUNTS[COUNTS <= 3000].tolist()
    inverse = class_weight_table("inverse_frequency", COUNTS, version=WEIGHTS_V2)
    assert inverse is not None
    assert inverse.tolist() == [_round(Fraction(1, n)) for n in COUNTS.tolist()]
    sqrt = class_weight_table("inverse_sqrt_frequency", COUNTS, version=WEIGHTS_V2)
    assert sqrt is not None
    for n, w in zip(COUNTS.tolist(), sqrt.tolist(), strict=True):
        r = math.sqrt(n)
        # Correctly rounded: n lies between the squares of the midpoints to r's neighbours.
        low = (Fraction(r) + Fraction(math.nextafter(r, 0))) / 2
        high = (Fraction(r) + Fraction(math.nextafter(r, math.inf))) / 2
        assert low * low <= n <= high * high
        root = Fraction(r)
        assert w == _round(1 / root)  # the division of the rounded root, rounded once
    for beta in (0.5, 0.9, 0.99, 0.999):
        b = Fraction(beta)
        table = class_weight_table("effective_number", COUNTS, beta=beta, version=WEIGHTS_V2)
        assert table is not None
        for n, w in zip(small[:600], table.tolist()[:600], strict=True):
            power = _round(b**n)  # C pow, correctly rounded: each operation rounded once
            assert w == _round(Fraction(_round(1 - b)) / Fraction(_round(1 - Fraction(power))))


def test_the_issues_example_and_weights_v1_kept() -> None:
    n7 = np.array([7], dtype=np.int64)
    v2 = class_weight_table("effective_number", n7, beta=0.999, version=WEIGHTS_V2)
    v1 = class_weight_table("effective_number", n7, beta=0.999, version=WEIGHTS_VERSION)
    assert v2 is not None and v1 is not None
    assert v2[0] == (1.0 - 0.999) / (1.0 - 0.999**7)
    # numpy's vectorised power, which weights-v1 (and release 0.1.0) used, is kept for the
    # plans that have it; where it differs from Python's, v2 is the Python formula. Where
    # they differ depends on the CPU: numpy picks its power's SIMD code by the machine's
    # instruction sets (with AVX-512 the last bits of some counts' powers differ from C's
    # pow; with AVX2 alone, as on some machines, none did for these counts).
    differs = expected = 0
    for beta in (0.99, 0.999):
        old = class_weight_table("effective_number", COUNTS, beta=beta)
        new = class_weight_table("effective_number", COUNTS, beta=beta, version=WEIGHTS_V2)
        assert old is not None and new is not None
        numpy_formula = (1.0 - beta) / (1.0 - np.power(beta, COUNTS.astype(np.float64)))
        python_formula = [(1.0 - beta) / (1.0 - beta ** float(n)) for n in COUNTS.tolist()]
        assert old.tolist() == numpy_formula.tolist()
        assert new.tolist() == python_formula
        differs += int((old != new).sum())
        expected += sum(a != b for a, b in zip(numpy_formula.tolist(), python_formula, strict=True))
    assert differs == expected  # the last-bit differences the definitions tell apart


def test_a_plan_draws_with_the_weights_its_definitions_name() -> None:
    labels = labels_from_list([0] * 7 + [1] * 5000 + [2] * 3)
    for definitions, version in ((None, WEIGHTS_VERSION), ({"weights": WEIGHTS_V2}, WEIGHTS_V2)):
        plan = prepare_plan(
            labels, PlanConfig(strategy="effective_number", definitions=definitions)
        )
        table = class_weight_table(
            "effective_number", np.array([7, 5000, 3]), beta=0.999, version=version
        )
        assert table is not None
        assert plan.weights.tolist() == [table[c] for c in labels.codes.tolist()]


def test_label_sets_take_the_formula_per_label_too() -> None:
    sets = [[0, 1], [1], [2], [0], [1, 2], [1]] * 7 + [[0]] * 3
    labels = label_sets_from_list(sets)
    counts = {c: sum(c in s for s in sets) for c in (0, 1, 2)}
    assert counts == {0: 17, 1: 28, 2: 14}
    for beta in (0.99, 0.999):
        plan = prepare_plan(
            labels,
            PlanConfig(strategy="effective_number", beta=beta, definitions={"weights": WEIGHTS_V2}),
        )
        per_label = {c: (1.0 - beta) / (1.0 - beta**n) for c, n in counts.items()}
        # label_reduce sum, left to right over the sample's labels in class order.
        expected = [sum(per_label[c] for c in sorted(s)) for s in sets]
        assert plan.weights.tolist() == expected
