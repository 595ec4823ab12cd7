"""What each endpoint sends and how its answer is read, shared by both clients.

Every function here returns a :class:`Call`: the request to send and the function that
turns the successful response into the method's result. :class:`~client.SamplePlanClient`
and :class:`~client.AsyncSamplePlanClient` differ only in how they send a call (and
retry it), so the two can never disagree about a path, a parameter or a parse.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import numpy as np
import numpy.typing as npt

from sampleplan.client import _tables as tables
from sampleplan.client._arrays import BINARY, ArrayRead, binary_labels, manifest_media_type
from sampleplan.client._folders import ImageFolderTargets
from sampleplan.client._models import ClassPage, Dataset, Plan, Run
from sampleplan.core.runs import UpdateOp
from sampleplan.core.streams import StreamRequest

T_co = TypeVar("T_co", covariant=True)

LabelsLike = Sequence[int] | Sequence[str] | npt.NDArray[Any] | Any


@dataclass(frozen=True)
class Call(Generic[T_co]):
    """One request of the API and how to read its successful answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T_co]
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Set for array endpoints: a successful body is streamed into an array by it.
    array: ArrayRead | None = None

    @property
    def name(self) -> str:
        """``"GET /v1/plans/<id>/indices"``, for error messages."""
        return f"{self.method} {self.path}"

    @property
    def short_name(self) -> str:
        """:attr:`name` with long ids cut to 8 characters, for a progress bar's label."""
        segments = [s if len(s) <= 16 else s[:8] + "…" for s in self.path.split("/")]
        return f"{self.method} {'/'.join(segments)}"


def labels_to_json(labels: LabelsLike) -> list[Any]:
    """Labels as a JSON list: lists, numpy arrays, torch tensors, pyarrow and pandas labels."""
    if hasattr(labels, "to_pylist"):  # pyarrow: nulls stay None (the service refuses them)
        values = labels.to_pylist()
    else:
        values = labels.tolist() if hasattr(labels, "tolist") else list(labels)
    if not isinstance(values, list):
        raise TypeError(f"labels must be a 1-d sequence, got {type(labels).__name__}")
    return values


def plan_body(
    dataset_id: str | None, labels: LabelsLike | None, config: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/plans`` (and ``POST /v1/sample``)."""
    body: dict[str, Any] = {}
    if dataset_id is not None:
        body["dataset_id"] = dataset_id
    if labels is not None:
        body["labels"] = labels_to_json(labels)
    for key, value in config.items():
        if key == "weights" and value is not None:
            # float64 end to end: a float32 detour would change the weights, hence the plan.
            value = np.asarray(value, dtype=np.float64).tolist()
        body[key] = value
    return body


def _segment(value: str) -> str:
    """A path segment: ids are hex, but a stray ``/`` or ``?`` must not change the route."""
    return quote(str(value), safe="")


def _dataset(response: httpx.Response) -> Dataset:
    return Dataset.from_json(response.json())


def create_dataset(
    labels: LabelsLike, *, binary: bool = True, lengths: npt.ArrayLike | None = None
) -> Call[Dataset]:
    """The cheapest form the service reads (see ``client/_tables.py``); JSON if not ``binary``.

    Integer labels go as raw little-endian bytes; pyarrow and pandas labels that are not
    plain integers as a one-column Arrow IPC stream; the rest as JSON. With ``lengths``
    (per-sample token counts), an Arrow IPC stream of two columns, ``label`` and ``length``.
    """
    if lengths is not None:
        import pyarrow as pa

        values = np.asarray(lengths)
        if values.ndim != 1 or values.dtype.kind not in "iu":
            raise ValueError(
                f"lengths should be one integer per sample, got a {values.dtype} array of "
                f"shape {values.shape}"
            )
        column = tables.to_arrow(labels)
        if column is None:
            column = pa.array(labels_to_json(labels))
        return Call(
            "POST",
            "/v1/datasets",
            _dataset,
            params={"label_column": "label", "length_column": "length"},
            content=tables.arrow_stream(column, values.astype(np.int64)),
            headers={"Content-Type": tables.ARROW_STREAM},
        )
    column = tables.to_arrow(labels) if binary else None
    if column is not None:
        chunks = tables.integer_chunks(column)
        if chunks is None:
            return Call(
                "POST",
                "/v1/datasets",
                _dataset,
                params={"label_column": "label"},
                content=tables.arrow_stream(column),
                headers={"Content-Type": tables.ARROW_STREAM},
            )
        labels = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    encoded = binary_labels(labels) if binary else None
    if encoded is None:
        return Call("POST", "/v1/datasets", _dataset, json={"labels": labels_to_json(labels)})
    data, dtype = encoded
    return Call(
        "POST",
        "/v1/datasets",
        _dataset,
        params={"dtype": dtype},
        content=data,
        headers={"Content-Type": BINARY},
    )


def create_dataset_from_file(
    path: Path,
    *,
    media_type: str | None,
    label_column: str,
    dtype: str,
    label_separator: str | None = None,
) -> Call[Dataset]:
    """Parquet and Arrow files: only the label column, read here, is sent."""
    if media_type is None and path.suffix.lower() in tables.TABLE_SUFFIXES:
        return create_dataset(tables.read_column(path, label_column))
    params = {"label_column": label_column, "dtype": dtype}
    if label_separator is not None:
        params["label_separator"] = label_separator
    return Call(
        "POST",
        "/v1/datasets",
        _dataset,
        params=params,
        content=path.read_bytes(),
        headers={"Content-Type": media_type or manifest_media_type(path)},
    )


def create_dataset_from_folder(targets: ImageFolderTargets) -> Call[Dataset]:
    """A folder's samples uploaded as a path list, in ImageFolder's order."""
    try:
        body = targets.manifest().encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"a file name under {targets.root!r} is not valid UTF-8 and cannot be uploaded "
            f"as a path list; upload the targets instead (create_dataset(targets.targets))"
        ) from exc
    return Call(
        "POST",
        "/v1/datasets",
        _dataset,
        content=body,
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )


def get_dataset(dataset_id: str) -> Call[Dataset]:
    return Call("GET", f"/v1/datasets/{_segment(dataset_id)}", _dataset)


def create_plan(
    dataset_id: str | None, labels: LabelsLike | None, config: Mapping[str, Any]
) -> Call[Plan]:
    return Call(
        "POST",
        "/v1/plans",
        lambda r: Plan.from_json(r.json()),
        json=plan_body(dataset_id, labels, config),
    )


def get_plan(plan_id: str, epoch: int | None = None) -> Call[Plan]:
    params = None if epoch is None else {"epoch": epoch}
    return Call(
        "GET", f"/v1/plans/{_segment(plan_id)}", lambda r: Plan.from_json(r.json()), params=params
    )


def classes(plan_id: str, offset: int, limit: int, epoch: int | None = None) -> Call[ClassPage]:
    params: dict[str, Any] = {"offset": offset, "limit": limit}
    if epoch is not None:
        params["epoch"] = epoch
    return Call(
        "GET",
        f"/v1/plans/{_segment(plan_id)}/classes",
        lambda r: ClassPage.from_json(r.json()),
        params=params,
    )


#: Rows per page when a client reads a whole class table (the service's largest page).
CLASS_PAGE_ROWS = 10_000


_WEIGHTS = ArrayRead(np.dtype(np.float64), "weights")
_CODES = ArrayRead(np.dtype(np.int64), "codes")
_OFFSETS = ArrayRead(np.dtype(np.int64), "offsets")
_LENGTHS = ArrayRead(np.dtype(np.int64), "lengths")
_INDICES = ArrayRead(np.dtype(np.int64), "indices")
# identity: no decoder between the socket and the array (NOTE [Reading speed]).
_BINARY_HEADERS = {"Accept": BINARY, "Accept-Encoding": "identity"}


def _array_call(
    path: str, read: ArrayRead, binary: bool, params: Mapping[str, Any] | None = None
) -> Call[Any]:
    """An array endpoint: streamed into an array when ``binary``, else parsed from JSON."""
    if binary:
        return Call("GET", path, read.read, params=params, headers=_BINARY_HEADERS, array=read)
    return Call(
        "GET", path, lambda r: np.asarray(r.json()[read.key], dtype=read.dtype), params=params
    )


def weights(
    plan_id: str, *, epoch: int | None = None, binary: bool = True
) -> Call[npt.NDArray[np.float64]]:
    params = None if epoch is None else {"epoch": epoch}
    return _array_call(f"/v1/plans/{_segment(plan_id)}/weights", _WEIGHTS, binary, params)


def codes(dataset_id: str, *, binary: bool = True) -> Call[npt.NDArray[np.int64]]:
    return _array_call(f"/v1/datasets/{_segment(dataset_id)}/codes", _CODES, binary)


def offsets(dataset_id: str, *, binary: bool = True) -> Call[npt.NDArray[np.int64]]:
    return _array_call(f"/v1/datasets/{_segment(dataset_id)}/offsets", _OFFSETS, binary)


def lengths(dataset_id: str, *, binary: bool = True) -> Call[npt.NDArray[np.int64]]:
    return _array_call(f"/v1/datasets/{_segment(dataset_id)}/lengths", _LENGTHS, binary)


def indices(
    plan_id: str, request: StreamRequest, *, binary: bool = True
) -> Call[npt.NDArray[np.int64]]:
    return _array_call(
        f"/v1/plans/{_segment(plan_id)}/indices", _INDICES, binary, request.to_query()
    )


def _run(response: httpx.Response) -> Run:
    return Run.from_json(response.json())


def create_run(run_id: str, plan_id: str) -> Call[Run]:
    return Call("PUT", f"/v1/runs/{_segment(run_id)}", _run, json={"plan_id": plan_id})


def get_run(run_id: str) -> Call[Run]:
    return Call("GET", f"/v1/runs/{_segment(run_id)}", _run)


def delete_run(run_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/runs/{_segment(run_id)}", lambda _: None)


def update_weights(
    run_id: str,
    indices: npt.ArrayLike,
    values: npt.ArrayLike,
    *,
    epoch: int,
    rank: int,
    step: int,
    op: UpdateOp,
    alpha: float | None,
) -> Call[Run]:
    idx = np.ascontiguousarray(np.asarray(indices, dtype=np.int64).reshape(-1), dtype="<i8")
    # float64 end to end: the weights an epoch draws from are exact.
    val = np.ascontiguousarray(np.asarray(values, dtype=np.float64).reshape(-1), dtype="<f8")
    if idx.shape != val.shape:
        raise ValueError(
            f"indices and values should have the same length, but got {idx.shape[0]} "
            f"and {val.shape[0]}"
        )
    params: dict[str, Any] = {
        "epoch": epoch,
        "rank": rank,
        "step": step,
        "op": op,
        # Retries resend this very request: the service applies an update id once.
        "update_id": uuid.uuid4().hex,
    }
    if alpha is not None:
        params["alpha"] = repr(float(alpha))
    return Call(
        "POST",
        f"/v1/runs/{_segment(run_id)}/updates",
        _run,
        params=params,
        content=idx.tobytes() + val.tobytes(),
        headers={"Content-Type": BINARY},
    )


def run_weights(run_id: str, *, epoch: int, binary: bool = True) -> Call[npt.NDArray[np.float64]]:
    return _array_call(f"/v1/runs/{_segment(run_id)}/weights", _WEIGHTS, binary, {"epoch": epoch})


def run_indices(
    run_id: str, request: StreamRequest, *, binary: bool = True
) -> Call[npt.NDArray[np.int64]]:
    return _array_call(f"/v1/runs/{_segment(run_id)}/indices", _INDICES, binary, request.to_query())


class _BatchRead(ArrayRead):
    """A page of batches: the values, shaped ``(rows, batch_size)`` by ``X-Sampleplan-Shape``."""

    def read(self, response: httpx.Response) -> npt.NDArray[Any]:
        return _as_rows(super().read(response), response)

    async def aread(self, response: httpx.Response) -> npt.NDArray[Any]:
        return _as_rows(await super().aread(response), response)


def _as_rows(values: npt.NDArray[Any], response: httpx.Response) -> npt.NDArray[Any]:
    rows, _, columns = response.headers.get("x-sampleplan-shape", "").partition(",")
    if not (rows.isdigit() and columns.isdigit()):
        raise httpx.RemoteProtocolError("a page of batches came without X-Sampleplan-Shape")
    return values.reshape(int(rows), int(columns))


_BATCHES = _BatchRead(np.dtype(np.int64), "batches")


def batches(
    plan_id: str, request: StreamRequest, *, binary: bool = True
) -> Call[npt.NDArray[np.int64]]:
    """A page of batches: ``request``'s offset and limit count batches."""
    params = request.to_query()
    path = f"/v1/plans/{_segment(plan_id)}/batches"
    if binary:
        return Call(
            "GET", path, _BATCHES.read, params=params, headers=_BINARY_HEADERS, array=_BATCHES
        )
    return Call(
        "GET",
        path,
        lambda r: _as_rows(np.asarray(r.json()["batches"], dtype=np.int64), r),
        params=params,
    )


def batches_summary(plan_id: str, request: StreamRequest) -> Call[dict[str, Any]]:
    """A rank's batches summarised: ``request``'s page is not part of the question."""
    params = request.to_query(page=False)
    return Call("GET", f"/v1/plans/{_segment(plan_id)}/batches/summary", _json, params=params)


def _json(response: httpx.Response) -> dict[str, Any]:
    result: dict[str, Any] = response.json()
    return result


def _sample_result(response: httpx.Response) -> dict[str, Any]:
    result: dict[str, Any] = response.json()
    return result


def sample(labels: LabelsLike, fields: Mapping[str, Any]) -> Call[dict[str, Any]]:
    return Call("POST", "/v1/sample", _sample_result, json=plan_body(None, labels, fields))


def ready() -> Call[bool]:
    return Call("GET", "/readyz", lambda r: True)
