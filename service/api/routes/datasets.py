"""``/v1/datasets``: upload labels (JSON, binary arrays or manifests), read their counts."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Path, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from sampleplan.service.api import examples
from sampleplan.service.api.arrays import ArrayMediaType, array_response, array_responses
from sampleplan.service.api.deps import CatalogDep
from sampleplan.service.api.schemas import CodesOut, DatasetOut, LengthsOut, OffsetsOut, Problem
from sampleplan.service.api.uploads import (
    UPLOAD_REQUEST_BODY,
    RawDtype,
    labels_from_table_file,
    labels_from_upload,
    lengths_upload_format,
    spooled_body,
    table_format,
    token_lengths_from_upload,
    upload_description,
)
from sampleplan.service.api.views import dataset_out
from sampleplan.service.errors import InvalidLabels

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The JSON body cannot be parsed."},
    413: {
        "model": Problem,
        "description": "The body is over `max_body_bytes`, or has more labels than `max_labels`.",
    },
    415: {"model": Problem, "description": "A Content-Type (or charset) the service cannot read."},
    422: {
        "model": Problem,
        "description": "The labels are empty, mixed, floats, null, or not a list; a raw "
        "`application/octet-stream` body's length is not a multiple of 4 (`int32`) or 8 "
        "(`int64`); a manifest or table is empty, ragged, misses its label column "
        "(`label_column`; the answer lists its columns), mixes integer and string labels, is "
        "not valid in its charset or is not a Parquet/Arrow file. These rules relate the body "
        "to the parameters and cannot all be stated by the body's schema.",
    },
}


@router.post(
    "",
    response_model=DatasetOut,
    status_code=status.HTTP_201_CREATED,
    summary="Upload a dataset's labels",
    description=upload_description(),
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
    openapi_extra={"requestBody": UPLOAD_REQUEST_BODY},
)
async def create_dataset(
    request: Request,
    catalog: CatalogDep,
    response: Response,
    label_column: Annotated[
        str,
        Query(
            min_length=1,
            description="CSV, Parquet or Arrow column (or JSON Lines key) holding the labels.",
        ),
    ] = "label",
    dtype: Annotated[
        RawDtype,
        Query(description="Element type of an `application/octet-stream` body (little-endian)."),
    ] = "int64",
    label_separator: Annotated[
        str | None,
        Query(
            description="CSV only: split each label cell on this one character into a label "
            "set (an empty cell is a sample with no label)."
        ),
    ] = None,
    length_column: Annotated[
        str | None,
        Query(
            min_length=1,
            description="Parquet, Arrow or CSV column (or JSON Lines key) holding each sample's "
            "token count (integers >= 0, one per label). The lengths are stored with the "
            "labels under an id of their own (labels and lengths together); mixtures with "
            '`"unit": "tokens"` need them.',
        ),
    ] = None,
) -> DatasetOut:
    # Async only to read the raw body; parsing and storing run in the threadpool.
    content_type = request.headers.get("content-type")
    fmt = table_format(content_type)
    lengths_format = lengths_upload_format(content_type) if length_column is not None else None
    lengths = None
    if fmt is not None:
        if label_separator is not None:
            raise InvalidLabels(
                "label_separator applies to text/csv uploads only; a table's list column "
                "holds label sets as they are"
            )
        # Tables can be far larger than their label column: spooled, never held whole.
        async with spooled_body(request) as path:
            labels = await run_in_threadpool(
                labels_from_table_file,
                path,
                fmt,
                label_column=label_column,
                max_labels=catalog.settings.max_labels,
                max_decoded_bytes=catalog.settings.max_body_bytes,
            )
            if length_column is not None and lengths_format is not None:
                lengths = await run_in_threadpool(
                    partial(
                        token_lengths_from_upload,
                        lengths_format,
                        column=length_column,
                        size=labels.size,
                        path=path,
                        max_decoded_bytes=catalog.settings.max_body_bytes,
                    )
                )
    else:
        body = await request.body()
        labels, lengths = await run_in_threadpool(
            labels_from_upload,
            body,
            content_type,
            label_column=label_column,
            dtype=dtype,
            label_separator=label_separator,
        )
        if length_column is not None and lengths_format is not None:
            lengths = await run_in_threadpool(
                partial(
                    token_lengths_from_upload,
                    lengths_format,
                    column=length_column,
                    size=labels.size,
                    body=body,
                )
            )
    info, created = await run_in_threadpool(catalog.create_dataset, labels, lengths)
    if not created:
        response.status_code = status.HTTP_200_OK
    return dataset_out(info)


DatasetId = Annotated[
    str, Path(description="The dataset's id.", openapi_examples=examples.DATASET_ID_EXAMPLES)
]


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
def get_dataset(dataset_id: DatasetId, catalog: CatalogDep) -> DatasetOut:
    return dataset_out(catalog.get_dataset(dataset_id))


@router.get(
    "/{dataset_id}/codes",
    summary="The class of every sample of a dataset",
    description=(
        "int64 class indices, one per sample in sample order, into the dataset's `classes`. "
        "The client caches them to draw `hierarchical` plans offline. At most `max_page` "
        "values per response (422 beyond)."
    ),
    responses={
        **array_responses("The class codes", "<i8", examples.CODES, CodesOut),
        404: {"model": Problem, "description": "No dataset has this id."},
        422: {"model": Problem, "description": "More samples than `max_page`."},
    },
)
def get_codes(
    dataset_id: DatasetId, catalog: CatalogDep, media_type: ArrayMediaType, request: Request
) -> Response:
    return _dataset_array(dataset_id, "codes", catalog.codes(dataset_id), media_type, request)


LabelSetsId = Annotated[
    str,
    Path(description="The dataset's id.", openapi_examples=examples.LABEL_SETS_ID_EXAMPLES),
]


@router.get(
    "/{dataset_id}/offsets",
    summary="Where each sample's labels start, for a label-set dataset",
    description=(
        "int64 CSR offsets, one more than the samples: sample `i`'s labels are "
        "`codes[offsets[i]:offsets[i + 1]]` of `/codes`. 404 for single-label datasets. "
        "At most `max_page` values per response (422 beyond)."
    ),
    responses={
        **array_responses("The offsets", "<i8", examples.OFFSETS, OffsetsOut),
        404: {"model": Problem, "description": "No label-set dataset has this id."},
        422: {"model": Problem, "description": "More samples than `max_page`."},
    },
)
def get_offsets(
    dataset_id: LabelSetsId, catalog: CatalogDep, media_type: ArrayMediaType, request: Request
) -> Response:
    return _dataset_array(dataset_id, "offsets", catalog.offsets(dataset_id), media_type, request)


LengthsId = Annotated[
    str,
    Path(description="The dataset's id.", openapi_examples=examples.LENGTHS_ID_EXAMPLES),
]


@router.get(
    "/{dataset_id}/lengths",
    summary="The token count of every sample of a dataset uploaded with lengths",
    description=(
        "int64 token counts, one per sample in sample order, as uploaded with "
        "`length_column`. 404 for a dataset without lengths. The client reads them to draw "
        '`"unit": "tokens"` mixtures offline. At most `max_page` values per response (422 '
        "beyond)."
    ),
    responses={
        **array_responses("The token counts", "<i8", examples.LENGTHS, LengthsOut),
        404: {"model": Problem, "description": "No dataset with token lengths has this id."},
        422: {"model": Problem, "description": "More samples than `max_page`."},
    },
)
def get_lengths(
    dataset_id: LengthsId, catalog: CatalogDep, media_type: ArrayMediaType, request: Request
) -> Response:
    return _dataset_array(
        dataset_id, "lengths", catalog.token_lengths(dataset_id), media_type, request
    )


# HEAD like the plans' array endpoints: GET's headers, no body, kept out of the schema.
router.add_api_route("/{dataset_id}/codes", get_codes, methods=["HEAD"], include_in_schema=False)
router.add_api_route(
    "/{dataset_id}/offsets", get_offsets, methods=["HEAD"], include_in_schema=False
)
router.add_api_route(
    "/{dataset_id}/lengths", get_lengths, methods=["HEAD"], include_in_schema=False
)

#: Paths answering HEAD, documented by sampleplan.service.api.openapi.head_operations.
HEAD_PATHS = (
    f"{router.prefix}/{{dataset_id}}/codes",
    f"{router.prefix}/{{dataset_id}}/offsets",
    f"{router.prefix}/{{dataset_id}}/lengths",
)


def _dataset_array(
    dataset_id: str, key: str, values: npt.NDArray[np.int64], media_type: str, request: Request
) -> Response:
    """One of a dataset's arrays (``codes``, ``offsets``, ``lengths``), JSON or binary."""
    return array_response(
        media_type,
        values,
        meta={"dataset_id": dataset_id, "length": int(values.shape[0])},
        key=key,
        head_only=request.method == "HEAD",
    )
