"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.types import Scope

from sampleplan.service.api.deps import CatalogDep
from sampleplan.service.api.schemas import Problem

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    summary="Liveness: the process answers",
    description="Answers 200 as long as the process serves requests; it checks nothing else.",
    responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}},
)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def fast_healthz(scope: Scope, parameters: dict[str, Any]) -> Response:
    """:func:`healthz` in its fast lane (NOTE [Fast lane]): a probe every few seconds from
    every orchestrator, and the request that must stay quick while the service is busy."""
    return JSONResponse(await healthz())


@router.get(
    "/readyz",
    summary="Readiness: the database answers",
    description="Answers 200 when this replica can reach its database, 503 otherwise.",
    responses={
        200: {"content": {"application/json": {"example": {"status": "ready"}}}},
        503: {"model": Problem, "description": "The database is unreachable."},
    },
)
def readyz(catalog: CatalogDep) -> dict[str, str]:
    catalog.store.ping()
    return {"status": "ready"}
