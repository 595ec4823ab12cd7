"""A raw ASGI ``http`` scope, as a server makes it, for tests that call an app directly."""

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
