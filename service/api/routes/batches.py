"""``/v1/plans/{plan_id}/batches``: the batches of a batch plan (NOTE [batches-v1])."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Query, Request, Response

from sampleplan.core.streams import Space, StreamRequest
from sampleplan.service.api import examples
from sampleplan.service.api.arrays import (
    SHAPE_HEADER,
    ArrayMediaType,
    array_response,
    array_responses,
)
from sampleplan.service.api.deps import CatalogDep
from sampleplan.service.api.routes.plans import EpochQuery, RankQuery, WorldSizeQuery
from sampleplan.service.api.schemas import BatchesOut, BatchSummaryOut, Problem
from sampleplan.service.catalog import Catalog, Plan
from sampleplan.service.errors import InvalidStreamRequest

router = APIRouter(prefix="/v1/plans", tags=["batches"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No plan has this id."}
}

#: Batches per summary chunk: bounds the memory of a summary of a long epoch.
_SUMMARY_CHUNK_VALUES = 1 << 20

SpaceQuery = Annotated[Space, Query(description="population positions or dataset indices.")]


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
        "The epoch's batches of a batch plan (see NOTE [batches-v1]; every batch meets the "
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
    epoch: EpochQuery = 0,
    rank: RankQuery = 0,
    world_size: WorldSizeQuery = 1,
    offset: Annotated[
        int, Query(ge=0, description="First batch of the page in the rank's batches.")
    ] = 0,
    limit: Annotated[
        int | None, Query(ge=0, description="Batches in the page; default: to the end.")
    ] = None,
    space: SpaceQuery = "population",
) -> Response:
    stream_request = StreamRequest(
        epoch=epoch, rank=rank, world_size=world_size, offset=offset, limit=limit, space=space
    )
    plan = _batch_plan(catalog, plan_id)
    prepared = plan.prepared
    assert prepared.batch_table is not None
    batch_size = prepared.batch_table.batch_size
    length = prepared.rank_batches(world_size)
    start, stop = stream_request.page_bounds(prepared.batch_table.num_batches)
    catalog.check_page((stop - start) * batch_size)
    batches = prepared.batches(stream_request)
    meta = {
        "plan_id": plan.id,
        "epoch": epoch,
        "rank": rank,
        "world_size": world_size,
        "offset": offset,
        "length": length,
        "batch_size": batch_size,
        "space": space,
    }
    return array_response(
        media_type,
        batches,
        meta=meta,
        key="batches",
        headers={
            "X-Sampleplan-Stream-Length": str(length),
            "X-Sampleplan-Offset": str(offset),
            # Also on an empty page, whose array shape numpy keeps as (0, batch_size).
            SHAPE_HEADER: f"{batches.shape[0]},{batch_size}",
        },
        head_only=request.method == "HEAD",
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
    epoch: EpochQuery = 0,
    rank: RankQuery = 0,
    world_size: WorldSizeQuery = 1,
    space: SpaceQuery = "population",
) -> BatchSummaryOut:
    StreamRequest(epoch=epoch, rank=rank, world_size=world_size, space=space)
    plan = _batch_plan(catalog, plan_id)
    prepared = plan.prepared
    table = prepared.batch_table
    assert table is not None
    length = prepared.rank_batches(world_size)
    if length * table.batch_size > catalog.settings.max_num_samples:
        raise InvalidStreamRequest(
            f"the rank's batches hold {length * table.batch_size} indices; this service "
            f"summarises at most {catalog.settings.max_num_samples} "
            "(SAMPLEPLAN_MAX_NUM_SAMPLES) in one request"
        )
    digest = hashlib.sha256()
    counts = np.zeros(prepared.num_classes, dtype=np.int64)
    step = max(1, _SUMMARY_CHUNK_VALUES // table.batch_size)
    for offset in range(0, length, step):
        page_request = StreamRequest(
            epoch=epoch, rank=rank, world_size=world_size, offset=offset, limit=step
        )
        page = prepared.batches(page_request)
        counts += np.bincount(prepared.codes[page.reshape(-1)], minlength=prepared.num_classes)
        if space == "dataset" and prepared.population is not None:
            page = prepared.population[page]
        digest.update(np.ascontiguousarray(page, dtype="<i8").tobytes())
    return BatchSummaryOut(
        plan_id=plan.id,
        epoch=epoch,
        rank=rank,
        world_size=world_size,
        space=space,
        num_batches=length,
        batch_size=table.batch_size,
        classes=plan.classes,
        counts=counts.tolist(),
        sha256=digest.hexdigest(),
        versions=plan.versions,
    )
