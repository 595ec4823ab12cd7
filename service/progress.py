"""Progress on stderr for the ``sampleplan`` command's long steps (reading, parsing, uploading).

A stage is one line, rewritten in place a few times a second by a ticker thread: its name,
bytes done of the total with a bar when the total is known, and the seconds spent, so a
multi-million-label file never leaves the terminal silent. Nothing is written unless
enabled (by default: when stderr is a terminal), so pipes, logs and tests stay clean.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["Progress", "Stage"]

_BAR_WIDTH = 24


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


class Stage:
    """One step in progress: ``advance(n)`` as bytes are done (when the total is known)."""

    def __init__(self, name: str, total: int | None) -> None:
        self.name = name
        self.total = total
        self.done = 0
        self.started = time.monotonic()

    def advance(self, n: int) -> None:
        self.done += n

    def line(self, *, final: bool = False) -> str:
        elapsed = time.monotonic() - self.started
        parts = [self.name]
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = round(fraction * _BAR_WIDTH)
            parts.append(f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {100 * fraction:3.0f}%")
            parts.append(f"{_size(self.done)}/{_size(self.total)}")
        parts.append(f"{elapsed:.1f} s" + (" done" if final else ""))
        return "  ".join(parts)


class Progress:
    """Writes stages to ``stream`` (stderr) when ``enabled``; ``None`` means "if a terminal"."""

    def __init__(
        self, *, enabled: bool | None = None, stream: TextIO | None = None, interval: float = 0.2
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            try:
                enabled = self.stream.isatty()
            except (AttributeError, ValueError):
                enabled = False
        self.enabled = enabled
        self.interval = interval

    @contextmanager
    def stage(self, name: str, *, total: int | None = None) -> Iterator[Stage]:
        """Show ``name`` (and a bar when ``total`` bytes are known) until the block ends."""
        stage = Stage(name, total)
        if not self.enabled:
            yield stage
            return
        stop = threading.Event()
        width = [0]

        def show(text: str, end: str = "") -> None:
            # \r and padding rewrite the line in place, however long the last one was.
            self.stream.write("\r" + text.ljust(width[0]) + end)
            self.stream.flush()
            width[0] = len(text)

        def tick() -> None:
            while not stop.wait(self.interval):
                show(stage.line())

        show(stage.line())
        ticker = threading.Thread(target=tick, name="sampleplan-progress", daemon=True)
        ticker.start()
        try:
            yield stage
        finally:
            stop.set()
            ticker.join()
            show(stage.line(final=True), end="\n")
