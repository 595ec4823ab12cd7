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
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sampleplan.core.errors import DeadlineExceeded

__all__ = ["check_deadline", "deadline", "remaining"]

_DEADLINE: ContextVar[float] = ContextVar("sampleplan_deadline", default=math.inf)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Work in this context (and threads started from it) must end within ``seconds``."""
    token = _DEADLINE.set(min(_DEADLINE.get(), time.monotonic() + seconds))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining() -> float:
    """Seconds left before the current deadline (``inf`` without one)."""
    return _DEADLINE.get() - time.monotonic()


def check_deadline() -> None:
    """Raise :class:`DeadlineExceeded` once the current deadline has passed."""
    limit = _DEADLINE.get()
    if limit != math.inf and time.monotonic() > limit:
        raise DeadlineExceeded(
            "the work ran past its deadline (the request's timeout) and was stopped"
        )
