"""Servers for the tests: a free loopback port, uvicorn in a thread of this process
(:class:`LiveServer`), and ``sampleplan serve`` in a process of its own
(:class:`ServerProcess`, for several replicas side by side, or one to ``kill -9``;
:class:`ForkedServer` forks it from the fork server, its imports done)."""

from __future__ import annotations

import multiprocessing.process
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from tests.helpers import forkserver

#: The repository's root (what ``PYTHONPATH`` must hold for ``import tests`` in a child).
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback port nobody listens on now, picked by the OS (no fixed number to share)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """uvicorn serving an app on a loopback port, in a thread of this process."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the live server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class ServerProcess:
    """One replica: ``python -m sampleplan.service.main serve`` on a free loopback port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "SAMPLEPLAN_LOG_LEVEL": "warning",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self) -> ServerProcess:
        """Start the process without waiting for it (so that several can start at once)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sampleplan.service.main",
                    "serve",
                    "--port",
                    str(self.port),
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, timeout: float = 60) -> ServerProcess:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the server was not ready within {timeout} s:\n{self.log()}")

    def start(self) -> ServerProcess:
        return self.launch().wait_ready()

    def kill(self) -> None:
        """``kill -9``: no shutdown handler, no flush, nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""


def _serve(port: int) -> None:
    from sampleplan.service.main import cli

    cli(["serve", "--port", str(port)])


class _ForkedProcess:
    """The part of :class:`subprocess.Popen` that :class:`ServerProcess` uses, over a
    process forked from the fork server."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process
        assert process.pid is not None
        self.pid: int = process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(["sampleplan serve"], timeout or 0)
        return self._process.exitcode


class ForkedServer(ServerProcess):
    """:class:`ServerProcess` forked from the fork server (``tests/helpers/forkserver.py``),
    which has imported the service: ``sampleplan serve`` run by the same ``cli`` in the
    same environment and directory, its output to the log, without seconds of imports.
    For tests of what a server does, not of how its process starts (those run it as
    ``python -m sampleplan.service.main``: :class:`ServerProcess`)."""

    def launch(self) -> ForkedServer:
        process = forkserver.run_forked(
            _serve, self.port, env=self.env, cwd=ROOT, log_path=self.log_path
        )
        self.process = _ForkedProcess(process)  # type: ignore[assignment]
        return self
