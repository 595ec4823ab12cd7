"""``/v1/runs``: training runs whose weights change between epochs (NOTE [Run updates])."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import APIRouter, Body, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.types import Scope

from sampleplan.core.epochs import EPOCH_LIMIT
from sampleplan.core.runs import RUN_ID_PATTERN, RunUpdate, indices_from_list, values_from_list
from sampleplan.service.api import examples
from sampleplan.service.api.arrays import (
    JSON,
    ArrayMediaType,
    array_response,
    array_responses,
    negotiated,
)
from sampleplan.service.api.deps import JSON_BODY, RunCatalogDep
from sampleplan.service.api.page_threads import run_page_work
from sampleplan.service.api.queries import reads_query
from sampleplan.service.api.schemas import (
    Problem,
    RunCreate,
    RunIndicesOut,
    RunOut,
    RunUpdateIn,
    RunUpdateMeta,
    RunWeightsOut,
)
from sampleplan.service.api.streams import (
    RUN_OPENINGS,
    StreamQueryParams,
    stream_page_at_floor,
    stream_page_response,
)
from sampleplan.service.catalog import Catalog
from sampleplan.service.errors import InvalidRunUpdate, UnsupportedMediaType
from sampleplan.service.run_catalog import RunCatalog, RunInfo

router = APIRouter(prefix="/v1/runs", tags=["runs"])

T = TypeVar("T")

RunId = Annotated[
    str,
    Path(
        description="The run's id, chosen by the caller: 1 to 128 of A-Z a-z 0-9 . _ -",
        pattern=f"^{RUN_ID_PATTERN}$",
        openapi_examples=examples.RUN_ID_EXAMPLES,
    ),
]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No run has this id."}
}

_PRUNED: dict[int | str, dict[str, Any]] = {
    410: {
        "model": Problem,
        "description": "The epoch is no longer kept (the service's retention setting, "
        "SAMPLEPLAN_RUN_KEEP_EPOCHS, dropped it).",
    }
}


_NOT_REACHED = (
    "The run has not reached this epoch: it is more than one past the run's latest epoch "
    "read or updated (and past epoch 1). Nothing is frozen."
)


def run_out(info: RunInfo) -> RunOut:
    return RunOut(
        id=info.id,
        plan_id=info.plan_id,
        frozen_epochs=info.frozen_epochs,
        updates=info.updates,
    )


@router.put(
    "/{run_id}",
    response_model=RunOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a run of a plan (idempotent)",
    description=(
        "A run draws epoch 0 from its plan's weights and every later epoch from the weights "
        "its updates made. 201 when created, 200 when it exists for this plan, 409 when it "
        "exists for another plan. A plan with a schedule cannot back a run (422). A run of a "
        "mixture plan has one weight per source: its updates' `indices` are source positions, "
        "its `/weights` the sources' weights, its `/indices` ConcatDataset positions."
    ),
    responses={
        201: {
            "description": "The run was created.",
            "content": {"application/json": {"example": examples.RUN}},
        },
        200: {
            "model": RunOut,
            "description": "The run existed already, for this plan.",
            "content": {"application/json": {"example": examples.RUN}},
        },
        404: {"model": Problem, "description": "No plan has this `plan_id`."},
        409: {"model": Problem, "description": "The run exists for another plan."},
        415: {"model": Problem, "description": "The body is not JSON."},
        422: {"model": Problem, "description": "A bad run id, or a plan with a schedule."},
    },
    dependencies=[JSON_BODY],
)
def put_run(
    run_id: RunId,
    body: Annotated[
        RunCreate,
        Body(
            openapi_examples={
                "plan": examples.openapi_example(
                    "A run of the example plan",
                    examples.RUN_CREATE,
                    "Needs the example plan (POST /v1/plans first).",
                )
            }
        ),
    ],
    runs: RunCatalogDep,
    response: Response,
) -> RunOut:
    info, created = runs.create_run(run_id, body.plan_id)
    if not created:
        response.status_code = status.HTTP_200_OK
    return run_out(info)


@router.get(
    "/{run_id}",
    response_model=RunOut,
    summary="A run: its plan, frozen epochs and number of updates",
    description="`frozen_epochs`: the epochs served so far, whose weights never change again.",
    responses={
        200: {"content": {"application/json": {"example": examples.RUN_UPDATED}}},
        **_NOT_FOUND,
        422: {"model": Problem, "description": "A bad run id."},
    },
)
def get_run(run_id: RunId, runs: RunCatalogDep) -> RunOut:
    return run_out(runs.get_run(run_id))


@router.delete(
    "/{run_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a run, its updates and its frozen epochs",
    description=(
        "Gone for good: its epochs can no longer be read, and its id may be used again "
        "(for any plan). 204 when deleted, 404 when no run has this id (a retried delete "
        "whose first try went through gets a 404)."
    ),
    responses={
        204: {"description": "The run was deleted."},
        **_NOT_FOUND,
        422: {"model": Problem, "description": "A bad run id."},
    },
)
def delete_run(run_id: RunId, runs: RunCatalogDep) -> Response:
    runs.delete_run(run_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


UPDATE_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            # Added to the document's components by sampleplan.service.api.openapi.
            "schema": {"$ref": "#/components/schemas/RunUpdateIn"},
            "example": examples.RUN_UPDATE,
        },
        "application/octet-stream": {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": "n little-endian int64 indices, then n little-endian float64 "
                "values; epoch, rank, step, op, alpha and update_id go in the query.",
            }
        },
    },
}


def _validated(parse: Callable[[], T]) -> T:
    """``parse()``, its pydantic errors answered as a request's (422 problem+json)."""
    try:
        return parse()
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


def update_from_body(
    body: bytes, content_type: str | None, query: dict[str, str]
) -> tuple[RunUpdate, str | None]:
    """The update a request's body (and, for a binary one, its query) holds, and its
    ``update_id``; its faults answered as the route answers them (422, 415)."""
    media_type = (content_type or "application/json").split(";", 1)[0].strip().lower()
    if media_type == "application/octet-stream":
        fields: RunUpdateMeta | RunUpdateIn = _validated(
            lambda: RunUpdateMeta.model_validate(query)
        )
        if len(body) % 16:
            raise InvalidRunUpdate(
                "a binary update is n int64 indices then n float64 values (16 bytes per "
                f"value), but the body has {len(body)} bytes"
            )
        half = len(body) // 2
        indices = np.frombuffer(body, dtype="<i8", count=half // 8).astype(np.int64)
        values = np.frombuffer(body, dtype="<f8", offset=half).astype(np.float64)
    elif media_type == "application/json":
        if query:
            raise InvalidRunUpdate(
                f"a JSON update carries everything in its body; unexpected query {sorted(query)}"
            )
        parsed = _validated(lambda: RunUpdateIn.model_validate_json(body))
        indices = indices_from_list(parsed.indices)
        values = values_from_list(parsed.values)
        fields = parsed
    else:
        raise UnsupportedMediaType(
            f"an update is application/json or application/octet-stream, not {media_type!r}"
        )
    update = RunUpdate(
        epoch=fields.epoch,
        rank=fields.rank,
        step=fields.step,
        op=fields.op,
        alpha=fields.alpha,
        indices=indices,
        values=values,
    )
    return update, fields.update_id


@router.post(
    "/{run_id}/updates",
    response_model=RunOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Update some sample weights from epoch `epoch` on",
    description=(
        "A sparse update sent during epoch `epoch` changes the weights of epoch `epoch + 1` "
        "and later. The updates of one epoch apply in the order (step, rank, arrival within "
        "that rank): `set` (the last wins), `mul`, `ema` (`w = (1 - alpha) * w + alpha * v`). "
        "409 when epoch `epoch + 1` has already been served (frozen): nothing is changed, "
        "so no update is lost silently. 422 when the update, or the weights it would leave, "
        "are invalid (not finite, negative, all zero): nothing is stored. The body is JSON, "
        "or (faster for large updates) `application/octet-stream`: n little-endian int64 "
        "indices then n float64 values, with the other fields in the query."
    ),
    responses={
        202: {"content": {"application/json": {"example": examples.RUN_UPDATED}}},
        **_NOT_FOUND,
        409: {
            "model": Problem,
            "description": "The epoch this update would change is frozen, or its `update_id` "
            "names another update already stored.",
        },
        415: {"model": Problem, "description": "Neither JSON nor octet-stream."},
        422: {"model": Problem, "description": "A bad update."},
    },
    openapi_extra={"requestBody": UPDATE_REQUEST_BODY},
)
async def post_update(run_id: RunId, request: Request, runs: RunCatalogDep) -> RunOut:
    # Async to read the raw body; parsed and checked in a worker thread, which does not
    # wait for the commit (NOTE [Answered on the event loop] in run_catalog.py).
    body = await request.body()
    content_type, query = request.headers.get("content-type"), dict(request.query_params)

    def parse() -> tuple[RunUpdate, str | None]:
        return update_from_body(body, content_type, query)

    return run_out(await runs.add_update_async(run_id, parse))


WeightsEpochQuery = Annotated[
    int, Query(ge=0, lt=EPOCH_LIMIT, description="The epoch; reading it freezes its weights.")
]


@router.get(
    "/{run_id}/weights",
    summary="The weights epoch `epoch` of the run draws from (freezes the epoch)",
    description=(
        "float64, one per population position: the plan's weights for epoch 0, then those "
        "the updates of the epochs before made. Reading an epoch freezes it; its weights "
        "are kept for ever (or as long as the service's retention setting keeps them: 410 "
        "after). At most `max_page` values per response."
    ),
    responses={
        **array_responses("The weights", "<f8", examples.RUN_WEIGHTS, RunWeightsOut),
        **_NOT_FOUND,
        **_PRUNED,
        409: {"model": Problem, "description": _NOT_REACHED},
        422: {"model": Problem, "description": "More weights than `max_page`."},
    },
)
def get_run_weights(
    run_id: RunId,
    runs: RunCatalogDep,
    media_type: ArrayMediaType,
    epoch: WeightsEpochQuery = 0,
) -> Response:
    plan, weights = runs.weights(run_id, epoch)
    return array_response(
        media_type,
        weights,
        meta={
            "run_id": run_id,
            "plan_id": plan.id,
            "epoch": epoch,
            "length": int(weights.shape[0]),
        },
        key="weights",
    )


@router.get(
    "/{run_id}/indices",
    summary="A page of a rank's index stream of the run for an epoch (freezes the epoch)",
    description=(
        "Exactly the plan's stream definition (WeightedRandomSampler for algorithm `torch`, "
        "sharded as DistributedSampler, paged) drawn from the run's weights of the epoch."
    ),
    responses={
        **array_responses("The page of indices", "<i8", examples.RUN_INDICES, RunIndicesOut),
        **_NOT_FOUND,
        **_PRUNED,
        409: {"model": Problem, "description": _NOT_REACHED},
        422: {"model": Problem, "description": "Bad epoch, rank, world size or page."},
    },
)
async def get_run_indices(
    run_id: RunId,
    runs: RunCatalogDep,
    media_type: ArrayMediaType,
    request: Request,
    query: StreamQueryParams,
) -> Response:
    stream_request = query.to_request()
    head_only = request.method == "HEAD"

    def fetch() -> Response:
        plan, num_samples, indices = runs.indices(run_id, stream_request)
        ids = {"run_id": run_id, "plan_id": plan.id}
        return stream_page_response(
            media_type, indices, stream_request, num_samples, head_only, ids=ids
        )

    # A run's epoch is many ranks' too: page threads and single flight as for a plan's
    # (NOTE [Page threads], NOTE [Held while in flight]).
    with runs.epoch_in_flight(run_id, stream_request.epoch):
        return await run_page_work(request.scope, fetch)


class RunPagesAtHand:
    """:func:`get_run_indices` at the floor (NOTE [Serving at the floor] in
    ``service/api/floor.py``, NOTE [Run pages at the floor] in ``run_catalog.py``): the
    page's raw headers and body when the run's epoch is at hand, else ``None``.

    :attr:`runs` is the app's run catalog while the app runs (its lifespan sets it). A
    :class:`~sampleplan.core.errors.SamplingError` (a 406 among them) sends the request
    down the stack, to the route.
    """

    def __init__(self) -> None:
        self.runs: RunCatalog | None = None

    def __call__(
        self, catalog: Catalog, scope: Scope, accept: bytes | None, parameters: dict[str, Any]
    ) -> tuple[list[tuple[bytes, bytes]], bytes] | None:
        runs = self.runs
        if runs is None:
            return None
        media_type = negotiated(accept)
        run_id = parameters.pop("run_id")
        at_hand = runs.page_at_floor(run_id, parameters, binary=media_type != JSON)
        if at_hand is None:
            return None
        plan, indices, numbers, size, stream_length = at_hand
        return stream_page_at_floor(
            media_type,
            indices,
            numbers,
            size,
            parameters,
            stream_length,
            scope["method"] == "HEAD",
            RUN_OPENINGS,
            (run_id, plan.id),
        )


# HEAD like the plans' /indices (GET's headers, no body; kept out of the schema), which
# the handler above was written for: a client sizes a run's page the same way.
router.add_api_route(
    "/{run_id}/indices", get_run_indices, methods=["HEAD"], include_in_schema=False
)

# A binary update carries its fields in the query (read by update_from_body).
reads_query(f"{router.prefix}/{{run_id}}/updates", RunUpdateMeta.model_fields)

#: Paths answering HEAD, documented by sampleplan.service.api.openapi.head_operations.
HEAD_PATHS = (f"{router.prefix}/{{run_id}}/indices",)
