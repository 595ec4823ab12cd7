"""haproxy on loopback in front of ``sampleplan serve`` replicas, as they are deployed.

Used by ``benchmarks/load.py`` (the scale-out scenario) and by the test of a replica lost
behind the load balancer. The configuration is the one ``compose.yaml`` ships
(``docker/haproxy.cfg``), with loopback addresses: round robin over replicas probed on
``/readyz``, and a request whose replica refuses or drops the connection before answering
is sent again to another one (``retry-on`` with ``option redispatch``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The deployed configuration; ``{bind}`` and ``{servers}`` are filled in here.
TEMPLATE = ROOT / "docker" / "haproxy.cfg"


def haproxy_binary() -> str | None:
    """Path of Debian's ``haproxy`` (``make load`` and ``make test`` install it)."""
    return shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).exists()), None
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def render_config(backends: Sequence[str], port: int) -> str:
    """``docker/haproxy.cfg`` bound to ``127.0.0.1:port``, balancing over ``backends``.

    ``backends`` are ``host:port`` strings.
    """
    template = TEMPLATE.read_text(encoding="utf-8")
    head, _, _ = template.partition("    # -- servers --")
    servers = "".join(
        f"    server replica{i} {address} check\n" for i, address in enumerate(backends)
    )
    return head.replace("bind *:8000", f"bind 127.0.0.1:{port}") + "    # -- servers --\n" + servers


@contextmanager
def haproxy(backends: Sequence[str], folder: Path) -> Iterator[str]:
    """haproxy in the foreground on a free loopback port; yields its URL, stops it after."""
    binary = haproxy_binary()
    if binary is None:
        raise RuntimeError("haproxy is not installed (apt-get install haproxy; `make load` does)")
    port = _free_port()
    config = folder / f"haproxy-{port}.cfg"
    config.write_text(render_config(backends, port), encoding="utf-8")
    log_path = folder / f"haproxy-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"haproxy exited:\n{log_path.read_text(errors='replace')}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("haproxy did not listen within 20 s") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
