"""A number every process of one SQLite database sees change when a run ends or drops
epochs, read without a query (NOTE [Run pages at the floor] in ``run_catalog.py``).

NOTE [The runs' generation]
    A page of a run's frozen epoch never changes, but whether it may be served does: the
    run may be deleted (a 404 from then on, and a run made again under its id is another
    run), and the retention setting drops its older epochs (a 410). Either can be done
    by another process on the same database: another worker of ``sampleplan serve
    --workers N``, or another replica. Reading the run from the database on every page
    is how a page learns of it, and it is most of a cached page's cost.

    :class:`RunGeneration` is a counter of such changes, shared by every process using
    one SQLite file: eight bytes in a file beside the database (``<database>-runs``),
    mapped into memory, so that reading it is a load from memory. The store advances it
    twice around every transaction that deletes a run or drops epochs: once before the
    transaction commits and once after. A reader that reads the counter, then the run
    from the database, may serve the run's pages from memory for as long as the counter
    still holds the value it read first: a deletion committed after that read advanced
    the counter before its transaction could be seen, and again once it was, so no page
    is served from memory after a deletion (or a drop) took effect. Advances take the
    file's lock (``flock``), so that two processes' increments never overwrite one
    another; they are rare (a deletion, a drop of epochs once per epoch at most).

    An in-memory SQLite database has no other process: its counter lives in memory. A
    PostgreSQL database's writers may be on other machines, which share no memory with
    this one: it has no generation, and every page of a run reads the run.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["RunGeneration", "run_generation_for"]

#: The counter's width in bytes: an unsigned 64-bit integer in the machine's order.
_WIDTH = 8


class RunGeneration:
    """The runs' generation of one database; see NOTE [The runs' generation].

    ``path`` is the file shared with the other processes of the database, or ``None`` for
    a counter of this process alone (an in-memory database)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._map: mmap.mmap | None = None
        if path is None:
            self._view = memoryview(bytearray(_WIDTH)).cast("Q")
            return
        with _flocked(path) as fd:
            if os.fstat(fd).st_size < _WIDTH:
                os.ftruncate(fd, _WIDTH)  # zeros: generation 0
            # The map keeps a descriptor of its own, closed with it.
            self._map = mmap.mmap(fd, _WIDTH)
        self._view = memoryview(self._map).cast("Q")

    def current(self) -> int:
        """The generation now (an aligned 8-byte load from the shared memory)."""
        return int(self._view[0])

    def advance(self) -> None:
        """Count one change, under the file's lock (no other process's count is lost)."""
        with self._lock:
            if self.path is None:
                self._view[0] += 1
                return
            with _flocked(self.path):
                self._view[0] += 1

    def close(self) -> None:
        if self._map is None:
            return
        self._view.release()
        self._map.close()
        self._map = None


@contextmanager
def _flocked(path: Path) -> Iterator[int]:
    """A descriptor of ``path`` (made if missing) holding its lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield fd
        finally:
            # Let go by name: a map made of the descriptor holds a copy of it, and the
            # lock would last as long as that copy.
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def run_generation_for(engine: Engine) -> RunGeneration | None:
    """The runs' generation of ``engine``'s database: shared through a file beside a
    SQLite file, this process's own for an in-memory one, ``None`` for PostgreSQL (and
    for a SQLite URI filename)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:":
        return RunGeneration(None)
    if database.startswith("file:"):
        return None  # a URI filename: whose file it names is SQLite's to say
    path = Path(database).expanduser().resolve()
    return RunGeneration(path.with_name(path.name + "-runs"))
