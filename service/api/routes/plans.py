"""``/v1/plans``: create plans, read them, their weights and their index streams."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from service.api.arrays import array_json_response
from service.api.deps import CatalogDep
from service.api.schemas import IndicesOut, PlanCreate, PlanOut, Problem, WeightsOut
from service.api.views import plan_out
from service.core.labels import labels_from_list
from service.core.streams import Space, StreamRequest

router = APIRouter(prefix="/v1/plans", tags=["plans"])

_NOT_FOUND = {404: {"model": Problem, "description": "No plan has this id."}}


@router.post(
    "",
    response_model=PlanOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a sampling plan",
    description=(
        "A plan is a dataset (by `dataset_id`, or inline `labels`) plus how to weight and draw "
        "from it. Its id is the hash of the dataset id and the canonical config: creating the "
        "same plan again answers 200 with the same id."
    ),
    responses={
        200: {"model": PlanOut, "description": "The plan existed already."},
        404: {"model": Problem, "description": "No dataset has this `dataset_id`."},
        413: {"model": Problem, "description": "More inline labels than the service takes."},
        422: {"model": Problem, "description": "The config or the labels are invalid."},
    },
)
def create_plan(body: PlanCreate, catalog: CatalogDep, response: Response) -> PlanOut:
    config = body.to_config()
    labels = labels_from_list(body.labels) if body.labels is not None else None
    plan, created = catalog.create_plan(config, dataset_id=body.dataset_id, labels=labels)
    if not created:
        response.status_code = status.HTTP_200_OK
    return plan_out(plan)


@router.get(
    "/{plan_id}",
    response_model=PlanOut,
    summary="A plan: config, class table and versions",
    responses=_NOT_FOUND,
)
def get_plan(plan_id: str, catalog: CatalogDep) -> PlanOut:
    return plan_out(catalog.get_plan(plan_id))


@router.get(
    "/{plan_id}/weights",
    summary="Per-sample weights of the plan's population",
    description="float64 weights, one per population position (the training part when split).",
    responses={
        200: {
            "model": WeightsOut,
            "content": {
                "application/json": {
                    "example": {"plan_id": "…", "length": 3, "weights": [0.25, 0.25, 1.0]}
                }
            },
        },
        **_NOT_FOUND,
    },
)
def get_weights(plan_id: str, catalog: CatalogDep) -> Response:
    plan = catalog.get_plan(plan_id)
    weights = catalog.weights(plan)
    return array_json_response({"plan_id": plan.id, "length": int(weights.shape[0])}, "weights", weights)


@router.get(
    "/{plan_id}/indices",
    summary="A page of a rank's index stream for an epoch",
    description=(
        "The epoch's stream equals `list(WeightedRandomSampler(weights, num_samples, replacement, "
        "generator=torch.Generator().manual_seed(seed + epoch)))` (algorithm `torch`), sharded as "
        "`DistributedSampler(drop_last=False)` shards it, then cut to `[offset, offset + limit)`. "
        "`space=dataset` maps population positions back to dataset indices."
    ),
    responses={
        200: {
            "model": IndicesOut,
            "content": {
                "application/json": {
                    "example": {"plan_id": "…", "epoch": 0, "rank": 0, "world_size": 1, "offset": 0,
                                "length": 5, "space": "population", "indices": [3, 0, 4, 4, 1]}
                }
            }
        },
        **_NOT_FOUND,
        422: {"model": Problem, "description": "Bad epoch, rank, world size or page."},
    },
)
def get_indices(
    plan_id: str,
    catalog: CatalogDep,
    epoch: Annotated[int, Query(ge=0, lt=2**32, description="Epoch; its generator seed is seed + epoch.")] = 0,
    rank: Annotated[int, Query(ge=0, description="This process's rank, in [0, world_size).")] = 0,
    world_size: Annotated[int, Query(ge=1, description="Number of ranks sharing the epoch.")] = 1,
    offset: Annotated[int, Query(ge=0, description="First position of the page in the rank's stream.")] = 0,
    limit: Annotated[int | None, Query(ge=0, description="Page length; default: to the end.")] = None,
    space: Annotated[Space, Query(description="population positions or dataset indices.")] = "population",
) -> Response:
    request = StreamRequest(epoch=epoch, rank=rank, world_size=world_size, offset=offset, limit=limit, space=space)
    plan = catalog.get_plan(plan_id)
    indices = catalog.indices(plan, request)
    meta = {
        "plan_id": plan.id,
        "epoch": epoch,
        "rank": rank,
        "world_size": world_size,
        "offset": offset,
        "length": plan.prepared.rank_length(world_size),
        "space": space,
    }
    return array_json_response(meta, "indices", indices)
