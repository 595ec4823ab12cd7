"""``/v1/sample``: one stateless call from labels and config to counts, weights, indices."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from sampleplan.core.labelsets import labels_or_label_sets
from sampleplan.service.api import examples
from sampleplan.service.api.arrays import JSON, array_json_response, negotiate
from sampleplan.service.api.deps import JSON_BODY, CatalogDep
from sampleplan.service.api.schemas import Problem, SampleOut, SampleRequest
from sampleplan.service.api.views import plan_out

router = APIRouter(prefix="/v1", tags=["sample"])


@router.post(
    "/sample",
    response_model=SampleOut,
    summary="One-shot: labels and config to counts, weights and indices",
    dependencies=[JSON_BODY],
    description=(
        "Computes the plan without storing anything and answers with its class counts, its "
        "per-sample weights and a page of one rank's stream for one epoch (epoch 0, the whole "
        "stream, by default). The answer holds several arrays, so it is JSON only; fetch a stored "
        "plan's `/indices` or `/weights` for binary arrays."
    ),
    responses={
        200: {"content": {"application/json": {"example": examples.SAMPLE}}},
        406: {"model": Problem, "description": "The answer is JSON only."},
        413: {"model": Problem, "description": "More labels than the service takes."},
        422: {
            "model": Problem,
            "description": "The config, the labels or the stream request are invalid, "
            "including the rules between fields of `POST /v1/plans` and `rank` below "
            "`world_size`.",
        },
    },
)
def sample(
    body: Annotated[
        SampleRequest,
        Body(
            openapi_examples={
                "epoch0": examples.openapi_example("Epoch 0, one rank", examples.SAMPLE_REQUEST),
                "rank": examples.openapi_example(
                    "Rank 1 of 2, epoch 3, dataset indices",
                    {
                        **examples.SAMPLE_REQUEST,
                        "epoch": 3,
                        "rank": 1,
                        "world_size": 2,
                        "space": "dataset",
                    },
                ),
            }
        ),
    ],
    catalog: CatalogDep,
    http_request: Request,
) -> Response:
    negotiate(http_request.headers.get("accept"), (JSON,))
    labels = labels_or_label_sets(body.labels)
    request = body.to_stream_request()
    plan = catalog.build_plan(labels, body.to_config())
    indices = catalog.indices(plan, request)
    weights = catalog.weights(plan, request.epoch)
    inline = catalog.settings.plan_classes_inline
    head = plan_out(plan, request.epoch, inline=inline).model_dump(mode="json", by_alias=True)
    meta = {
        "plan": head,
        "counts": plan.prepared.class_counts().tolist(),
        "epoch": request.epoch,
        "rank": request.rank,
        "world_size": request.world_size,
        "offset": request.offset,
        "space": request.space,
        "length": plan.prepared.at_epoch(request.epoch).rank_length(request.world_size),
        "indices": indices.tolist(),
    }
    return array_json_response(meta, "weights", weights)
