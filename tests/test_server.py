"""``sampleplan serve``'s HTTP protocol: TCP_NODELAY whatever socket uvicorn bound, and
responses written by the round.

NOTE [TCP_NODELAY with --workers] in service/server.py: with ``--workers N`` uvicorn binds
``socket.socket(family=AF_INET)`` (``proto`` 0), and asyncio then leaves Nagle's algorithm
on for the connections it accepts. The servers here listen on such a socket. (uvicorn
0.55 binds with ``proto=IPPROTO_TCP``; 0.54, which docker/requirements.txt pins, and the
older ones that pyproject.toml allows do not.)

NOTE [Responses written by the round] in service/server.py: what a connection writes is
held until the end of the event loop's round, then written in one piece.
"""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Callable
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as UvicornProtocol
from uvicorn.server import ServerState

from sampleplan.service import server as server_module
from sampleplan.service.server import MAX_HELD_BYTES, HttpToolsProtocol, RoundWrites


async def _app(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _protocols(
    protocol_class: type[UvicornProtocol], app: Any
) -> tuple[Callable[[], UvicornProtocol], list[UvicornProtocol]]:
    """A protocol factory serving ``app`` as uvicorn's server makes them, and the list of
    the protocols it makes (one a connection)."""
    config = Config(app=app, lifespan="off", log_level="warning")
    config.load()
    state = ServerState()
    made: list[UvicornProtocol] = []

    def factory() -> UvicornProtocol:
        protocol = protocol_class(config=config, server_state=state, app_state={})
        made.append(protocol)
        return protocol

    return factory, made


def _nodelay_of_a_served_connection(protocol_class: type[UvicornProtocol]) -> int:
    """Serve one request on a proto-0 listening socket; the option on the accepted socket."""

    async def main() -> int:
        factory, made = _protocols(protocol_class, _app)
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


# -- responses written by the round ----------------------------------------------------------


class _Recording(asyncio.Transport):
    """A transport that keeps what is written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return 0


def test_a_rounds_writes_leave_at_its_end_one_piece_a_connection_in_order() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        first, second = _Recording(), _Recording()
        one, two = RoundWrites(first, loop), RoundWrites(second, loop)
        one.write(b"HTTP/1.1 200 OK\r\n\r\n")
        two.write(b"head ")
        one.write(memoryview(b"body"))
        two.write(b"")  # nothing: an empty write is no write
        two.write(b"body")
        assert first.written == second.written == []
        assert one.get_write_buffer_size() == len(b"HTTP/1.1 200 OK\r\n\r\nbody")
        await asyncio.sleep(0)  # the round ends
        assert first.written == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        assert second.written == [b"head body"]
        assert one.get_write_buffer_size() == 0
        one.write(b"next")  # a later round holds its own writes
        assert first.written == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        await asyncio.sleep(0)
        assert first.written[-1] == b"next"

    asyncio.run(main())


def test_large_writes_leave_at_once_after_what_is_held() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport = _Recording()
        writes = RoundWrites(transport, loop)
        large = b"x" * MAX_HELD_BYTES
        writes.write(large)  # nothing held: written through
        assert transport.written == [large]
        writes.write(b"head")
        writes.write(large)  # what is held, then the large piece as it is, in order
        assert transport.written == [large, b"head", large]
        small = b"y" * (MAX_HELD_BYTES // 2)
        writes.write(small)
        writes.write(small)  # held pieces reaching the bound: written now, as one
        assert transport.written == [large, b"head", large, small + small]
        await asyncio.sleep(0)
        assert transport.written == [large, b"head", large, small + small]  # none left

    asyncio.run(main())


def test_a_held_write_is_a_copy_and_close_writes_it_abort_drops_it() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        closed, aborted = _Recording(), _Recording()
        data = bytearray(b"ab")
        writes = RoundWrites(closed, loop)
        writes.write(data)
        data[0] = ord("z")  # the caller's buffer is its own again once write returns
        writes.close()
        assert closed.written == [b"ab"] and closed.closed and writes.is_closing()
        dropped = RoundWrites(aborted, loop)
        dropped.write(b"never")
        dropped.abort()
        await asyncio.sleep(0)
        assert aborted.written == [] and aborted.aborted

    asyncio.run(main())


class _Counting:
    """A transport's stand-in that counts the writes it passes on."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.counted: list[int] = []

    def write(self, data: bytes) -> None:
        self.counted.append(len(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def test_a_failed_write_is_reported_and_the_rounds_other_connections_are_written() -> None:
    class Failing(_Recording):
        def write(self, data: Any) -> None:
            raise RuntimeError("the socket is gone")

    async def main() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        first, failing, last = _Recording(), Failing(), _Recording()
        for transport in (first, failing, last):
            RoundWrites(transport, loop).write(b"answer")
        await asyncio.sleep(0)
        assert first.written == last.written == [b"answer"]
        return reported

    reported = asyncio.run(main())
    assert [type(context["exception"]) for context in reported] == [RuntimeError]


def test_writes_after_close_go_to_the_transport_and_rounds_keep_no_loop_alive() -> None:
    async def main() -> None:
        transport = _Recording()
        writes = RoundWrites(transport, asyncio.get_running_loop())
        writes.close()
        writes.write(b"late")  # not held: the transport answers it as it answers it
        assert transport.written == [b"late"]

    rounds = len(server_module._ROUNDS)
    for _ in range(3):
        asyncio.run(main())
    gc.collect()
    assert len(server_module._ROUNDS) <= rounds


async def _streamed(scope: Any, receive: Any, send: Any) -> None:
    """``/big``: three pieces of 100 000 bytes; ``/close``: ``Connection: close``;
    ``/continue``: the request's body echoed (after ``Expect: 100-continue``); else ``ok``."""
    path = scope["path"]
    if path == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for piece in (b"a", b"b", b"c"):
            await send({"type": "http.response.body", "body": piece * 100_000, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b"ok"
    headers = [(b"content-length", b"2")]
    if path == "/close":
        headers.append((b"connection", b"close"))
    elif path == "/continue":
        message = await receive()
        body = message["body"]
        headers = [(b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_served_connection_answers_in_one_write_a_response(loop_kind: str) -> None:
    """A real server on this protocol: each small response leaves in one write of the
    socket's transport, and keep-alive, ``HEAD``, a chunked body of 300 000 bytes,
    ``Expect: 100-continue`` and ``Connection: close`` are answered as before; on
    asyncio's loop and on uvloop's (``sampleplan serve --loop uvloop``)."""
    new_loop = asyncio.new_event_loop
    if loop_kind == "uvloop":
        new_loop = pytest.importorskip("uvloop").new_event_loop

    async def main() -> None:
        factory, made = _protocols(HttpToolsProtocol, _streamed)
        server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and await reader.readexactly(2) == b"ok"
            # Count the socket transport's writes from here.
            transport = made[0].transport
            assert isinstance(transport, RoundWrites)
            counting = _Counting(transport.transport)
            transport.transport = counting  # type: ignore[assignment]
            counted = counting.counted
            writer.write(b"GET /two HTTP/1.1\r\nHost: t\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert await reader.readexactly(2) == b"ok"
            assert counted == [len(head) + 2]  # head and body in one write
            writer.write(b"HEAD /three HTTP/1.1\r\nHost: t\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert b"content-length: 2" in head.lower()
            writer.write(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert b"transfer-encoding: chunked" in head.lower()
            received = b""
            while True:
                size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
                received += await reader.readexactly(size)
                await reader.readexactly(2)
                if size == 0:
                    break
            assert received == b"a" * 100_000 + b"b" * 100_000 + b"c" * 100_000
            writer.write(
                b"POST /continue HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"hello")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and await reader.readexactly(5) == b"hello"
            # A client that ends its side after its request still gets the whole answer
            # (the transport closes itself then, once what is held is in its buffer).
            half_reader, half_writer = await asyncio.open_connection("127.0.0.1", port)
            half_writer.write(b"GET /half HTTP/1.1\r\nHost: t\r\n\r\n")
            half_writer.write_eof()
            answer = await half_reader.read()
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\nok")
            half_writer.close()
            writer.write(b"GET /close HTTP/1.1\r\nHost: t\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert b"connection: close" in head.lower()
            assert await reader.read() == b"ok"  # then the server closes the connection
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(main())
