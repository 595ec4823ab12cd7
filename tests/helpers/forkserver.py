"""One fork server per test process, for the processes tests start by the dozen.

A process started fresh (``python ...`` or multiprocessing's ``spawn``) imports torch and
the service again: seconds of CPU each, on a machine whose two cores the test workers
share. The fork server (multiprocessing's ``forkserver``, started on first use) imports
them once; each process is then forked from it: a fresh child of a single-threaded
process that has opened nothing (no database, no port, no process group, none of the
test's threads or servers). :func:`run_forked` gives the child the test's environment
and working directory as they are at the call, as a spawned process would have them.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.forkserver
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The repository's root (on the fork server's ``PYTHONPATH``, whatever the directory).
ROOT = Path(__file__).resolve().parents[2]

#: What the fork server imports before it forks anything (a module missing is skipped).
PRELOAD = [
    "torch",
    "torch.distributed",
    "torch.utils.data",
    "sampleplan.client",
    "sampleplan.cli",
    "sampleplan.service.main",
    "tests.helpers.ranks.batch_rank",
    "tests.helpers.ranks.distributed_rank",
    "tests.helpers.ranks.distributed_run_rank",
    "tests.helpers.ranks.elastic_rank",
    "tests.helpers.ranks.mixture_rank",
]


def ensure_running() -> None:
    """Start the fork server once (later calls return at once)."""
    multiprocessing.set_forkserver_preload(PRELOAD)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *([saved] if saved else [])])
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


def in_environment(environ: dict[str, str], fn: Callable[..., Any], *args: Any) -> None:
    """``fn(*args)`` with ``environ`` as the process's whole environment."""
    os.environ.clear()
    os.environ.update(environ)
    fn(*args)


def _with_output(log_path: str, fn: Callable[..., Any], *args: Any) -> None:
    """``fn(*args)`` with standard output and error appended to ``log_path``."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    fn(*args)


def run_forked(
    fn: Callable[..., Any],
    *args: Any,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    log_path: Path | None = None,
) -> multiprocessing.process.BaseProcess:
    """A started process forked from the fork server that runs ``fn(*args)`` with ``env``
    (default: this process's environment now) in ``cwd``, its output to ``log_path``."""
    ensure_running()
    target: tuple[Any, ...] = (fn, *args)
    if log_path is not None:
        target = (_with_output, str(log_path), *target)
    if cwd is not None:
        target = (_in_directory, str(cwd), *target)
    context = multiprocessing.get_context("forkserver")
    process = context.Process(
        target=in_environment, args=(dict(os.environ if env is None else env), *target)
    )
    process.start()
    _started.append(process)
    return process


#: Every process :func:`run_forked` started in this test process.
_started: list[multiprocessing.process.BaseProcess] = []


def _stop_leftovers() -> None:
    """Kill what a failed test left running. multiprocessing joins its live children at
    exit, without a time limit: a server left behind would keep pytest from ever exiting.
    Registered after multiprocessing's own exit handler, so it runs before it."""
    for process in _started:
        if process.is_alive():
            process.kill()
            process.join(timeout=10)


atexit.register(_stop_leftovers)


def _in_directory(cwd: str, fn: Callable[..., Any], *args: Any) -> None:
    os.chdir(cwd)
    fn(*args)
