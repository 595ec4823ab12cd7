"""``sampleplan serve`` in a process of its own, for the benchmarks that need a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def server_process(
    folder: Path, *, workers: int = 1, log_level: str = "warning", **settings: Any
) -> Iterator[tuple[str, int]]:
    """A server on a free loopback port, SQLite and its log in ``folder``; yields URL and pid.

    ``settings`` become ``SAMPLEPLAN_*`` variables (``max_page=10`` sets
    ``SAMPLEPLAN_MAX_PAGE``; ``database_url=`` replaces the SQLite file). ``workers`` is
    ``sampleplan serve --workers``. The server's log goes to a file, so that a benchmark's
    table is not interleaved with it; its tail is raised if the server does not start.
    """
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "SAMPLEPLAN_DATABASE_URL": f"sqlite:///{folder / f'bench-{port}.sqlite3'}",
        "SAMPLEPLAN_LOG_LEVEL": log_level,
        **{f"SAMPLEPLAN_{k.upper()}": str(v) for k, v in settings.items()},
    }
    command = [sys.executable, "-m", "sampleplan.service.main", "serve", "--port", str(port)]
    command += ["--workers", str(workers)]
    log_path = folder / f"server-{port}.log"
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 240
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"the benchmark server did not start:\n{tail}")
                time.sleep(0.05)
            yield url, process.pid
        finally:
            process.terminate()
            process.wait(timeout=30)
