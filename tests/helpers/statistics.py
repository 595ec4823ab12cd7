"""Statistical limits for the distribution tests."""

from __future__ import annotations

import math


def chi_square_limit(dof: int, z: float = 5.0) -> float:
    """Wilson-Hilferty upper quantile of chi-square (z = 5: a 3e-7 false-alarm rate)."""
    return dof * (1.0 - 2.0 / (9.0 * dof) + z * math.sqrt(2.0 / (9.0 * dof))) ** 3
