"""Every error response is ``application/problem+json`` (RFC 9457) in one shape.

One handler covers the whole :class:`~sampleplan.core.errors.SamplingError` tree (Starlette
finds handlers along the MRO); the others translate framework errors (validation, unknown
routes, wrong methods) and, as a last resort, unexpected exceptions into the same shape.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sampleplan.service.errors import SamplingError, http_status

PROBLEM_JSON = "application/problem+json"
_TYPE_PREFIX = "urn:sampleplan:problem:"

logger = logging.getLogger("sampleplan")


def problem_type(slug: str) -> str:
    """The ``type`` URI of a problem: a URN, so that nothing suggests fetching it."""
    return _TYPE_PREFIX + slug


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str,
    slug: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": problem_type(slug),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) if parts else "body"


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SamplingError)
    return problem_response(request, http_status(exc), exc.title, exc.detail, exc.type_slug)


def too_long_integer() -> str:
    """What is wrong with a JSON body holding an integer past Python's 4300 digits."""
    return (
        "the body holds an integer of more than 4300 digits; labels, indices, seeds, epochs "
        "and counts are 64-bit integers"
    )


def _too_long_integer(request: Request) -> JSONResponse:
    return problem_response(request, 422, "Invalid input", too_long_integer(), "invalid-input")


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    raw = exc.errors()
    if any(e.get("type") == "json_invalid" for e in raw):
        ctx = next(e for e in raw if e.get("type") == "json_invalid").get("ctx", {})
        if "number out of range" in str(ctx.get("error", "")):
            # pydantic's JSON parser on an integer past 4300 digits: well-formed JSON.
            return _too_long_integer(request)
        return problem_response(
            request,
            400,
            "Malformed request",
            f"the request body is not valid JSON: {ctx.get('error', 'parse error')}",
            "malformed-request",
        )
    errors = [
        {"loc": _location(tuple(e.get("loc", ()))), "msg": str(e.get("msg", ""))} for e in raw
    ]
    detail = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:5])
    if len(errors) > 5:
        detail += f"; and {len(errors) - 5} more"
    return problem_response(request, 422, "Invalid input", detail, "invalid-input", errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    cause = exc.__cause__
    if (
        exc.status_code == 400
        and isinstance(cause, ValueError)
        and "integer string conversion" in str(cause)
    ):
        # FastAPI's json.loads of a body with an integer past 4300 digits.
        return _too_long_integer(request)
    title = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}.get(
        exc.status_code, "HTTP error"
    )
    detail = str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no such endpoint: {request.method} {request.url.path}"
    slug = title.lower().replace(" ", "-")
    headers = dict(exc.headers) if exc.headers else None
    return problem_response(request, exc.status_code, title, detail, slug, headers=headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        request,
        500,
        "Internal error",
        "the service failed unexpectedly; this is a bug",
        "internal-error",
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(SamplingError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
