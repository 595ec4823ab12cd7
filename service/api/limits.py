"""The request-body cap (``max_upload_bytes``), enforced before and while a body is read.

A body whose ``Content-Length`` is over the cap is refused before a byte of it is read; a
body without one (chunked) is counted as it arrives and refused the moment it passes the
cap. Both answers are 413 ``application/problem+json``.

FastAPI has a ``max_body_size`` of its own, but its early refusal is a ``text/plain``
response that replaces whatever the app answers, so the service's error format would
break exactly there.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import problem_response


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the cap; the HTTP handler reports it.

    An ``HTTPException`` because FastAPI lets those out of its body parsing unchanged
    (any other error there becomes a 400).
    """

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=_detail(limit))


def _detail(limit: int) -> str:
    return (
        f"the request body is over this service's limit of {limit} bytes (max_upload_bytes); "
        f"send less per request"
    )


class RequestBodyLimit:
    """ASGI middleware: 413 for request bodies over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            request = Request(scope, receive)
            response = problem_response(
                request, 413, "Payload too large", _detail(self.max_bytes), "payload-too-large"
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted_receive, send)
