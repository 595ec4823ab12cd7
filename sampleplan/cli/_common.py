"""What the ``sampleplan`` commands share: the choices, the error, text formatting."""

from __future__ import annotations

import argparse

#: Where ``--url`` points when neither it nor ``SAMPLEPLAN_URL`` is given (``report`` only).
DEFAULT_URL = "http://127.0.0.1:8000"

#: Manifest formats by file extension; anything else needs ``--format``.
FORMATS_BY_SUFFIX = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".npy": "npy",
    ".npz": "npz",
    ".txt": "paths",
    ".lst": "paths",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}
FORMATS = ("csv", "jsonl", "npy", "npz", "paths", "parquet", "arrow", "folder")

#: sampleplan.core.weighting.STRATEGIES but sample_weights, and the names of
#: sampleplan.core.algorithms.ALGORITHMS (NOTE [A fast --help]).
STRATEGY_CHOICES = (
    "inverse_frequency",
    "inverse_sqrt_frequency",
    "effective_number",
    "uniform",
    "class_weights",
    "repeat_factor",
)
ALGORITHM_CHOICES = ("torch", "hierarchical")
#: sampleplan.core.mixtures.spec's MIXING_NAMES, stoppings and units (NOTE [A fast --help]).
MIXING_CHOICES = ("mixture-v1", "hf-interleave", "megatron-blend")
STOPPING_CHOICES = ("first_exhausted", "all_exhausted")
UNIT_CHOICES = ("samples", "tokens")
#: sampleplan.core.labelsets.LABEL_REDUCES (NOTE [A fast --help]).
LABEL_REDUCE_CHOICES = ("sum", "max", "mean")

#: Repeats per drawn sample above which the table flags a class (as the report does).
REPEAT_WARNING = 3.0

Subparsers = argparse._SubParsersAction  # the type argparse gives add_subparsers' result


class CommandError(Exception):
    """A problem to report in one line and exit with status 1."""


def weight_text(value: float | None, strategy: str) -> str:
    if value is None:
        return "per sample" if strategy == "sample_weights" else "-"
    return f"{value:.6g}"


def percent_text(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def number_text(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"
