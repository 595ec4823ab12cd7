"""What each process of the multi-process tests runs: spawned ranks import only their
module (kept light), and the Lightning scripts run as ``python SCRIPT``.

:func:`spawn` starts a test's ranks as ``torch.multiprocessing.spawn`` does, but forked
from the test process's fork server (``tests/helpers/forkserver.py``), which imported
torch, the client and these modules once: a spawned rank would import them again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import forkserver

#: This folder, where the scripts are.
RANKS = Path(__file__).resolve().parent


def _rank(rank: int, environ: dict[str, str], fn: Callable[..., Any], *args: Any) -> None:
    forkserver.in_environment(environ, fn, rank, *args)


def spawn(fn: Callable[..., Any], args: tuple[Any, ...], nprocs: int) -> None:
    """``torch.multiprocessing.spawn(fn, args, nprocs, join=True)``, ranks forked from the
    fork server: ``fn(rank, *args)`` in each, in this process's environment as it is now;
    an exception in one is raised here."""
    import torch.multiprocessing as mp

    forkserver.ensure_running()
    mp.start_processes(
        _rank,
        args=(dict(os.environ), fn, *args),
        nprocs=nprocs,
        join=True,
        start_method="forkserver",
    )
