"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import CatalogDep
from service.api.schemas import Problem

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    summary="Liveness: the process answers",
    description="Answers 200 as long as the process serves requests; it checks nothing else.",
    responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}},
)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


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
