"""``/v1/plans``: create plans, read them, their weights and their index streams."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request, Response, status
from fastapi.responses import HTMLResponse
from starlette.datastructures import Headers
from starlette.types import Scope

from sampleplan.core.epochs import EPOCH_LIMIT
from sampleplan.core.labelsets import labels_or_label_sets
from sampleplan.core.mixtures import summarize_mixture
from sampleplan.core.stats import expected_shares_by_epoch, summarize_stream
from sampleplan.core.streams import Int64Array, StreamRequest
from sampleplan.service.api import examples
from sampleplan.service.api.arrays import (
    JSON,
    ArrayMediaType,
    array_response,
    array_responses,
    negotiate,
    negotiated,
)
from sampleplan.service.api.deps import JSON_BODY, CatalogDep
from sampleplan.service.api.page_threads import run_page_work
from sampleplan.service.api.report import (
    MAX_SCHEDULE_LINES,
    REPORT_CSP,
    SCHEDULE_EPOCHS,
    ScheduleShares,
    render_mixture_report,
    render_report,
)
from sampleplan.service.api.schemas import (
    ClassesOut,
    IndicesOut,
    MixturePlanOut,
    PlanCreate,
    PlanOut,
    Problem,
    StreamSummaryOut,
    WeightsOut,
)
from sampleplan.service.api.streams import (
    PLAN_OPENINGS,
    StreamQuery,
    StreamQueryParams,
    StreamSummaryQueryParams,
    stream_page_at_floor,
    stream_page_response,
)
from sampleplan.service.api.views import (
    MAX_CLASSES_PAGE,
    classes_out,
    flagged_classes,
    mixture_plan_out,
    plan_out,
)
from sampleplan.service.catalog import Catalog, Plan
from sampleplan.service.errors import InvalidStreamRequest
from sampleplan.service.mixture_plans import MixturePlan

router = APIRouter(prefix="/v1/plans", tags=["plans"])

WeightsEpochQuery = Annotated[
    int,
    Query(
        ge=0,
        lt=EPOCH_LIMIT,
        description="Epoch whose weights to describe; they differ by epoch only with a schedule.",
    ),
]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No plan has this id."}
}

PlanId = Annotated[
    str, Path(description="The plan's id.", openapi_examples=examples.PLAN_ID_EXAMPLES)
]


@router.post(
    "",
    response_model=PlanOut | MixturePlanOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a sampling plan",
    dependencies=[JSON_BODY],
    description=(
        "A plan is a dataset (by `dataset_id`, or inline `labels`) plus how to weight and draw "
        "from it. Its id is the hash of the dataset id and the canonical config: creating the "
        "same plan again answers 200 with the same id. The answer carries the class table "
        "(counts, weights, expected shares, draws and coverage per epoch) and the plan's "
        "reproducibility manifest (`versions`). A mixture (`sources`) is one stream over "
        "several datasets or plans, its indices ConcatDataset positions; its answer "
        "(`kind: mixture`) lists each source's requested and realised share."
    ),
    responses={
        201: {
            "description": "The plan was created.",
            "content": {"application/json": {"example": examples.PLAN}},
        },
        200: {
            "model": PlanOut | MixturePlanOut,
            "description": "The plan existed already.",
            "content": {"application/json": {"example": examples.PLAN}},
        },
        404: {
            "model": Problem,
            "description": "No dataset has this `dataset_id` (or a source's), or no plan a "
            "source's `plan_id`.",
        },
        413: {"model": Problem, "description": "More inline labels than the service takes."},
        422: {
            "model": Problem,
            "description": "The config or the labels are invalid, including rules between "
            "fields no schema states: `beta` only with `effective_number`, `class_weights` "
            "naming the dataset's classes, `weights` one per sample, split fractions adding "
            "up to 1 (lengths to the dataset size, at least two parts), `num_samples` without "
            "replacement at most the samples of positive weight, `hierarchical` with "
            "replacement, weights summing to a finite positive number; for a mixture: "
            "unique source names, "
            "weights finite, >= 0 and not all 0 (hf-interleave: summing to 1), options of the "
            "chosen algorithm only, `unit: tokens` only over datasets with token lengths, no "
            "`num_samples` with hf-interleave.",
        },
    },
)
def create_plan(
    body: Annotated[
        PlanCreate,
        Body(
            openapi_examples={
                "labels": examples.openapi_example(
                    "Inline labels, 70/30 split", examples.PLAN_CREATE, "Creates the example plan."
                ),
                "dataset": examples.openapi_example(
                    "A stored dataset, effective number weights",
                    {
                        "dataset_id": examples.DATASET_ID,
                        "strategy": "effective_number",
                        "beta": 0.9,
                    },
                    "Needs the example dataset (POST /v1/datasets first).",
                ),
                "batches": examples.openapi_example(
                    "Inline labels, balanced batches",
                    examples.BATCH_PLAN_CREATE,
                    "A batch plan: every batch holds 2 cats, 1 dog and 1 emu "
                    "(GET /v1/plans/{plan_id}/batches).",
                ),
                "mixture": examples.openapi_example(
                    "A mixture of two datasets",
                    examples.MIXTURE_PLAN_CREATE,
                    "Needs the example dataset (POST /v1/datasets first), twice; indices are "
                    "ConcatDataset positions.",
                ),
            }
        ),
    ],
    catalog: CatalogDep,
    response: Response,
) -> PlanOut | MixturePlanOut:
    if body.sources is not None:
        mixture, created = catalog.create_mixture_plan(
            body.sources_json(),
            body.mixing.to_json() if body.mixing is not None else None,
            body.num_samples,
            body.seed,
        )
        if not created:
            response.status_code = status.HTTP_200_OK
        return mixture_plan_out(mixture, catalog.mixture_shares(mixture))
    config = body.to_config()
    labels = labels_or_label_sets(body.labels) if body.labels is not None else None
    plan, created = catalog.create_plan(config, dataset_id=body.dataset_id, labels=labels)
    if not created:
        response.status_code = status.HTTP_200_OK
    return summarised_plan_out(catalog, plan)


@router.get(
    "/{plan_id}",
    response_model=PlanOut | MixturePlanOut,
    summary="A plan: config, class table, coverage and versions",
    description=(
        "The plan's canonical config and, per class: its count, the weight of each of its samples, "
        "its share of the data before balancing and of the draws after, its expected draws per "
        "epoch, the expected fraction of its samples seen in one epoch and the mean repeats per "
        "drawn sample; overall, the expected number of distinct samples per epoch "
        "(`epoch_coverage`). `versions` is the reproducibility manifest. A mixture plan "
        "(`kind: mixture`) answers its sources and their shares of epoch `epoch` instead."
    ),
    responses={200: {"content": {"application/json": {"example": examples.PLAN}}}, **_NOT_FOUND},
)
def get_plan(
    plan_id: PlanId, catalog: CatalogDep, epoch: WeightsEpochQuery = 0
) -> PlanOut | MixturePlanOut:
    plan = catalog.get_any_plan(plan_id)
    if isinstance(plan, MixturePlan):
        return mixture_plan_out(plan, catalog.mixture_shares(plan, epoch), epoch)
    return summarised_plan_out(catalog, plan, epoch)


def summarised_plan_out(catalog: Catalog, plan: Plan, epoch: int = 0) -> PlanOut:
    """:func:`plan_out` with the class table cut to ``plan_classes_inline`` rows."""
    stats = catalog.statistics(plan, epoch)
    return plan_out(plan, epoch, stats=stats, inline=catalog.settings.plan_classes_inline)


@router.get(
    "/{plan_id}/classes",
    response_model=ClassesOut,
    summary="A page of a plan's class table",
    description=(
        "Rows `offset .. offset + limit - 1` of the plan's class table (classes in canonical "
        "order; the rows of `GET /v1/plans/{plan_id}`), with the number of classes (`total`) "
        "and the path of the next page (`next`, null after the last). A plan of more classes "
        "than the service lists inline (`plan_classes_inline`) answers only the first of "
        "them; this pages through all of them, each page in time proportional to its rows. "
        f"At most {MAX_CLASSES_PAGE:,} rows per page."
    ),
    responses={
        200: {"content": {"application/json": {"example": examples.CLASSES}}},
        **_NOT_FOUND,
    },
)
def get_classes(
    plan_id: PlanId,
    catalog: CatalogDep,
    epoch: WeightsEpochQuery = 0,
    offset: Annotated[int, Query(ge=0, lt=2**63, description="Position of the first row.")] = 0,
    limit: Annotated[
        int, Query(ge=1, le=MAX_CLASSES_PAGE, description="Rows in the page.")
    ] = 1_000,
) -> ClassesOut:
    plan = catalog.get_plan(plan_id)
    return classes_out(plan, epoch, catalog.statistics(plan, epoch), offset, limit)


@router.get(
    "/{plan_id}/weights",
    summary="Per-sample weights of the plan's population",
    description=(
        "float64 weights, one per population position (the training part when split), of "
        "epoch `epoch` (a plan with a schedule has different weights each epoch). "
        "At most `max_page` values per response (422 beyond)."
    ),
    responses={
        **array_responses("The weights", "<f8", examples.WEIGHTS, WeightsOut),
        **_NOT_FOUND,
        422: {"model": Problem, "description": "More weights than `max_page`."},
    },
)
def get_weights(
    plan_id: PlanId,
    catalog: CatalogDep,
    media_type: ArrayMediaType,
    request: Request,
    epoch: WeightsEpochQuery = 0,
) -> Response:
    plan = catalog.get_plan(plan_id)
    weights = catalog.weights(plan, epoch)
    return array_response(
        media_type,
        weights,
        meta={"plan_id": plan.id, "epoch": epoch, "length": int(weights.shape[0])},
        key="weights",
        head_only=request.method == "HEAD",
    )


@router.get(
    "/{plan_id}/indices",
    summary="A page of a rank's index stream for an epoch",
    description=(
        "The epoch's stream equals `list(WeightedRandomSampler(weights, num_samples, replacement, "
        "generator=torch.Generator().manual_seed(seed + epoch)))` (algorithm `torch`), sharded as "
        "`DistributedSampler(drop_last=False)` shards it, then cut to `[offset, offset + limit)`. "
        "`space=dataset` maps population positions back to dataset indices. At most `max_page` "
        "indices per response (422 beyond): page with `offset` and `limit`. Every format also "
        "carries `X-Sampleplan-Stream-Length` (the length of the rank's whole stream, `length` in "
        "JSON) and `X-Sampleplan-Offset`. `start`, `pad` and `drop_last` deal the rest of the "
        "epoch from a global position (elastic resume) and pad, keep or drop its ragged tail "
        "(`pad=false`: the ranks' union is the epoch exactly once)."
    ),
    responses={
        **array_responses("The page of indices", "<i8", examples.INDICES, IndicesOut),
        **_NOT_FOUND,
        422: {
            "model": Problem,
            "description": "`rank` is not below `world_size` (a rule between two parameters "
            "that no schema states), `start` past the epoch, a page over `max_page`, or a "
            "stream over `max_num_samples`.",
        },
    },
)
async def get_indices(
    plan_id: PlanId,
    catalog: CatalogDep,
    media_type: ArrayMediaType,
    request: Request,
    query: StreamQueryParams,
) -> Response:
    stream_request = query.to_request()
    head_only = request.method == "HEAD"
    return await serve_indices(
        request.scope, catalog, media_type, plan_id, stream_request, head_only
    )


async def serve_indices(
    scope: Scope,
    catalog: Catalog,
    media_type: str,
    plan_id: str,
    request: StreamRequest,
    head_only: bool,
) -> Response:
    """What :func:`get_indices` answers, once its parameters are read and checked.

    A small page of a cached epoch is a slice: answered here, on the event loop. Anything
    else may read the store or draw, and goes to a page thread (NOTE [Page threads]); the
    request is in flight for the epoch cache from its arrival (NOTE [Held while in flight]).
    """
    at_hand = catalog.page_at_hand(plan_id, request)
    if at_hand is not None:
        found, indices, num_samples = at_hand
        return stream_page_response(
            media_type, indices, request, num_samples, head_only, ids={"plan_id": found.id}
        )

    def fetch() -> Response:
        plan = catalog.get_any_plan(plan_id)
        if isinstance(plan, MixturePlan):
            page = catalog.mixture_indices(plan, request)
            return stream_page_response(
                media_type,
                page,
                request,
                plan.drawer.num_samples_at(request.epoch),
                head_only,
                ids={"plan_id": plan.id},
            )
        indices = catalog.indices(plan, request)
        return _indices_response(media_type, plan, indices, request, head_only)

    with catalog.epoch_in_flight(plan_id, request.epoch):
        return await run_page_work(scope, fetch)


async def fast_indices(scope: Scope, parameters: dict[str, Any]) -> Response:
    """:func:`get_indices` in its fast lane (NOTE [Fast lane] in ``service/api/fastlane.py``).

    ``parameters`` are the route's own, validated as the route validates them; the
    catalog and the media type are found as its dependencies find them. A
    :class:`~sampleplan.core.errors.SamplingError` sends the request to the route, which
    answers it as problem+json.
    """
    catalog: Catalog = scope["app"].state.catalog
    media_type = negotiate(Headers(scope=scope).get("accept"))
    plan_id = parameters.pop("plan_id")
    # Validated against the route's own fields: the request is made as the route makes it.
    request = StreamQuery.request_of(parameters)
    return await serve_indices(scope, catalog, media_type, plan_id, request, head_only=False)


def indices_at_hand(
    catalog: Catalog, scope: Scope, accept: bytes | None, parameters: dict[str, Any]
) -> tuple[list[tuple[bytes, bytes]], bytes] | None:
    """:func:`get_indices` at the floor (NOTE [Serving at the floor] in
    ``service/api/floor.py``): the page's raw headers and body when it is a slice of a
    cached epoch (a plan's or a mixture's, NOTE [Mixture epochs drawn whole] in
    ``catalog.py``), else ``None``.

    As :func:`fast_indices` (and for ``HEAD`` too), with the ``Accept`` header's value; a
    :class:`~sampleplan.core.errors.SamplingError` (a 406 among them) sends the request
    down the stack, to the route.
    """
    media_type = negotiated(accept)
    plan_id = parameters.pop("plan_id")
    at_hand = catalog.page_at_floor(plan_id, parameters, binary=media_type != JSON)
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
        PLAN_OPENINGS,
        (plan.id,),
    )


def _indices_response(
    media_type: str, plan: Plan, indices: Int64Array, request: StreamRequest, head_only: bool
) -> Response:
    num_samples = plan.prepared.at_epoch(request.epoch).num_samples
    return stream_page_response(
        media_type, indices, request, num_samples, head_only, ids={"plan_id": plan.id}
    )


# HEAD answers with GET's headers and no body (with Content-Length for binary types), so
# a client can size a download first. Kept out of the schema, which would otherwise list
# each operation twice under one operation id.
for _path, _endpoint in (("/{plan_id}/weights", get_weights), ("/{plan_id}/indices", get_indices)):
    router.add_api_route(_path, _endpoint, methods=["HEAD"], include_in_schema=False)

#: Paths answering HEAD, documented by sampleplan.service.api.openapi.head_operations.
HEAD_PATHS = (f"{router.prefix}/{{plan_id}}/weights", f"{router.prefix}/{{plan_id}}/indices")


@router.get(
    "/{plan_id}/indices/summary",
    response_model=StreamSummaryOut,
    summary="What one (epoch, rank) stream holds: class counts and SHA-256",
    description=(
        "Draws the rank's whole stream for the epoch (as `/indices` would serve it) and answers "
        "with the draws of each class and the stream's SHA-256 (of its little-endian int64 "
        "indices in `space`), so anyone can check the stream they trained on without "
        "downloading it: `hashlib.sha256(np.asarray(list(sampler), dtype='<i8').tobytes())`."
    ),
    responses={
        200: {"content": {"application/json": {"example": examples.STREAM_SUMMARY}}},
        **_NOT_FOUND,
        422: {
            "model": Problem,
            "description": "`rank` is not below `world_size` (a rule between two parameters "
            "that no schema states), `start` past the epoch, or a stream longer than "
            "SAMPLEPLAN_MAX_NUM_SAMPLES.",
        },
    },
)
def get_indices_summary(
    plan_id: PlanId,
    catalog: CatalogDep,
    query: StreamSummaryQueryParams,
) -> StreamSummaryOut:
    request = query.to_request()
    found = catalog.get_any_plan(plan_id)
    if isinstance(found, MixturePlan):
        return _mixture_summary(catalog, found, request)
    plan = found
    _check_summary_length(
        catalog, request.length(plan.prepared.at_epoch(request.epoch).num_samples)
    )
    summary = summarize_stream(plan.prepared, request)
    return StreamSummaryOut(
        plan_id=plan.id,
        epoch=request.epoch,
        rank=request.rank,
        world_size=request.world_size,
        space=request.space,
        length=summary.length,
        classes=plan.classes,
        counts=summary.class_counts.tolist(),
        sha256=summary.sha256,
        versions=plan.versions,
    )


def _check_summary_length(catalog: Catalog, length: int) -> None:
    if length > catalog.settings.max_num_samples:
        raise InvalidStreamRequest(
            f"the stream has {length} draws; this service summarises at most "
            f"{catalog.settings.max_num_samples} (SAMPLEPLAN_MAX_NUM_SAMPLES) in one request"
        )


def _mixture_summary(
    catalog: Catalog, plan: MixturePlan, request: StreamRequest
) -> StreamSummaryOut:
    """A mixture's summary: draws (and tokens) per source, the SHA-256 of the stream."""
    _check_summary_length(catalog, request.length(plan.drawer.num_samples_at(request.epoch)))
    summary = summarize_mixture(plan.drawer, request)
    return StreamSummaryOut(
        plan_id=plan.id,
        epoch=request.epoch,
        rank=request.rank,
        world_size=request.world_size,
        space=request.space,
        length=summary.length,
        classes=[s.name for s in plan.mixture.sources],
        counts=summary.source_counts.tolist(),
        sha256=summary.sha256,
        versions=plan.versions,
        tokens=None if summary.source_tokens is None else summary.source_tokens.tolist(),
    )


@router.get(
    "/{plan_id}/report",
    response_class=HTMLResponse,
    summary="An HTML report: class shares before and after balancing",
    description=(
        "A self-contained HTML page (no JavaScript, no external assets) with the class table, "
        "a chart of each class's share of the data before balancing and of the draws after, "
        "the expected coverage per epoch with a warning when minority samples are repeated many "
        "times per epoch, and the plan's reproducibility manifest. Open it in a browser."
    ),
    responses={
        200: {"content": {"text/html": {"example": examples.REPORT_HTML}}},
        **_NOT_FOUND,
    },
)
def get_report(
    plan_id: PlanId,
    catalog: CatalogDep,
) -> HTMLResponse:
    found = catalog.get_any_plan(plan_id)
    if isinstance(found, MixturePlan):
        answer = mixture_plan_out(found, catalog.mixture_shares(found))
        return HTMLResponse(
            render_mixture_report(answer), headers={"Content-Security-Policy": REPORT_CSP}
        )
    plan = found
    shares = None
    if plan.prepared.config.schedule is not None:
        by_epoch, peak = expected_shares_by_epoch(
            plan.prepared, SCHEDULE_EPOCHS, MAX_SCHEDULE_LINES
        )
        shares = ScheduleShares(plan.classes[:MAX_SCHEDULE_LINES], by_epoch, peak)
    stats = catalog.statistics(plan)
    html = render_report(
        summarised_plan_out(catalog, plan), shares, flagged=flagged_classes(plan, stats)
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": REPORT_CSP})
