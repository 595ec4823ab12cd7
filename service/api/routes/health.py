"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import CatalogDep
from service.api.schemas import Problem

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database answers",
    responses={503: {"model": Problem, "description": "The database is unreachable."}},
)
def readyz(catalog: CatalogDep) -> dict[str, str]:
    catalog.store.ping()
    return {"status": "ready"}
