"""Optional bearer-token authentication, as a pure ASGI middleware.

When tokens are configured (``SAMPLEPLAN_API_TOKENS``, ``SAMPLEPLAN_API_TOKENS_FILE``),
every request outside :data:`OPEN_PATHS` needs ``Authorization: Bearer <token>`` with one
of them; anything else is a 401 problem+json carrying ``WWW-Authenticate: Bearer``.

It is a middleware rather than a FastAPI dependency so that a request without a valid
token is refused before its body is read: a stranger cannot make the service parse a
large upload.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from sampleplan.service.api.docs import DOCS_ASSETS, DOCS_STATIC_URL
from sampleplan.service.api.problems import problem_response
from sampleplan.service.config import Settings
from sampleplan.service.errors import Unauthorized

#: Paths that never need a token: probes, metrics, and the API's own description (its
#: pages and the static files they load, each by name).
OPEN_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
    | {f"{DOCS_STATIC_URL}/{name}" for name in DOCS_ASSETS}
)


def read_tokens_file(path: Path) -> list[str]:
    """Tokens in ``path``, one per line; blank lines and ``#`` comments are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read SAMPLEPLAN_API_TOKENS_FILE {str(path)!r}: {exc}") from exc
    tokens = [line.strip() for line in text.splitlines()]
    tokens = [t for t in tokens if t and not t.startswith("#")]
    if not tokens:
        # An empty file most likely means a deployment mistake; serving openly would hide it.
        raise ValueError(f"SAMPLEPLAN_API_TOKENS_FILE {str(path)!r} holds no token")
    return tokens


def load_api_tokens(settings: Settings) -> tuple[str, ...]:
    """Every configured token (environment and file); empty when auth is off."""
    tokens: list[str] = []
    if settings.api_tokens is not None:
        listed = settings.api_tokens.get_secret_value().split(",")
        tokens += [t.strip() for t in listed if t.strip()]
    if settings.api_tokens_file is not None:
        tokens += read_tokens_file(settings.api_tokens_file)
    for token in tokens:
        if any(c.isspace() for c in token) or not token.isascii() or not token.isprintable():
            raise ValueError("API tokens must be printable ASCII without spaces")
    return tuple(dict.fromkeys(tokens))


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if there is one."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return bearer_token_of(value)
    return None


def bearer_token_of(header: bytes) -> str | None:
    """The token of an ``Authorization`` header's value, if it is ``Bearer <token>``."""
    scheme, _, token = header.decode("latin-1").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def token_matches(candidate: str, tokens: tuple[str, ...]) -> bool:
    """Compare against every token in constant time, so timing tells nothing about any."""
    given = candidate.encode()
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(given, token.encode())
    return matched


class BearerAuthMiddleware:
    """Refuses requests outside :data:`OPEN_PATHS` that carry no valid bearer token."""

    def __init__(self, app: ASGIApp, tokens: tuple[str, ...]) -> None:
        if not tokens:
            raise ValueError("BearerAuthMiddleware needs at least one token")
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        candidate = bearer_token(scope)
        if candidate is not None and token_matches(candidate, self.tokens):
            await self.app(scope, receive, send)
            return
        if candidate is None:
            error = Unauthorized(
                "this service needs a bearer token: send 'Authorization: Bearer <token>'"
            )
            challenge = 'Bearer realm="sampleplan"'
        else:
            error = Unauthorized("the bearer token is not valid")
            challenge = 'Bearer realm="sampleplan", error="invalid_token"'
        response = problem_response(
            Request(scope),
            error.status,
            error.title,
            error.detail,
            error.type_slug,
            headers={"WWW-Authenticate": challenge},
        )
        await response(scope, receive, send)
