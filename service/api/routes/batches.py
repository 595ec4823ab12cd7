"""``/v1/plans/{plan_id}/batches``: the batches of a batch plan (NOTE [batches-v1])."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from starlette.types import Scope

from sampleplan.core.stats import summarize_batches
from sampleplan.service.api import examples
from sampleplan.service.api.arrays import (
    JSON,
    ArrayMediaType,
    array_responses,
    negotiated,
)
from sampleplan.service.api.deps import CatalogDep
from sampleplan.service.api.schemas import BatchesOut, BatchSummaryOut, Problem
from sampleplan.service.api.streams import (
    BatchesQueryParams,
    BatchesSummaryQueryParams,
    batch_page_at_floor,
    batch_page_response,
)
from sampleplan.service.catalog import Catalog, Plan
from sampleplan.service.errors import InvalidStreamRequest

router = APIRouter(prefix="/v1/plans", tags=["batches"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No plan has this id."}
}

PlanId = Annotated[
    str,
    Path(description="The batch plan's id.", openapi_examples=examples.BATCH_PLAN_ID_EXAMPLES),
]


def _batch_plan(catalog: Catalog, plan_id: str) -> Plan:
    plan = catalog.get_plan(plan_id)
    if plan.prepared.batch_table is None:
        raise InvalidStreamRequest(
            f"plan {plan_id} has no 'batching': create a plan with batching "
            '(e.g. {"kind": "m_per_class", "m": 4, "batch_size": 32}) to get batches'
        )
    return plan


@router.get(
    "/{plan_id}/batches",
    summary="A page of a rank's batches for an epoch",
    description=(
        "The epoch's batches of a batch plan (NOTE [batches-v1] or NOTE [batches-v2], as the "
        "plan's `versions` record; every batch meets the "
        "plan's `batching` contract exactly). Ranks take whole batches, `batches[rank::"
        "world_size]` after padding by repeating from the first batch, so every rank gets "
        "`ceil(num_batches / world_size)`. `offset` and `limit` count batches. JSON is a list "
        "of rows; `application/octet-stream` is little-endian int64, row-major, with "
        "`X-Sampleplan-Shape: rows,batch_size`; `.npy` is 2-d. At most `max_page` indices "
        "per response (422 beyond)."
    ),
    responses={
        **array_responses("The page of batches", "<i8", examples.BATCHES, BatchesOut),
        **_NOT_FOUND,
        422: {
            "model": Problem,
            "description": "Not a batch plan; `rank` not below `world_size` (a rule between "
            "two parameters that no schema states); a page over `max_page` indices.",
        },
    },
)
def get_batches(
    plan_id: PlanId,
    catalog: CatalogDep,
    media_type: ArrayMediaType,
    request: Request,
    query: BatchesQueryParams,
) -> Response:
    stream_request = query.to_request()
    plan = _batch_plan(catalog, plan_id)
    table = plan.prepared.batch_table
    assert table is not None
    batches = catalog.batches(plan, stream_request)
    return batch_page_response(
        media_type,
        batches,
        stream_request,
        table.num_batches,
        table.batch_size,
        request.method == "HEAD",
        ids={"plan_id": plan.id},
    )


def batches_at_hand(
    catalog: Catalog, scope: Scope, accept: bytes | None, parameters: dict[str, Any]
) -> tuple[list[tuple[bytes, bytes]], bytes] | None:
    """:func:`get_batches` at the floor (NOTE [Serving at the floor] in
    ``service/api/floor.py``): the page's raw headers and body when it is a cut of a
    cached epoch of batches (NOTE [An epoch of batches drawn whole] in ``catalog.py``),
    else ``None``. ``parameters`` are the route's, validated as it validates them; a
    :class:`~sampleplan.core.errors.SamplingError` (a 406 among them) sends the request
    down the stack, to the route."""
    media_type = negotiated(accept)
    plan_id = parameters.pop("plan_id")
    at_hand = catalog.batches_at_floor(plan_id, parameters, binary=media_type != JSON)
    if at_hand is None:
        return None
    plan, batches, numbers, rows, length = at_hand
    table = plan.prepared.batch_table
    assert table is not None  # batches_at_floor answers batch plans only
    return batch_page_at_floor(
        media_type,
        batches,
        numbers,
        rows,
        table.batch_size,
        parameters,
        length,
        scope["method"] == "HEAD",
        plan.id,
    )


router.add_api_route("/{plan_id}/batches", get_batches, methods=["HEAD"], include_in_schema=False)

#: Paths answering HEAD, documented by sampleplan.service.api.openapi.head_operations.
HEAD_PATHS = (f"{router.prefix}/{{plan_id}}/batches",)


@router.get(
    "/{plan_id}/batches/summary",
    response_model=BatchSummaryOut,
    summary="What one (epoch, rank) share of batches holds: class counts and SHA-256",
    description=(
        "Draws the rank's batches for the epoch (as `/batches` serves them) and answers with "
        "the samples of each class over them and their SHA-256 (of the little-endian int64 "
        "indices in `space`, row-major): `hashlib.sha256(np.asarray(list(batch_sampler), "
        "dtype='<i8').tobytes())`."
    ),
    responses={
        200: {"content": {"application/json": {"example": examples.BATCH_SUMMARY}}},
        **_NOT_FOUND,
        422: {
            "model": Problem,
            "description": "Not a batch plan; `rank` not below `world_size` (a rule between "
            "two parameters that no schema states); more indices than "
            "SAMPLEPLAN_MAX_NUM_SAMPLES.",
        },
    },
)
def get_batches_summary(
    plan_id: PlanId,
    catalog: CatalogDep,
    query: BatchesSummaryQueryParams,
) -> BatchSummaryOut:
    request = query.to_request()
    plan = _batch_plan(catalog, plan_id)
    table = plan.prepared.batch_table
    assert table is not None
    length = request.length(table.num_batches)
    if length * table.batch_size > catalog.settings.max_num_samples:
        raise InvalidStreamRequest(
            f"the rank's batches hold {length * table.batch_size} indices; this service "
            f"summarises at most {catalog.settings.max_num_samples} "
            "(SAMPLEPLAN_MAX_NUM_SAMPLES) in one request"
        )
    summary = summarize_batches(plan.prepared, request)
    return BatchSummaryOut(
        plan_id=plan.id,
        epoch=request.epoch,
        rank=request.rank,
        world_size=request.world_size,
        space=request.space,
        num_batches=summary.num_batches,
        batch_size=summary.batch_size,
        classes=plan.classes,
        counts=summary.class_counts.tolist(),
        sha256=summary.sha256,
        versions=plan.versions,
    )
