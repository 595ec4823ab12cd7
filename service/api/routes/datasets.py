"""``/v1/datasets``: upload labels, read their classes and counts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Response, status

from service.api import examples
from service.api.deps import CatalogDep
from service.api.schemas import DatasetCreate, DatasetOut, Problem
from service.api.views import dataset_out
from service.core.labels import labels_from_list

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    413: {"model": Problem, "description": "More labels than the service takes."},
    422: {"model": Problem, "description": "The labels are empty, mixed, floats, or not a list."},
}


@router.post(
    "",
    response_model=DatasetOut,
    status_code=status.HTTP_201_CREATED,
    summary="Upload a dataset's labels",
    description=(
        "Stores the labels in sample order, named by the SHA-256 of their canonical content. "
        "201 the first time, 200 when the same labels were uploaded before."
    ),
    responses={
        201: {
            "description": "The dataset was created.",
            "content": {"application/json": {"example": examples.DATASET}},
        },
        200: {
            "model": DatasetOut,
            "description": "The dataset existed already.",
            "content": {"application/json": {"example": examples.DATASET}},
        },
        **_PROBLEMS,
    },
)
def create_dataset(
    body: Annotated[
        DatasetCreate,
        Body(
            openapi_examples={
                "labels": examples.openapi_example("String labels", examples.DATASET_CREATE),
                "ints": examples.openapi_example(
                    "Integer labels", {"labels": [0, 0, 0, 0, 1, 1, 2]}
                ),
            }
        ),
    ],
    catalog: CatalogDep,
    response: Response,
) -> DatasetOut:
    labels = labels_from_list(body.labels)
    info, created = catalog.create_dataset(labels)
    if not created:
        response.status_code = status.HTTP_200_OK
    return dataset_out(info)


@router.get(
    "/{dataset_id}",
    response_model=DatasetOut,
    summary="A dataset's size, classes and class counts",
    description=(
        "Classes in canonical order (sorted, as ImageFolder sorts class folders) and their counts."
    ),
    responses={
        200: {"content": {"application/json": {"example": examples.DATASET}}},
        404: {"model": Problem, "description": "No dataset has this id."},
    },
)
def get_dataset(
    dataset_id: Annotated[
        str, Path(description="The dataset's id.", openapi_examples=examples.DATASET_ID_EXAMPLES)
    ],
    catalog: CatalogDep,
) -> DatasetOut:
    return dataset_out(catalog.get_dataset(dataset_id))
