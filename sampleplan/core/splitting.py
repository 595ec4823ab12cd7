"""Train/validation splits, selected exactly as ``torch.utils.data.random_split`` selects.

``random_split(range(n), lengths, generator=torch.Generator().manual_seed(seed))``
draws ``torch.randperm(n, generator=g)`` and cuts it into consecutive parts. Fractions
are first turned into lengths by flooring and handing the remainder out round-robin
from the first part. We call ``torch.randperm`` with the same generator rather than
re-implementing it, so the selection is torch's own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from sampleplan.core.errors import InvalidSplit

SEED_LIMIT = 2**32


@dataclass(frozen=True)
class Split:
    """Either ``fractions`` (adding up to 1) or ``lengths`` (adding up to n), and a seed.

    ``stratify``: select the parts by NOTE [stratified-v1] (:mod:`sampleplan.core.stratify`)
    instead of ``random_split``; :meth:`training_indices` is ``random_split``'s only.
    """

    seed: int
    fractions: tuple[float, ...] | None = None
    lengths: tuple[int, ...] | None = None
    stratify: bool = False

    def __post_init__(self) -> None:
        if (self.fractions is None) == (self.lengths is None):
            raise InvalidSplit("split needs exactly one of 'fractions' or 'lengths'")
        parts = self.fractions if self.fractions is not None else self.lengths
        assert parts is not None
        if len(parts) < 2:
            raise InvalidSplit(f"split needs at least two parts, got {len(parts)}")
        if not 0 <= self.seed < SEED_LIMIT:
            raise InvalidSplit(f"split seed should be in [0, 2**32), but got seed={self.seed}")

    def part_lengths(self, n: int) -> list[int]:
        """The length of every part for a dataset of ``n`` samples, as ``random_split`` computes."""
        if self.lengths is not None:
            if any(length < 0 for length in self.lengths):
                raise InvalidSplit(f"split lengths must be non-negative, got {list(self.lengths)}")
            if sum(self.lengths) != n:
                raise InvalidSplit(
                    f"split lengths add up to {sum(self.lengths)}, but the dataset has {n} samples"
                )
            lengths = list(self.lengths)
        else:
            assert self.fractions is not None
            fractions = self.fractions
            if any(not math.isfinite(f) or f < 0 or f > 1 for f in fractions):
                raise InvalidSplit(f"split fractions must each be in [0, 1], got {list(fractions)}")
            # The same test random_split applies, in the same float arithmetic: a sum
            # that rounds above 1 (0.1 + 0.2 + 0.7) is refused there too.
            total = sum(fractions)
            if not (math.isclose(total, 1) and total <= 1):
                raise InvalidSplit(
                    f"split fractions must add up to 1 (as random_split checks it), "
                    f"but {list(fractions)} add up to {total!r}"
                )
            lengths = [math.floor(n * f) for f in fractions]
            for i in range(n - sum(lengths)):
                lengths[i % len(lengths)] += 1
        if lengths[0] == 0:
            raise InvalidSplit(
                f"the split leaves the training part (the first part) empty for {n} samples"
            )
        return lengths

    def training_indices(self, n: int) -> npt.NDArray[np.int64]:
        """Dataset indices of the first part, in the order ``Subset`` exposes them."""
        lengths = self.part_lengths(n)
        generator = torch.Generator().manual_seed(self.seed)
        perm = torch.randperm(n, generator=generator)
        return perm[: lengths[0]].numpy().astype(np.int64, copy=False)


def split_from_canonical(canonical: Mapping[str, Any] | None) -> Split | None:
    """The :class:`Split` of a plan's canonical config (its ``"split"`` value), or ``None``."""
    if canonical is None:
        return None
    return Split(
        seed=canonical["seed"],
        fractions=tuple(canonical["fractions"]) if "fractions" in canonical else None,
        lengths=tuple(canonical["lengths"]) if "lengths" in canonical else None,
        stratify=bool(canonical.get("stratify", False)),
    )
