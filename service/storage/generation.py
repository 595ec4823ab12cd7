"""A number every process of one SQLite database sees change when a run ends or drops
epochs, read without a query (NOTE [Run pages at the floor] in ``run_catalog.py``).

NOTE [The runs' generation]
    A page of a run's frozen epoch never changes, but whether it may be served does: the
    run may be deleted (a 404 from then on, and a run made again under its id is another
    run), and the retention setting drops its older epochs (a 410). Either can be done
    by another process on the same database: another worker of ``sampleplan serve
    --workers N``, or another replica. Reading the run from the database on every page
    is how a page learns of it, and it is most of a cached page's cost.

    :class:`RunGeneration` counts such changes for every process using one SQLite file:
    two unsigned 64-bit counters in a file beside the database (``<database>-runs``),
    mapped into memory, so that reading them is a load from memory. A transaction that
    deletes a run or drops epochs advances the first, *begun*, before it commits, and the
    second, *ended*, once it has ended (committed or not). The generation is *begun*
    while the two are equal, and there is none while a change is under way
    (:meth:`RunGeneration.current` is then ``None``). A reader that reads the generation,
    then the run from the database, may serve the run's pages from memory for as long as
    the generation is still the one it read: a deletion committed after that read had
    advanced *begun* before it could be seen. A process that dies between a change's two
    advances leaves *begun* ahead of *ended* for good: no read is recorded any more, and
    every run page reads the run, which is slower and still right. Advances take the
    file's lock (``flock``) on a descriptor kept open, so that two processes' increments
    never overwrite one another; they are rare (a deletion; a drop of epochs, once per
    epoch at most).

    Every process of the file must keep it: one that cannot make or map it fails at
    start-up, since its deletions would not advance the counter the others trust, and a
    release before this one must not share the file. The file must not be removed while
    processes use it, and ``flock`` must lock where it lies (not every FUSE mount does).
    An in-memory SQLite database has no other process: its counters live in memory. A
    PostgreSQL database's writers may be on other machines, which share no memory with
    this one: it has no generation, and every page of a run reads the run.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["RunGeneration", "run_generation_for"]

#: The counters' width in bytes: two unsigned 64-bit integers in the machine's order,
#: *begun* then *ended*.
_WIDTH = 16


class RunGeneration:
    """The runs' generation of one database; see NOTE [The runs' generation].

    ``path`` is the file shared with the other processes of the database, or ``None`` for
    counters of this process alone (an in-memory database)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None
        if path is None:
            self._view = memoryview(bytearray(_WIDTH)).cast("Q")
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        # Closed when the generation is collected (the map keeps a descriptor of its own).
        weakref.finalize(self, os.close, fd)
        self._fd = fd
        with self._flocked():
            if os.fstat(fd).st_size < _WIDTH:
                os.ftruncate(fd, _WIDTH)  # zeros: generation 0, no change under way
            self._view = memoryview(mmap.mmap(fd, _WIDTH)).cast("Q")

    def current(self) -> int | None:
        """The generation now, or ``None`` while a change is under way (aligned 8-byte
        loads from the shared memory, *ended* read after *begun*)."""
        view = self._view
        begun = view[0]
        return begun if begun == view[1] else None

    def begin(self) -> None:
        """Before a change commits: *begun* advances."""
        self._advance(0)

    def end(self) -> None:
        """Once a change has ended, committed or not: *ended* advances."""
        self._advance(1)

    def _advance(self, which: int) -> None:
        with self._lock, self._flocked():
            self._view[which] += 1

    @contextmanager
    def _flocked(self) -> Iterator[None]:
        """The file's lock, taken and let go by name on the kept descriptor (a map made
        of it holds a copy of it, which would keep a lock merely closed)."""
        fd = self._fd
        if fd is None:
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


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
    counter = path.with_name(path.name + "-runs")
    try:
        return RunGeneration(counter)
    except OSError as error:
        raise OSError(
            error.errno,
            f"the runs' generation of {path} cannot be kept in {counter} ({error.strerror}): "
            "every process of a SQLite database keeps it (NOTE [The runs' generation])",
        ) from error
