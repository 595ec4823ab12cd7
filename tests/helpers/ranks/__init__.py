"""What each process of the multi-process tests runs: spawned ranks import only their
module (kept light), and the Lightning scripts run as ``python SCRIPT``.

:func:`spawn` starts a test's ranks as ``torch.multiprocessing.spawn`` does, but forked
from a fork server (one per test process, started on first use) that has imported torch,
the client and these modules once: a spawned rank would import them again, seconds of a
busy machine's CPU per rank. Each rank is a fresh child of that server (single-threaded,
no process group, no server of the test's own in it), in the test's working directory,
``sys.path`` and environment as they are when the ranks start.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: This folder, where the scripts are.
RANKS = Path(__file__).resolve().parent
ROOT = RANKS.parents[2]

#: What the fork server imports before it forks any rank (a module missing is skipped).
PRELOAD = [
    "torch",
    "torch.distributed",
    "torch.utils.data",
    "sampleplan.client",
    "tests.helpers.ranks.batch_rank",
    "tests.helpers.ranks.distributed_rank",
    "tests.helpers.ranks.distributed_run_rank",
    "tests.helpers.ranks.elastic_rank",
    "tests.helpers.ranks.mixture_rank",
]


def _in_environment(rank: int, environ: dict[str, str], fn: Callable[..., Any], *args: Any) -> None:
    """A rank with the environment the test had when it started its ranks (a spawned rank
    inherits it; a forked one would have the fork server's)."""
    os.environ.clear()
    os.environ.update(environ)
    fn(rank, *args)


def _ensure_fork_server() -> None:
    """Start the fork server once, able to import this repository from any directory."""
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


def spawn(fn: Callable[..., Any], args: tuple[Any, ...], nprocs: int) -> None:
    """``torch.multiprocessing.spawn(fn, args, nprocs, join=True)``, ranks forked from the
    fork server: ``fn(rank, *args)`` in each, an exception in one raised here."""
    import torch.multiprocessing as mp

    _ensure_fork_server()
    mp.start_processes(
        _in_environment,
        args=(dict(os.environ), fn, *args),
        nprocs=nprocs,
        join=True,
        start_method="forkserver",
    )
