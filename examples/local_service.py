"""A throwaway sampleplan service for the examples, when no ``--url`` is given.

The examples are meant to talk to a running service (``sampleplan serve``); to run them
on their own, this starts one in a background thread of the example's process, on a
free loopback port, with a SQLite database in a temporary directory. It needs the
``server`` extra; the client code in the examples does not.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def local_service() -> Iterator[str]:
    """Serve on ``http://127.0.0.1:<free port>`` for the duration of the block; yield the URL."""
    import uvicorn

    from sampleplan.service.config import Settings
    from sampleplan.service.main import create_app

    with tempfile.TemporaryDirectory(prefix="sampleplan-example-") as tmp, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        # Warnings only: an example's output is its own, not the service's access lines.
        settings = Settings(
            database_url=f"sqlite:///{Path(tmp) / 'sampleplan.sqlite3'}", log_level="warning"
        )
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the example's local service did not start")
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=30)


@contextlib.contextmanager
def service_url(url: str | None) -> Iterator[str]:
    """``url`` when given; otherwise a :func:`local_service` for the duration of the block."""
    if url is not None:
        yield url
        return
    with local_service() as local:
        print(f"started a throwaway sampleplan service at {local}")
        yield local
