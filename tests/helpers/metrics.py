"""What ``/metrics`` says of some samples, and how much they moved."""

from __future__ import annotations

import re


def sample_values(exposition: str, pattern: str) -> list[float]:
    """The values of the samples of a ``/metrics`` text that ``pattern`` matches (a line's
    pattern whose one group is the value), in the text's order."""
    return [float(value) for value in re.findall(pattern, exposition, re.M)]


def moved(before: str, after: str, pattern: str) -> list[float]:
    """How much each sample ``pattern`` matches moved from one ``/metrics`` text to the
    next (the same samples in both, in the same order)."""
    return [
        b - a
        for a, b in zip(sample_values(before, pattern), sample_values(after, pattern), strict=True)
    ]
