"""``/metrics``: the replica's Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sampleplan.service.metrics import CONTENT_TYPE, ServiceMetrics

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics of this replica",
    description=(
        "Requests by route template and status, latency histograms, plans and datasets "
        "created, indices served, draw time, and process metrics, in Prometheus' text format."
    ),
    response_class=Response,
    responses={
        200: {
            "content": {
                "text/plain": {
                    "schema": {"type": "string"},
                    "example": (
                        "# HELP sampleplan_plans_created_total Plans created (201 answers).\n"
                        "# TYPE sampleplan_plans_created_total counter\n"
                        "sampleplan_plans_created_total 3.0\n"
                    ),
                }
            }
        }
    },
)
async def metrics(request: Request) -> Response:
    registry: ServiceMetrics = request.app.state.metrics
    return Response(content=registry.exposition(), media_type=CONTENT_TYPE)
