"""Dependencies shared by the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.catalog import Catalog
from service.config import Settings
from service.run_catalog import RunCatalog


def get_catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


def get_run_catalog(request: Request) -> RunCatalog:
    runs: RunCatalog = request.app.state.runs
    return runs


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


CatalogDep = Annotated[Catalog, Depends(get_catalog)]
RunCatalogDep = Annotated[RunCatalog, Depends(get_run_catalog)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
