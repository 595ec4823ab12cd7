"""API docs that work with no internet access.

FastAPI's default ``/docs`` and ``/redoc`` pages load Swagger UI, ReDoc, a favicon and
Google Fonts from CDNs, so on an offline training cluster they are blank. Here the same
pages load their JavaScript, CSS and favicon from this service: the files come from the
``fastapi-offline`` package (Swagger UI's ``swagger-ui-bundle.js`` and ``swagger-ui.css``,
ReDoc's ``redoc.standalone.js``), installed with the server, never fetched at run time.

The document they show, ``/openapi.json``, is rewritten to tell the truth by
:mod:`sampleplan.service.api.openapi`.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: Where the docs' static files are served.
DOCS_STATIC_URL = "/static/docs"

#: The static files the docs pages load: open without a token, as the pages are (the
#: bearer middleware lists them by name; nothing else under the mount opens).
DOCS_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")

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
