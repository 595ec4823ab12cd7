"""``sampleplan serve``'s HTTP protocol: TCP_NODELAY whatever socket uvicorn bound.

NOTE [TCP_NODELAY with --workers] in service/server.py: with ``--workers N`` uvicorn binds
``socket.socket(family=AF_INET)`` (``proto`` 0), and asyncio then leaves Nagle's algorithm
on for the connections it accepts. The servers here listen on such a socket. (uvicorn
0.55 binds with ``proto=IPPROTO_TCP``; 0.54, which docker/requirements.txt pins, and the
older ones that pyproject.toml allows do not.)
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as UvicornProtocol
from uvicorn.server import ServerState

from sampleplan.service.server import HttpToolsProtocol


async def _app(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _nodelay_of_a_served_connection(protocol_class: type[UvicornProtocol]) -> int:
    """Serve one request on a proto-0 listening socket; the option on the accepted socket."""

    async def main() -> int:
        config = Config(app=_app, lifespan="off", log_level="warning")
        config.load()
        state = ServerState()
        made: list[UvicornProtocol] = []

        def factory() -> UvicornProtocol:
            protocol = protocol_class(config=config, server_state=state, app_state={})
            made.append(protocol)
            return protocol

        listening = socket.socket(family=socket.AF_INET)  # as uvicorn's bind_socket does
        listening.bind(("127.0.0.1", 0))
        assert listening.proto == 0
        server = await asyncio.get_running_loop().create_server(factory, sock=listening)
        try:
            port = listening.getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            accepted = made[0].transport.get_extra_info("socket")
            value: int = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            writer.close()
            return value
        finally:
            server.close()

    return asyncio.run(main())


@pytest.mark.skipif(not hasattr(socket, "TCP_NODELAY"), reason="no TCP_NODELAY here")
def test_connections_accepted_on_a_proto_0_socket_get_tcp_nodelay() -> None:
    assert _nodelay_of_a_served_connection(HttpToolsProtocol) != 0


@pytest.mark.skipif(not hasattr(socket, "TCP_NODELAY"), reason="no TCP_NODELAY here")
def test_the_setup_reproduces_what_the_protocol_is_for() -> None:
    """uvicorn's own protocol on such a socket leaves Nagle on: the test above is not vacuous.

    The day asyncio or uvicorn's protocol sets ``TCP_NODELAY`` on these connections
    themselves, this fails: ``HttpToolsProtocol`` (and its NOTE) can then go.
    """
    assert _nodelay_of_a_served_connection(UvicornProtocol) == 0, (
        "uvicorn's own protocol now gets TCP_NODELAY on connections accepted from a proto-0 "
        "socket: sampleplan.service.server.HttpToolsProtocol may no longer be needed"
    )


def test_serve_hands_uvicorn_this_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from sampleplan.service.main import cli

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    cli(["serve", "--workers", "2"])
    module, _, name = seen["http"].partition(":")
    assert getattr(__import__(module, fromlist=[name]), name) is HttpToolsProtocol
