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
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpToolsProtocol

__all__ = ["HTTP_PROTOCOL", "HttpToolsProtocol"]

#: uvicorn's ``http`` setting for ``sampleplan serve`` (an import string: workers import it).
HTTP_PROTOCOL = "sampleplan.service.server:HttpToolsProtocol"


class HttpToolsProtocol(_HttpToolsProtocol):
    """uvicorn's httptools protocol, with ``TCP_NODELAY`` on its TCP connections."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):  # not a TCP socket after all
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
