"""API docs that work with no internet access, and an OpenAPI schema that tells the truth.

FastAPI's default ``/docs`` and ``/redoc`` pages load Swagger UI, ReDoc, a favicon and
Google Fonts from CDNs, so on an offline training cluster they are blank. Here the same
pages load their JavaScript, CSS and favicon from this service: the files come from the
``fastapi-offline`` package (Swagger UI's ``swagger-ui-bundle.js`` and ``swagger-ui.css``,
ReDoc's ``redoc.standalone.js``), installed with the server, never fetched at run time.

The schema is post-processed once so that every error response is documented as what
the service really sends: ``application/problem+json`` with the ``Problem`` schema and an
example, including the 422 that FastAPI would otherwise describe as its own
``HTTPValidationError`` (the problem handlers replace that body).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from sampleplan.service import errors
from sampleplan.service.api.problems import PROBLEM_JSON, problem_type

#: Where the docs' static files are served.
DOCS_STATIC_URL = "/static/docs"

_OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"

#: The docs pages may load from this service only. ReDoc's sidebar shows a logo from
#: cdn.redoc.ly whatever its options say; this keeps the browser from asking for it (the
#: image then hides itself). Inline script and styles: Swagger UI's page starts it with an
#: inline script and both tools inject styles; ReDoc's search runs in a blob: worker.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "base-uri 'self'; form-action 'self'"
)

#: The error each status stands for in examples, and an example detail.
_PROBLEM_EXAMPLES: dict[str, tuple[type[errors.SamplingError], str]] = {
    "400": (errors.MalformedRequest, "the request body is not valid JSON: EOF while parsing"),
    "401": (errors.Unauthorized, "this service needs a bearer token"),
    "404": (errors.NotFound, "no such endpoint"),
    "406": (errors.NotAcceptable, "cannot answer with the requested media type"),
    "413": (
        errors.PayloadTooLarge,
        "the dataset has 200000000 labels; this service takes at most 100000000",
    ),
    "415": (errors.UnsupportedMediaType, "unsupported Content-Type"),
    "504": (errors.RequestTimeout, "no response within 60 s"),
    "422": (errors.InvalidInput, "seed: Input should be greater than or equal to 0"),
    "503": (errors.StorageUnavailable, "the database is unreachable"),
}


def install_offline_docs(app: FastAPI) -> None:
    """Serve ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) from local files.

    The app must be created with ``docs_url=None, redoc_url=None`` so that FastAPI's CDN
    pages are not registered first.
    """
    app.mount(
        DOCS_STATIC_URL,
        StaticFiles(packages=[("fastapi_offline", "static")]),
        name="docs-static",
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_STATIC_URL}/favicon.png",
            oauth2_redirect_url=f"{root}{_OAUTH2_REDIRECT_URL}",
            # validatorUrl: Swagger UI would otherwise ask validator.swagger.io for a badge.
            swagger_ui_parameters={"validatorUrl": None, "displayRequestDuration": True},
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @app.get(_OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_STATIC_URL}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        app.openapi_schema = problems_as_problem_json(schema)
    return app.openapi_schema


def problems_as_problem_json(schema: dict[str, Any]) -> dict[str, Any]:
    """Document every 4xx/5xx response as ``application/problem+json`` with an example."""
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            for status, response in operation.get("responses", {}).items():
                if status[:1] not in ("4", "5"):
                    continue
                # Errors are problem+json whatever the route's own media type (the
                # report's is text/html): one media type, one schema, one example.
                given = response.get("content", {})
                example = next((m["example"] for m in given.values() if "example" in m), None)
                response["content"] = {
                    PROBLEM_JSON: {
                        "schema": problem_ref,
                        "example": example
                        or problem_example(status, path, response.get("description", "")),
                    }
                }
                if status == "422" and response.get("description") == "Validation Error":
                    response["description"] = "The request's parameters or body are invalid."
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "Problem" not in components:
        from sampleplan.service.api.schemas import Problem

        components["Problem"] = Problem.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
    # Nothing refers to FastAPI's own validation-error shapes any more.
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema


def problem_example(status: str, path: str, description: str) -> dict[str, Any]:
    """An example problem body for a ``status`` answer of the operation at ``path``."""
    error, detail = _PROBLEM_EXAMPLES.get(
        status, (errors.SamplePlanServiceError, "the request failed")
    )
    if status == "404" and ("dataset" in description.lower() or path.startswith("/v1/datasets")):
        error, detail = errors.DatasetNotFound, "no dataset has id '0123abcd'"
    elif status == "404" and path.startswith("/v1/plans"):
        error, detail = errors.PlanNotFound, "no plan has id '0123abcd'"
    return {
        "type": problem_type(error.type_slug),
        "title": error.title,
        "status": int(status),
        "detail": detail,
        "instance": path,
    }
