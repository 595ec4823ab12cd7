"""Dependencies shared by the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from sampleplan.service.api.uploads import JSON, parse_content_type
from sampleplan.service.catalog import Catalog
from sampleplan.service.config import Settings
from sampleplan.service.errors import UnsupportedMediaType
from sampleplan.service.run_catalog import RunCatalog

# Async, though they do not await: FastAPI runs a plain ``def`` dependency in its
# threadpool, and that hop cost more than everything else a cached page needs.


async def get_catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


async def get_run_catalog(request: Request) -> RunCatalog:
    runs: RunCatalog = request.app.state.runs
    return runs


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


CatalogDep = Annotated[Catalog, Depends(get_catalog)]
RunCatalogDep = Annotated[RunCatalog, Depends(get_run_catalog)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def require_json(request: Request) -> None:
    """415 for a body that is not JSON by its ``Content-Type``, as ``/v1/datasets`` answers.

    FastAPI would otherwise validate the raw bytes against the model and answer a 422
    about a missing object, which hides the real mistake.
    """
    media_type, _ = parse_content_type(request.headers.get("content-type"))
    if media_type == JSON or (
        media_type is not None
        and media_type.startswith("application/")
        and media_type.endswith("+json")
    ):
        return
    if media_type is None and not await request.body():
        return  # no body at all: the validation error says which fields are missing
    shown = "no Content-Type" if media_type is None else f"Content-Type {media_type!r}"
    raise UnsupportedMediaType(f"the request has {shown}; send {JSON}")


#: On routes whose body is a JSON object.
JSON_BODY = Depends(require_json)
