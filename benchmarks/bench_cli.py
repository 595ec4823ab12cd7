"""The ``sampleplan`` command's start-up: ``--help`` within 0.5 s (issue 12's first hour).

Each figure is the best of several runs of a fresh process, next to the bare
interpreter's start-up measured in the same run (what no command can go below), and the
time to import what the commands use, which ``--help`` must not pay for (NOTE [A fast
--help] in ``sampleplan/cli/__init__.py``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The console script next to this interpreter (``.venv/bin/sampleplan``), else the module.
SCRIPT = Path(sys.executable).with_name("sampleplan")
HELP_LIMIT_SECONDS = 0.5


def best_of(argv: Sequence[str], runs: int) -> float:
    """The fastest wall time of ``runs`` fresh processes running ``argv``."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def command(*args: str) -> list[str]:
    if SCRIPT.exists():
        return [str(SCRIPT), *args]
    return [sys.executable, "-c", "from sampleplan.cli import main; main()", *args]


def rows(quick: bool = False) -> Iterable[dict[str, Any]]:
    runs = 3 if quick else 7
    bare = best_of([sys.executable, "-c", "pass"], runs)
    help_time = best_of(command("--help"), runs)
    version = best_of(command("--version"), runs)
    heavy = best_of(
        [sys.executable, "-c", "import sampleplan.client, sampleplan.service.main"],
        max(1, runs // 2),
    )
    yield {"name": "python -c pass (start-up floor)", "value": bare, "unit": "s"}
    yield {
        "name": "sampleplan --help",
        "value": help_time,
        "unit": "s",
        "limit": HELP_LIMIT_SECONDS,
        "note": f"{help_time / bare:.1f}x the bare interpreter",
    }
    yield {
        "name": "sampleplan --version",
        "value": version,
        "unit": "s",
        "limit": HELP_LIMIT_SECONDS,
    }
    yield {
        "name": "import sampleplan.client, sampleplan.service.main (what --help skips)",
        "value": heavy,
        "unit": "s",
        "note": f"--help is {help_time / heavy:.2f}x of it",
    }


if __name__ == "__main__":
    for row in rows(quick="--quick" in sys.argv):
        print(row)
