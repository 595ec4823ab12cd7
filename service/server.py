"""What ``sampleplan serve`` hands uvicorn besides the app: its HTTP protocol.

NOTE [TCP_NODELAY with --workers]
    asyncio turns Nagle's algorithm off (``TCP_NODELAY``) on an accepted connection only
    when its socket says it is TCP (``proto == IPPROTO_TCP``). With ``--workers N``
    uvicorn binds the port itself with ``socket.socket(family=...)``, whose ``proto`` is
    0, and so are the sockets accepted from it: Nagle stays on, and a response written
    in two pieces (head, body) waits for the client's delayed ACK, 40 ms on Linux. Under
    ``make load`` ``--workers 2`` served 1400 pages/s with a p50 of exactly 44 ms (64
    connections / 40 ms) against 3000 for one worker; with the option set, 3561. (uvloop
    sets it on every TCP connection, which is why this showed only with asyncio's loop.)
    :class:`HttpToolsProtocol` sets it on every connection, whatever the socket says.

NOTE [Responses written by the round]
    uvicorn writes a response's head and its body each with its own ``send`` system
    call, at once, from the request's task. Under load the event loop runs a round of
    such tasks one after another (the requests that arrived together), so each
    response left alone, a few tens of microseconds after the previous one: two TCP
    segments a response, and a client on the same machine (a load generator, a
    training job beside its replica) woken for each of them, which the sending process
    pays in the kernel (on a virtual machine, an interrupt between processors and an
    exit to the hypervisor). Measured with ``make load`` on two virtual cores: 0.96
    wakeups of wrk a page, 12 us of a page's 81 us of CPU.

    :class:`HttpToolsProtocol` hands uvicorn a transport that holds what a connection
    writes (:class:`RoundWrites`) until the end of the loop's present round, as the
    access log does (NOTE [Access lines written by the round] in ``service/logs.py``):
    the first write of a round schedules one callback with ``call_soon``, which runs
    once the round's ready callbacks have run, and writes each connection's pieces in
    order, one write each. So a response leaves in one segment, and a round's responses
    one after another, in a burst. A response waits at most for the rest of its round;
    alone, it waits for nothing (its task's round is over when it has sent). A piece of
    :data:`MAX_HELD_BYTES` or more is written at once after what is held, and held pieces
    reaching it are written at once, so flow control and the streaming of large bodies
    are as before. Closing writes what is held first (and so does the client's end of
    its side, after which the socket's transport closes itself); aborting drops it; a
    write after either goes to the transport as it is. One connection's failed write
    is reported to the loop's exception handler, and the round's other connections are
    written. The bare app of ``make load``'s floor runs on this protocol too.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import weakref
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpToolsProtocol

__all__ = ["HTTP_PROTOCOL", "MAX_HELD_BYTES", "HttpToolsProtocol", "RoundWrites"]

#: uvicorn's ``http`` setting for ``sampleplan serve`` (an import string: workers import it).
HTTP_PROTOCOL = "sampleplan.service.server:HttpToolsProtocol"

#: A connection's held bytes are written at once from this many (asyncio's default high
#: water mark for a transport's buffer).
MAX_HELD_BYTES = 64 * 1024


class HttpToolsProtocol(_HttpToolsProtocol):
    """uvicorn's httptools protocol, with ``TCP_NODELAY`` on its TCP connections (NOTE
    [TCP_NODELAY with --workers]) and writes held until the end of the event loop's round
    (NOTE [Responses written by the round])."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):  # not a TCP socket after all
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(RoundWrites(transport, self.loop))

    def eof_received(self) -> None:
        # The client closed its side: the socket's transport closes itself once this
        # returns (uvicorn's returns None), and writes what its buffer holds first. What
        # is held for the round goes to that buffer now.
        transport = self.transport
        if isinstance(transport, RoundWrites):
            transport.flush()
        super().eof_received()


class _Round:
    """The connections of one event loop with writes held in its present round (it holds
    no reference to the loop, the key it is kept under)."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: list[RoundWrites] = []

    def hold(self, writes: RoundWrites) -> None:
        if not self.held:
            writes.loop.call_soon(self.write)
        self.held.append(writes)

    def write(self) -> None:
        held, self.held = self.held, []
        for writes in held:
            try:
                writes.flush()
            except Exception as error:  # one connection's failure leaves the others' writes
                writes.loop.call_exception_handler(
                    {
                        "message": "a connection's held writes failed",
                        "exception": error,
                        "transport": writes.transport,
                    }
                )


#: Each event loop's round (a loop's connections share it).
_ROUNDS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Round] = weakref.WeakKeyDictionary()


class RoundWrites(asyncio.Transport):
    """A connection's transport whose writes are held until the end of the event loop's
    present round, then written in one piece (NOTE [Responses written by the round]);
    everything else is the transport's own."""

    __slots__ = ("_closed", "_held", "_round", "_size", "loop", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.transport = transport
        self.loop = loop
        found = _ROUNDS.get(loop)
        if found is None:
            found = _ROUNDS[loop] = _Round()
        self._round = found
        #: The pieces held, in order, and their bytes; ``None`` when none are.
        self._held: list[bytes] | None = None
        self._size = 0
        #: Closed, aborted or ended by this wrapper: later writes go to the transport,
        #: which answers them as it answers writes after its end.
        self._closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if self._closed or len(data) >= MAX_HELD_BYTES:
            # What is held first, then this as it is (a large piece is not copied).
            self.flush()
            self.transport.write(data)
            return
        if type(data) is not bytes:
            data = bytes(data)  # what the caller may change once write has returned
        held = self._held
        if held is None:
            self._held = [data]
            self._size = len(data)
            self._round.hold(self)
            return
        held.append(data)
        self._size += len(data)
        if self._size >= MAX_HELD_BYTES:
            self.flush()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Write what is held now."""
        held = self._held
        if held is None:
            return
        self._held = None
        self._size = 0
        self.transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self._closed = True
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self._closed = True
        self._held = None
        self._size = 0
        self.transport.abort()

    def write_eof(self) -> None:
        self._closed = True
        self.flush()
        self.transport.write_eof()

    def can_write_eof(self) -> bool:
        return self.transport.can_write_eof()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.transport.get_protocol()

    def is_reading(self) -> bool:
        return self.transport.is_reading()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + self._size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.transport.get_write_buffer_limits()
