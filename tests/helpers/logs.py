"""The service's JSON log lines as tests read them."""

from __future__ import annotations

import json
from typing import Any


def timeless_lines(stderr: str, marker: str) -> list[dict[str, Any]]:
    """The JSON lines of ``stderr`` whose text holds ``marker`` (a request id, say),
    without ``time`` and ``duration_ms``: what two answers of one request share."""
    lines = [
        json.loads(line) for line in stderr.splitlines() if line.startswith("{") and marker in line
    ]
    for line in lines:
        line.pop("time"), line.pop("duration_ms")
    return lines
