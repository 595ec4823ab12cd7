"""A mixture's sources and how they are mixed, validated: :class:`Mixture`.

NOTE [Mixtures]
    A mixture is one index stream over several sources. Its indices are positions in the
    concatenation of the sources' datasets, as ``torch.utils.data.ConcatDataset`` numbers
    them: element ``j`` of source ``i`` is ``offsets[i] + j`` with
    ``offsets = cumsum([0] + lengths[:-1])``. Which source each position takes from is the
    mixing algorithm's (``mixing.algorithm``, NOTE [Mixing algorithms] in ``drawers.py``);
    which element of it, the source's order (NOTE [Source orders] in ``orders.py``).

    Proportions ``p`` (float64): ``"weights"``: ``w / sum(w)`` (numpy); ``"sizes"``: the
    sources' sizes (a dataset's length, a plan source's population size), normalised;
    ``{"temperature": T}``: ``size ** (1 / T)`` normalised (T = 1 is ``"sizes"``).
    ``hf-interleave`` uses ``"weights"`` as given (they must sum to 1 as numpy's
    ``Generator.choice`` requires). ``unit: "tokens"`` (``mixture-v1``) turns token
    proportions into sample proportions: ``p[i] / mean_length[i]`` normalised, with
    ``mean_length[i] = sum(lengths_i) / n_i`` in float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from sampleplan.core.errors import InvalidPlanConfig
from sampleplan.core.mixtures.orders import SourceOrder, order_from_json, order_to_json

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]

#: Most sources a mixture takes.
MAX_SOURCES = 4096
#: The default window of ``mixture-v1``.
DEFAULT_BLOCK = 1024
#: Most positions a window of ``mixture-v1`` may have.
MAX_BLOCK = 2**20

MixingName = Literal["mixture-v1", "hf-interleave", "megatron-blend"]
MIXING_NAMES: tuple[MixingName, ...] = ("mixture-v1", "hf-interleave", "megatron-blend")
Stopping = Literal["first_exhausted", "all_exhausted"]
Unit = Literal["samples", "tokens"]


@dataclass(frozen=True)
class Temperature:
    """Proportions ``{"temperature": T}``: ``size ** (1 / T)`` normalised."""

    temperature: float


Proportions = Literal["weights", "sizes"] | Temperature


@dataclass(frozen=True)
class Mixing:
    """``mixing``: the algorithm and its options (``None``: not given, the default)."""

    algorithm: MixingName = "mixture-v1"
    proportions: Proportions = "weights"
    stopping: Stopping | None = None
    unit: Unit | None = None
    block: int | None = None

    def __post_init__(self) -> None:
        if self.algorithm not in MIXING_NAMES:
            raise InvalidPlanConfig(
                f"unknown mixing algorithm {self.algorithm!r}; expected one of "
                f"{', '.join(MIXING_NAMES)}"
            )
        if isinstance(self.proportions, Temperature):
            t = self.proportions.temperature
            if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
                raise InvalidPlanConfig(
                    f"temperature should be a finite number > 0, got temperature={t!r}"
                )
        elif self.proportions not in ("weights", "sizes"):
            raise InvalidPlanConfig(
                f'unknown proportions {self.proportions!r}; expected "weights", "sizes" '
                'or {"temperature": <T>}'
            )
        if self.stopping is not None:
            if self.algorithm != "hf-interleave":
                raise InvalidPlanConfig("'stopping' only applies to mixing 'hf-interleave'")
            if self.stopping not in ("first_exhausted", "all_exhausted"):
                raise InvalidPlanConfig(
                    f"unknown stopping {self.stopping!r}; expected first_exhausted or all_exhausted"
                )
        if self.unit is not None:
            if self.algorithm != "mixture-v1":
                raise InvalidPlanConfig("'unit' only applies to mixing 'mixture-v1'")
            if self.unit not in ("samples", "tokens"):
                raise InvalidPlanConfig(f"unknown unit {self.unit!r}; expected samples or tokens")
        if self.block is not None:
            if self.algorithm != "mixture-v1":
                raise InvalidPlanConfig("'block' only applies to mixing 'mixture-v1'")
            if isinstance(self.block, bool) or not isinstance(self.block, int) or self.block < 1:
                raise InvalidPlanConfig(
                    f"block should be an integer >= 1, got block={self.block!r}"
                )
            if self.block > MAX_BLOCK:
                raise InvalidPlanConfig(f"block should be at most {MAX_BLOCK}, got {self.block}")

    @property
    def resolved_stopping(self) -> Stopping:
        return self.stopping or "first_exhausted"

    @property
    def resolved_unit(self) -> Unit:
        return self.unit or "samples"

    @property
    def resolved_block(self) -> int:
        return DEFAULT_BLOCK if self.block is None else self.block

    def canonical(self) -> dict[str, Any]:
        """The JSON form that enters a plan's id: every default of the algorithm filled in."""
        proportions: Any = self.proportions
        if isinstance(proportions, Temperature):
            proportions = {"temperature": float(proportions.temperature)}
        out: dict[str, Any] = {"algorithm": self.algorithm, "proportions": proportions}
        if self.algorithm == "hf-interleave":
            out["stopping"] = self.resolved_stopping
        if self.algorithm == "mixture-v1":
            out["unit"] = self.resolved_unit
            out["block"] = self.resolved_block
        return out


_MIXING_KEYS = {"algorithm", "proportions", "stopping", "unit", "block"}


def mixing_from_json(value: Mapping[str, Any] | None) -> Mixing:
    """``mixing`` from its JSON form (``None``: every default)."""
    if value is None:
        return Mixing()
    unknown = set(value) - _MIXING_KEYS
    if unknown:
        raise InvalidPlanConfig(f"unknown mixing options: {', '.join(sorted(unknown))}")
    proportions: Any = value.get("proportions", "weights")
    if isinstance(proportions, Mapping):
        if set(proportions) != {"temperature"}:
            raise InvalidPlanConfig(
                f'unknown proportions {dict(proportions)!r}; expected {{"temperature": <T>}}'
            )
        proportions = Temperature(proportions["temperature"])
    return Mixing(
        algorithm=value.get("algorithm", "mixture-v1"),
        proportions=proportions,
        stopping=value.get("stopping"),
        unit=value.get("unit"),
        block=value.get("block"),
    )


@dataclass(frozen=True, eq=False)
class MixtureSource:
    """One source: its name, its length, its weight and order, and per-sample token lengths."""

    name: str
    length: int
    weight: float | None = None
    order: SourceOrder = "reshuffled"
    token_lengths: Float64Array | None = field(default=None, repr=False)
    #: What ``"sizes"`` and temperatures count (``None``: ``length``); a plan source's is
    #: its population's size.
    size: int | None = None

    @property
    def resolved_size(self) -> int:
        return self.length if self.size is None else self.size

    @classmethod
    def from_json(
        cls, value: Mapping[str, Any], length: int, token_lengths: Float64Array | None = None
    ) -> MixtureSource:
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidPlanConfig("every source needs a non-empty string 'name'")
        order = order_from_json(value.get("order", "reshuffled"), name)
        return cls(name, length, value.get("weight"), order, token_lengths)

    def canonical(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "order": order_to_json(self.order)}
        if self.weight is not None:
            out["weight"] = float(self.weight)
        return out


@dataclass(frozen=True, eq=False)
class Mixture:
    """Validated sources and mixing; the drawing happens in its drawer (``drawers.py``).

    ``num_samples`` is the epoch length (``None``: the sources' total length; for
    ``hf-interleave`` it must be ``None``: the stopping strategy ends each epoch).
    """

    sources: tuple[MixtureSource, ...]
    mixing: Mixing = Mixing()
    seed: int = 0
    num_samples: int | None = None

    def __post_init__(self) -> None:
        sources = self.sources
        if not sources:
            raise InvalidPlanConfig("'sources' should hold at least one source")
        if len(sources) > MAX_SOURCES:
            raise InvalidPlanConfig(
                f"a mixture takes at most {MAX_SOURCES} sources, got {len(sources)}"
            )
        names = [s.name for s in sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidPlanConfig(f"source names must be unique; repeated: {duplicates}")
        if not 0 <= self.seed < 2**32:
            raise InvalidPlanConfig(f"seed should be in [0, 2**32), but got seed={self.seed}")
        algorithm = self.mixing.algorithm
        if self.num_samples is not None:
            if algorithm == "hf-interleave":
                raise InvalidPlanConfig(
                    "mixing 'hf-interleave' ends each epoch where its stopping strategy says: "
                    "leave num_samples out (the plan reports each epoch's length)"
                )
            if self.num_samples <= 0 or self.num_samples > 2**62:
                raise InvalidPlanConfig(
                    f"num_samples should be in [1, 2**62], but got num_samples={self.num_samples}"
                )
        by_weights = self.mixing.proportions == "weights"
        for s in sources:
            if by_weights and s.weight is None:
                raise InvalidPlanConfig(
                    f"source {s.name!r} has no 'weight' (proportions are \"weights\")"
                )
            if not by_weights and s.weight is not None:
                raise InvalidPlanConfig(
                    f"source {s.name!r} has a 'weight', but proportions come from the sources' "
                    'sizes: leave the weights out or use proportions "weights"'
                )
            if s.weight is not None and (
                isinstance(s.weight, bool)
                or not isinstance(s.weight, (int, float))
                or not math.isfinite(s.weight)
                or s.weight < 0
            ):
                raise InvalidPlanConfig(
                    f"source {s.name!r}: weight should be a finite number >= 0, got {s.weight!r}"
                )
        p = self.proportions  # checks the weights' sum
        empty = [
            s.name for s, pi in zip(sources, p.tolist(), strict=True) if pi > 0 and s.length == 0
        ]
        if empty:
            raise InvalidPlanConfig(f"sources {empty} are empty but would be taken from")
        if self.mixing.resolved_unit == "tokens":
            missing = [s.name for s in sources if s.token_lengths is None]
            if missing:
                raise InvalidPlanConfig(
                    f"unit \"tokens\" needs per-sample token lengths (a 'length_column' at "
                    f"upload) for every source; {missing} have none"
                )
            for s in sources:
                assert s.token_lengths is not None
                if s.token_lengths.shape != (s.length,) or not np.all(
                    np.isfinite(s.token_lengths) & (s.token_lengths >= 0)
                ):
                    raise InvalidPlanConfig(
                        f"source {s.name!r}: token lengths should be one finite number >= 0 "
                        "per sample"
                    )
            self.sample_proportions  # noqa: B018  (checks the token lengths' means)
        if algorithm == "hf-interleave":
            _check_numpy_accepts(self.sample_proportions)
            if self.mixing.resolved_stopping == "all_exhausted" and not np.all(
                self.sample_proportions > 0
            ):
                raise InvalidPlanConfig(
                    "stopping 'all_exhausted' can never exhaust a source of proportion 0 "
                    "(Hugging Face refuses it too)"
                )

    @cached_property
    def lengths(self) -> Int64Array:
        return np.array([s.length for s in self.sources], dtype=np.int64)

    @cached_property
    def offsets(self) -> Int64Array:
        """``ConcatDataset``'s: where each source's elements start."""
        return np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)

    @property
    def size(self) -> int:
        """The length of the concatenation (``ConcatDataset``)."""
        return int(self.lengths.sum())

    @cached_property
    def proportions(self) -> Float64Array:
        """Requested proportions of the sources (before ``unit``); NOTE [Mixtures]."""
        spec = self.mixing.proportions
        if spec == "weights":
            w = np.array([float(s.weight or 0.0) for s in self.sources], dtype=np.float64)
            with np.errstate(over="ignore"):  # an infinite sum is refused just below
                total = float(w.sum())
            if not (math.isfinite(total) and total > 0):
                raise InvalidPlanConfig(
                    "the sources' weights should sum to a finite number > 0 (all zero, or too "
                    "large)"
                )
            if self.mixing.algorithm == "hf-interleave":
                return w  # as given: numpy's choice checks it sums to 1
            return w / total
        sizes = np.array([s.resolved_size for s in self.sources], dtype=np.float64)
        if isinstance(spec, Temperature):
            sizes = sizes ** (1.0 / float(spec.temperature))
        total = float(sizes.sum())
        if not (math.isfinite(total) and total > 0):
            raise InvalidPlanConfig("the sources' sizes should not all be 0")
        return sizes / total

    @cached_property
    def mean_token_lengths(self) -> Float64Array | None:
        if any(s.token_lengths is None for s in self.sources):
            return None
        return np.array(
            [
                float(np.sum(s.token_lengths, dtype=np.float64)) / s.length if s.length else 0.0
                for s in self.sources
                if s.token_lengths is not None
            ],
            dtype=np.float64,
        )

    @cached_property
    def sample_proportions(self) -> Float64Array:
        """What the algorithm draws sources by: ``proportions``, or for ``unit: "tokens"``
        ``p / mean_length`` normalised."""
        p = self.proportions
        if self.mixing.resolved_unit != "tokens":
            return p
        means = self.mean_token_lengths
        assert means is not None
        if np.any((p > 0) & (means <= 0)):
            raise InvalidPlanConfig(
                'unit "tokens": a source taken from has no tokens (mean length 0)'
            )
        q = np.where(p > 0, p / np.where(means > 0, means, 1.0), 0.0)
        return q / float(q.sum())

    @property
    def orders(self) -> tuple[SourceOrder, ...]:
        return tuple(s.order for s in self.sources)

    def default_num_samples(self) -> int:
        """An epoch's length when ``num_samples`` is not given: the concatenation's."""
        return self.size if self.num_samples is None else self.num_samples

    def canonical(self) -> dict[str, Any]:
        """The mixing part of a plan's canonical config (the sources' ids are the caller's)."""
        return {
            "sources": [s.canonical() for s in self.sources],
            "mixing": self.mixing.canonical(),
        }


def _check_numpy_accepts(p: Float64Array) -> None:
    """Refuse probabilities ``numpy.random.Generator.choice`` refuses (as Hugging Face would)."""
    try:
        np.random.default_rng(0).choice(p.shape[0], size=1, p=p)
    except ValueError as exc:
        raise InvalidPlanConfig(
            f"mixing 'hf-interleave' uses the weights as probabilities, as numpy's "
            f"Generator.choice does, and numpy refuses them: {exc}"
        ) from exc


def sources_from_json(
    values: Sequence[Mapping[str, Any]],
    lengths: Sequence[int],
    token_lengths: Sequence[Float64Array | None] | None = None,
) -> tuple[MixtureSource, ...]:
    """Sources from their JSON form and their lengths (and token lengths), in order."""
    tokens = token_lengths or [None] * len(values)
    return tuple(
        MixtureSource.from_json(v, n, t) for v, n, t in zip(values, lengths, tokens, strict=True)
    )
