"""A raw ASGI ``http`` scope, as a server makes it, for tests that call an app directly,
and the app's answer to it as raw messages."""

from __future__ import annotations

from typing import Any


def http_scope(method: str, target: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The scope of ``method`` on ``target`` (a path, with its query after ``?``) from a
    loopback client, with ``headers`` after ``Host``."""
    path, _, query = target.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 40000),
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode("latin-1"),
        "headers": [(b"host", b"127.0.0.1:8000"), *headers],
        "state": {},
    }


async def call_app(app: Any, scope: dict[str, Any], messages: list[dict[str, Any]]) -> None:
    """Call ``app`` with ``scope`` and no body, appending what it sends to ``messages``."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)


def whole_answer(messages: list[dict[str, Any]]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The status, the headers in order and the whole body an app sent."""
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], [tuple(h) for h in start["headers"]], body
