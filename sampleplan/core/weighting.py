"""Per-sample weights: the seven strategies, all float64 and unnormalised.

``inverse_frequency`` gives every sample exactly ``1.0 / count(its class)`` in float64,
as the classic recipe does, so that streams match ``WeightedRandomSampler`` to the bit.
Normalising (dividing by the total) would change the cumulative sums torch computes and
with them the stream, so no strategy normalises.

NOTE [Weight formulas]
    Every class weight is, bit for bit, its formula written in plain Python floats
    (binary64, each operation rounded to nearest; ``n`` a class's count in the population,
    at least 1; ``P`` the population size):

    - ``inverse_frequency``: ``1.0 / n``, correctly rounded (one IEEE division);
    - ``inverse_sqrt_frequency``: ``1.0 / math.sqrt(n)`` (IEEE square root, then division);
    - ``effective_number``: ``(1.0 - beta) / (1.0 - beta ** n)``; ``beta ** n`` is C's
      ``pow`` (Python's ``float.__pow__``), correctly rounded on glibc, so each of the four
      operations is the exact result rounded once (a test checks this against
      ``fractions.Fraction``);
    - ``repeat_factor``: ``max(1.0, math.sqrt(t / (n / P)))``;
    - ``uniform``: ``1.0``; ``class_weights`` and ``sample_weights``: the given numbers.

    ``weights-v1`` computed ``effective_number``'s ``beta ** n`` with numpy's vectorised
    ``power`` (release 0.1.0 did too), which differs from the correctly rounded power in
    the last bit for some counts (about 5 % of the counts up to 10**5 at beta 0.999), and
    ``1 - beta ** n`` magnifies that: ``n = 7``, beta 0.999 gives 0.1432862859997125
    where the formula gives 0.1432862859997148. A plan's weights are its stream's input, so
    the fix is a new definition, ``weights-v2``, chosen by the plan's ``definitions``
    (NOTE [Choosing a definition] in ``config.py``); every other strategy is the same in
    both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from sampleplan.core.codes import gather
from sampleplan.core.errors import InvalidPlanConfig, InvalidWeights
from sampleplan.core.labels import Labels
from sampleplan.core.labelsets import LabelSets

Strategy = Literal[
    "inverse_frequency",
    "inverse_sqrt_frequency",
    "effective_number",
    "uniform",
    "class_weights",
    "sample_weights",
    "repeat_factor",
]
STRATEGIES: tuple[str, ...] = get_args(Strategy)

Float64Array = npt.NDArray[np.float64]

#: NOTE [Weight formulas]: the first definition (numpy's vectorised ``power`` in
#: ``effective_number``), kept for the plans that have it; every plan gets it unless its
#: ``definitions`` ask for ``weights-v2``.
WEIGHTS_VERSION = "weights-v1"
#: NOTE [Weight formulas]: every strategy bit for bit its formula in Python floats.
WEIGHTS_V2 = "weights-v2"
WEIGHTS_VERSIONS: tuple[str, ...] = (WEIGHTS_VERSION, WEIGHTS_V2)

#: Strategies that give each class a weight, combined over a label set by ``label_reduce``.
CLASS_BASED: frozenset[str] = frozenset(
    {"inverse_frequency", "inverse_sqrt_frequency", "effective_number", "class_weights"}
)

#: LVIS's frequency threshold ``t`` (Gupta et al., 2019), detectron2's ``REPEAT_THRESHOLD``
#: in its LVIS configs: the default of strategy ``repeat_factor``.
DEFAULT_THRESHOLD = 0.001


def class_weight_table(
    strategy: Strategy,
    counts: npt.NDArray[np.int64],
    *,
    beta: float | None = None,
    class_weights: Mapping[int, float] | None = None,
    threshold: float | None = None,
    population_size: int | None = None,
    version: str = WEIGHTS_VERSION,
) -> Float64Array | None:
    """The weight of one sample of each class, or ``None`` for ``sample_weights``.

    ``counts`` are the class counts of the population being drawn from (for label sets:
    how many samples carry each label). A class with no member in it gets the weight its
    formula gives for a count of 1; it is never drawn.

    ``repeat_factor`` is LVIS's category repeat factor as detectron2's
    ``RepeatFactorTrainingSampler.repeat_factors_from_category_frequency`` computes it:
    ``f_c = count_c / population_size`` (the fraction of samples carrying ``c``) and
    ``r_c = max(1, sqrt(threshold / f_c))``, in float64.
    """
    safe = np.maximum(counts, 1).astype(np.float64)
    if strategy == "repeat_factor":
        t = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        size = float(population_size if population_size is not None else counts.sum())
        frequency = safe / size
        return np.maximum(1.0, np.sqrt(t / frequency))
    if strategy == "inverse_frequency":
        return 1.0 / safe
    if strategy == "inverse_sqrt_frequency":
        return 1.0 / np.sqrt(safe)
    if strategy == "effective_number":
        # Cui et al. (2019): w_c = (1 - beta) / (1 - beta ** n_c).
        b = 0.999 if beta is None else float(beta)
        if not 0.0 <= b < 1.0:
            raise InvalidPlanConfig(f"beta should be in [0, 1), but got beta={b}")
        if version == WEIGHTS_VERSION:
            return (1.0 - b) / (1.0 - np.power(b, safe))
        # NOTE [Weight formulas]: Python's float power, once per distinct count.
        distinct, where = np.unique(counts, return_inverse=True)
        table = np.array(
            [(1.0 - b) / (1.0 - b ** max(int(n), 1)) for n in distinct.tolist()],
            dtype=np.float64,
        )
        out: Float64Array = table[where.reshape(-1)]
        return out
    if strategy == "uniform":
        return np.ones(counts.shape[0], dtype=np.float64)
    if strategy == "class_weights":
        table = np.ones(counts.shape[0], dtype=np.float64)
        for code, weight in (class_weights or {}).items():
            table[code] = weight
        return table
    if strategy == "sample_weights":
        return None
    raise InvalidPlanConfig(
        f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}"
    )


def resolve_class_weights(
    labels: Labels | LabelSets, given: Mapping[str, float]
) -> dict[int, float]:
    """Map user-given ``{class name: weight}`` (JSON keys are strings) onto class codes.

    Classes not named keep weight 1.0; a name that is not a class of the dataset is an
    error, since it is almost always a typo.
    """
    if not given:
        raise InvalidPlanConfig("strategy 'class_weights' needs a non-empty 'class_weights' object")
    by_name = {str(name): code for code, name in enumerate(labels.classes)}
    unknown = [name for name in given if str(name) not in by_name]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:5])
        known = ", ".join(repr(str(c)) for c in labels.classes[:10])
        raise InvalidWeights(
            f"class_weights names classes the dataset does not have: {shown}; "
            f"its classes are {known}" + (" ..." if labels.num_classes > 10 else "")
        )
    resolved = {by_name[str(name)]: float(w) for name, w in given.items()}
    check_weights(
        np.fromiter(resolved.values(), dtype=np.float64), what="class_weights", allow_all_zero=True
    )
    return resolved


def check_weights(weights: Float64Array, *, what: str, allow_all_zero: bool = False) -> None:
    """Weights must be finite and non-negative; a draw needs a positive, finite total."""
    if weights.size and not np.isfinite(weights).all():
        bad = int(np.flatnonzero(~np.isfinite(weights))[0])
        raise InvalidWeights(f"{what} must be finite numbers; {what}[{bad}] is {weights[bad]}")
    if weights.size and (weights < 0).any():
        bad = int(np.flatnonzero(weights < 0)[0])
        raise InvalidWeights(f"{what} must be non-negative; {what}[{bad}] is {weights[bad]}")
    if allow_all_zero:
        return
    largest = float(weights.max()) if weights.size else 0.0
    if not largest > 0:
        raise InvalidWeights(
            f"{what} must not be all zero: at least one sample needs a positive weight"
        )
    # torch adds the weights left to right; a running sum can overflow only when
    # n * max does not fit, so only then is the full sequential pass needed.
    if largest * weights.size >= np.finfo(np.float64).max:
        with np.errstate(over="ignore"):  # the overflow is what is being checked
            total = float(np.cumsum(weights)[-1])
        if not np.isfinite(total):
            raise InvalidWeights(f"{what} add up to more than float64 can hold; scale them down")


def sample_weights(
    strategy: Strategy,
    codes: npt.NDArray[np.integer],
    counts: npt.NDArray[np.int64],
    *,
    beta: float | None = None,
    class_weights: Mapping[int, float] | None = None,
    per_sample: Float64Array | None = None,
    threshold: float | None = None,
    version: str = WEIGHTS_VERSION,
) -> Float64Array:
    """A float64 weight per sample of the population, validated for drawing."""
    table = class_weight_table(
        strategy,
        counts,
        beta=beta,
        class_weights=class_weights,
        threshold=threshold,
        population_size=int(codes.shape[0]),
        version=version,
    )
    weights: Float64Array
    if table is None:
        if per_sample is None:
            raise InvalidPlanConfig("strategy 'sample_weights' needs a 'weights' list")
        weights = np.ascontiguousarray(per_sample, dtype=np.float64)
    else:
        weights = gather(table, codes)
        if _class_weights_usable(table[counts > 0], int(codes.shape[0])):
            # Each sample's weight is its class's: checking the K class weights says what
            # checking 10**8 copies of them would (finite, >= 0, not all zero, no overflow).
            return weights
    check_weights(weights, what="weights")  # finds, and names, the first bad sample
    return weights


def _class_weights_usable(present: Float64Array, size: int) -> bool:
    if present.size == 0 or not np.isfinite(present).all() or (present < 0).any():
        return False
    largest = float(present.max())
    return bool(largest > 0 and largest * size < np.finfo(np.float64).max)


def weights_from_list(values: object) -> Float64Array:
    """Per-sample weights from a JSON-like list of numbers (booleans and strings refused)."""
    if not isinstance(values, list | tuple):
        raise InvalidWeights(f"weights must be a list of numbers, got {type(values).__name__}")
    bad = next((i for i, v in enumerate(values) if type(v) not in (int, float)), None)
    if bad is not None:
        value = values[bad]
        raise InvalidWeights(
            f"weights must be numbers; weights[{bad}] is a {type(value).__name__} ({value!r:.40})"
        )
    try:
        return np.array(values, dtype=np.float64)
    except OverflowError as exc:
        raise InvalidWeights("weights must fit in float64") from exc
