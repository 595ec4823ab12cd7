"""A cooperative deadline for long work: the caller sets it, loops check it.

NOTE [Deadlines]
    The service answers 504 when a request's response has not started in time (NOTE [Why
    the timeout stops at the response start] in ``service/api/limits.py``), but a worker
    thread cannot be interrupted from outside: without more, it would keep a core busy
    (and a run's lock held) for work whose answer is dropped. So the request's deadline
    is a context variable, set by the timeout middleware in the request's context, which
    worker threads inherit (anyio runs them in a copy of it). Work whose length grows
    with its input calls :func:`check_deadline` between bounded steps (a run update's
    rounds and folds, each update of a replay, before a run's transaction commits) and
    stops with :class:`DeadlineExceeded` once the deadline has passed: the thread ends
    within one step, and a run's transaction rolls back. Outside a request (the CLI, the
    client's offline fallback, tests) there is no deadline and the checks cost a
    context-variable read.
    Work shared by several requests (an epoch drawn once for all who wait for it, NOTE
    [Single flight]) runs under a :class:`SharedDeadline`: the latest deadline of the
    requests that joined it. The request that started the work may time out while the
    others still wait: the work goes on for them, and stops only once no request that
    joined it can use its answer. A waiter stops waiting at its own deadline.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sampleplan.core.errors import DeadlineExceeded

__all__ = ["SharedDeadline", "check_deadline", "deadline", "remaining"]


class SharedDeadline:
    """The deadline of work several requests wait for: the latest of theirs.

    :meth:`join` adds the current context's deadline (a request without one makes the
    work unbounded); :meth:`applied` runs the work under it. Joining only moves it later.
    """

    def __init__(self) -> None:
        self.limit = -math.inf  # no one has joined yet
        self._lock = threading.Lock()

    def join(self) -> None:
        """The current context's request waits for the work too."""
        mine = _limit()
        with self._lock:
            self.limit = max(self.limit, mine)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Checks in this context (and threads started from it) use this deadline."""
        token = _DEADLINE.set(self)
        try:
            yield
        finally:
            _DEADLINE.reset(token)


_DEADLINE: ContextVar[float | SharedDeadline] = ContextVar("sampleplan_deadline", default=math.inf)


def _limit() -> float:
    value = _DEADLINE.get()
    return value if isinstance(value, float) else value.limit


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Work in this context (and threads started from it) must end within ``seconds``."""
    token = _DEADLINE.set(min(_limit(), time.monotonic() + seconds))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining() -> float:
    """Seconds left before the current deadline (``inf`` without one)."""
    return _limit() - time.monotonic()


def check_deadline() -> None:
    """Raise :class:`DeadlineExceeded` once the current deadline has passed."""
    limit = _limit()
    if limit != math.inf and time.monotonic() > limit:
        raise DeadlineExceeded(
            "the work ran past its deadline (the request's timeout) and was stopped"
        )
