"""Structured logs: one JSON object per line on stderr, each carrying its request id.

Plain text lines instead when stderr is a terminal (``SAMPLEPLAN_LOG_FORMAT=auto``, the
default) or when asked for (``text``); ``json`` forces JSON.

The request id lives in a context variable set by the HTTP layer for the length of a
request; worker threads see it too (anyio runs them in a copy of the caller's context),
so any line logged while serving a request names that request.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import math
import os
import sys
import weakref
from asyncio import _get_running_loop
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from datetime import datetime, timezone
from threading import get_ident
from typing import Any, Literal, TextIO

import orjson

LogFormat = Literal["auto", "json", "text"]

#: The id of the request being served, or ``None`` outside requests.
request_id_var: ContextVar[str | None] = ContextVar("sampleplan_request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is
# written out as a field of its own.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colours
}


#: A time's end, by its milliseconds.
_MILLISECONDS = tuple(f".{milliseconds:03d}+00:00" for milliseconds in range(1000))


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "request_id", ...extra fields}`` per line."""

    # The text of the second the last line fell in: isoformat() is most of a time's cost,
    # and lines come many to a second (an access line per request).
    # (one attribute: threads sharing the formatter read a second and its text together)
    _last_second: tuple[int | None, str] = (None, "")

    def time_text(self, created: float) -> str:
        """A line's ``time`` of a record made at ``created``: ``isoformat(timespec=
        "milliseconds")`` of it in UTC. (The access log calls it for every line.)"""
        # Split as datetime.fromtimestamp splits a time (math.modf, the microseconds
        # rounded half to even), so that the second and the milliseconds are its own.
        fraction, whole = math.modf(created)
        micro = round(fraction * 1e6)
        if micro >= 1_000_000:
            whole += 1.0
            micro -= 1_000_000
        elif micro < 0:
            whole -= 1.0
            micro += 1_000_000
        second = int(whole)
        known, text = self._last_second
        if second != known:
            text = datetime.fromtimestamp(second, timezone.utc).isoformat()[:-6]  # no "+00:00"
            self._last_second = (second, text)
        return text + _MILLISECONDS[micro // 1000]

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        extras = (
            (key, value) for key, value in record.__dict__.items() if key not in _RECORD_ATTRIBUTES
        )
        entry = self._entry(
            record.created, record.levelname, record.name, record.getMessage(), request_id, extras
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return self.dumps(entry)

    def _entry(
        self,
        created: float,
        levelname: str,
        name: str,
        message: str,
        request_id: str | None,
        extras: Iterable[tuple[str, Any]],
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "time": self.time_text(created),
            "level": levelname.lower(),
            "logger": name,
            "message": message,
        }
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in extras:
            if key not in entry:
                entry[key] = value
        return entry

    @staticmethod
    def dumps(entry: dict[str, Any]) -> str:
        """A line of its fields, in order: the access log writes its lines with it, its
        fields in the order :meth:`format` writes an access record's (NOTE [Access lines])."""
        try:
            # orjson: a third of json.dumps' time, on a line written for every request.
            return orjson.dumps(entry, default=str).decode("utf-8")
        except TypeError:  # what orjson refuses (an int beyond 64 bits): the slow way
            return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Plain lines for a terminal, with the request id when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        return f"{line} [request_id={request_id}]" if request_id else line


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time of each record (tests swap it)."""

    def __init__(self) -> None:
        super().__init__()
        #: Each event loop's lines still to write (NOTE [Access lines written by the round]).
        self._batches: dict[asyncio.AbstractEventLoop, list[_Line]] = {}
        #: Each thread's loop with a batch, and the batch; see
        #: NOTE [The round's loop, known without a system call].
        self._threads: dict[int, tuple[asyncio.AbstractEventLoop, list[_Line]]] = {}
        _HANDLERS.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        # Called under the handler's lock, so the swap cannot race another record.
        self.stream = sys.stderr
        super().emit(record)

    def emit_made(
        self,
        make: Callable[..., str],
        arguments: tuple[Any, ...],
        record: Callable[..., logging.LogRecord],
    ) -> None:
        """Write the line ``make(*arguments)`` as :meth:`emit` writes a record's: to the
        present ``sys.stderr``, flushed, under the lock; a failure is handled as ``emit``
        handles it, with the record ``record(*arguments)`` (made only then).

        On an event loop's thread the line is made and written at the end of the loop's
        present round, with the other lines of the round (NOTE [Access lines written by
        the round])."""
        thread = get_ident()
        known = self._threads.get(thread)
        if known is not None and getattr(known[0], "_thread_id", None) == thread:
            # NOTE [The round's loop, known without a system call]
            known[1].append((make, arguments, record))
            return
        loop = _get_running_loop()
        if loop is None:
            self._write(((make, arguments, record),))
            return
        batches = self._batches
        batch = batches.get(loop)
        if batch is None:
            batch = batches[loop] = []
            loop.call_soon(self._write_batch, loop)
        self._threads[thread] = (loop, batch)
        batch.append((make, arguments, record))

    def _write_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._batches.pop(loop, None)
        threads = self._threads
        for thread in [thread for thread, (known, _) in threads.items() if known is loop]:
            del threads[thread]
        if batch:
            self._write(batch)

    def forget_threads(self) -> None:
        """Forget which thread's loop holds which batch (in a forked child, whose loops
        are not its parent's; NOTE [The round's loop, known without a system call])."""
        self._threads.clear()

    def flush_batches(self) -> None:
        """Write every loop's batch now (at exit: a loop that stopped before its round
        ended leaves one)."""
        for loop in list(self._batches):
            self._write_batch(loop)

    def _write(self, lines: Sequence[_Line]) -> None:
        terminator = self.terminator
        with self.lock or contextlib.nullcontext():
            stream = self.stream = sys.stderr
            try:
                stream.write(
                    "".join([make(*arguments) + terminator for make, arguments, _ in lines])
                )
                # What self.flush() does, but for taking the lock it holds again.
                if stream and hasattr(stream, "flush"):
                    stream.flush()
            except RecursionError:
                raise
            except Exception:
                for _, arguments, record in lines:
                    self.handleError(record(*arguments))


#: A line to write: what makes it, of what, and its record should writing fail.
_Line = tuple[Callable[..., str], tuple[Any, ...], Callable[..., logging.LogRecord]]


#: Every StderrHandler, for the batches left at exit.
_HANDLERS: weakref.WeakSet[StderrHandler] = weakref.WeakSet()


@atexit.register
def _write_batches_left() -> None:
    for handler in list(_HANDLERS):
        handler.flush_batches()


def _forget_threads_in_child() -> None:
    for handler in list(_HANDLERS):
        handler.forget_threads()


os.register_at_fork(after_in_child=_forget_threads_in_child)


# NOTE [Access lines written by the round]
#     Written one by one, an access line was a write to stderr per request (stderr is
#     line buffered), a third of a page's time at the floor. On an event loop's thread,
#     where every access line is written (the floor's and the stack's), the lines join a
#     batch of that loop, written in one write by a callback the first line schedules
#     with ``call_soon``: it runs once the callbacks ready in the same round of the loop
#     have run, before the loop waits for its sockets again. Under load a round answers
#     many requests, whose lines go out together; alone, a request's line goes out as
#     soon as its response has been sent (its task's own completion is scheduled after
#     the batch's callback). Lines keep their order and their times (taken when the
#     request ends). A line is also made there (:meth:`StderrHandler.emit_made` is
#     given what makes it, and of what): made one after another, the round's lines
#     cost less than made each between a request's other steps. Logs of other threads
#     are written at once, as before; so are all lines when nothing runs on an event
#     loop. A batch left by a loop that stopped mid-round is written at exit.


# NOTE [The round's loop, known without a system call]
#     Which loop runs on this thread (``asyncio._get_running_loop``) costs a system call
#     on Python 3.11: the loop is checked against the process id (``getpid``), for a
#     child forked while its parent's loop ran. Once per access line, that was about a
#     sixth of a line's cost in the server. A batch is known by its thread too, with its
#     loop: a later line of the same thread joins it when that loop is running on this
#     thread now (asyncio's loops record their thread, ``_thread_id``, while they run),
#     which it is when the line comes from a request it serves. A thread runs one loop at
#     a time, so the line is of that loop's round, and the batch's callback, which runs
#     on that thread, cannot run meanwhile. Otherwise (a loop without ``_thread_id``,
#     such as uvloop's; a loop stopped, or run by another thread since) the line asks
#     for the running loop as before. A forked child forgets what its parent knew
#     (``os.register_at_fork``): its copy of a loop that was running in the parent still
#     records the thread, which is the child's thread too.


# NOTE [Access lines]
#     An access line per request went through the whole of logging: a LogRecord (its
#     caller found by walking the stack, its process and thread looked up), the
#     loggers' and handlers' filters, the formatter. :func:`sole_json_handler` tells when
#     the access logger's records reach one handler only, the service's own JSON
#     ``StderrHandler``, with no filter on the way (how ``configure_logging`` leaves
#     it): then the access log hands that handler the line its formatter writes of such
#     a record, the same text: the fields in the order ``format`` writes them
#     (:meth:`JsonFormatter.dumps`), the time as ``format`` writes it
#     (:meth:`JsonFormatter.time_text`). Any other configuration (another handler, a
#     filter, a test's capture, propagation) gets records as before.
#
#     What was left of a line's cost went, besides the JSON, to ``datetime`` (a time
#     made and its fields read for every line, only to learn that the second is the
#     last line's: the second is now found with ``math.modf`` and rounded as datetime
#     rounds it, the datetime made once a second), the generic entry (a dict of extras
#     made, walked and merged, now one literal), a closure making the fallback record
#     (now made only on failure) and the handler's lock taken twice (once now).


def sole_json_handler(logger: logging.Logger, level: int) -> StderrHandler | None:
    """The handler a record of ``logger`` at ``level`` reaches, when it reaches only one,
    the service's JSON :class:`StderrHandler`, with no filter on the way; else ``None``."""
    parent = logger.parent
    if (
        logger.handlers
        or logger.filters
        or not logger.propagate
        or parent is None
        or parent.filters
        or parent.propagate
        or len(parent.handlers) != 1
    ):
        return None
    handler = parent.handlers[0]
    if (
        type(handler) is not StderrHandler
        or type(handler.formatter) is not JsonFormatter
        or handler.filters
        or level < handler.level
    ):
        return None
    return handler


_FORMATTERS: dict[str, str] = {
    "json": "sampleplan.service.logs.JsonFormatter",
    "text": "sampleplan.service.logs.TextFormatter",
}


def resolve_format(log_format: LogFormat) -> Literal["json", "text"]:
    """``auto``: plain text for a person at a terminal, JSON for machines everywhere else."""
    if log_format != "auto":
        return log_format
    try:
        return "text" if sys.stderr.isatty() else "json"
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return "json"


def formatter_for(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if resolve_format(log_format) == "json" else TextFormatter()


def configure_logging(log_format: LogFormat, level: str) -> None:
    """Send the ``sampleplan`` loggers to stderr in ``log_format``; safe to call again."""
    logger = logging.getLogger("sampleplan")
    for handler in list(logger.handlers):
        if isinstance(handler, StderrHandler):
            logger.removeHandler(handler)
    handler = StderrHandler()
    handler.setFormatter(formatter_for(log_format))
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    # Our own handler writes every line once; the root logger would write it again.
    logger.propagate = False


def uvicorn_log_config(log_format: LogFormat, level: str) -> dict[str, Any]:
    """A ``logging.config`` dict for uvicorn's own loggers, in the service's format.

    uvicorn's access log is off (``sampleplan serve`` passes ``access_log=False``): the
    service writes its own access lines, with route, status, duration and request id.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"service": {"()": _FORMATTERS[resolve_format(log_format)]}},
        "handlers": {
            "stderr": {"()": "sampleplan.service.logs.StderrHandler", "formatter": "service"}
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
        },
    }
