"""``SamplePlanClient``: typed methods for every endpoint of the sampleplan service."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import numpy as np
import numpy.typing as npt

from client._arrays import BINARY, binary_labels, manifest_media_type, read_array
from client._exceptions import (
    APIError,
    BadRequestError,
    NotFoundError,
    SamplePlanError,
    ServerError,
    TimeoutError,
    TransportError,
)
from client._models import Dataset, Plan

__all__ = ["SamplePlanClient"]

T = TypeVar("T")

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_RETRY_AFTER = 60.0

LabelsLike = Sequence[int] | Sequence[str] | npt.NDArray[Any] | Any


def labels_to_json(labels: LabelsLike) -> list[Any]:
    """Labels as a JSON list: accepts lists, numpy arrays and torch tensors."""
    if hasattr(labels, "tolist"):
        values = labels.tolist()
    else:
        values = list(labels)
    if not isinstance(values, list):
        raise TypeError(f"labels must be a 1-d sequence, got {type(labels).__name__}")
    return values


def error_from_response(response: httpx.Response) -> APIError:
    """The :class:`APIError` subclass for an error response (problem+json or not)."""
    try:
        problem = response.json()
        if not isinstance(problem, dict):
            raise ValueError
    except ValueError:
        problem = {"title": response.reason_phrase, "detail": response.text[:500]}
    status = response.status_code
    if status == 404:
        return NotFoundError(status, problem)
    if 400 <= status < 500 and status != 429:
        return BadRequestError(status, problem)
    return ServerError(status, problem)


class _RetryableStatus(Exception):
    """An attempt got a status worth retrying (5xx, 429); carries the response."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _check_status(response: httpx.Response) -> None:
    """Raise for an error status: retryable ones for the retry loop, others as API errors."""
    if response.status_code < 400:
        return
    response.read()
    if response.status_code in _RETRY_STATUSES:
        raise _RetryableStatus(response)
    raise error_from_response(response)


def retry_delay(attempt: int, backoff: float, response: httpx.Response | None) -> float:
    """Exponential backoff with full jitter; a ``Retry-After`` header wins when present."""
    if response is not None:
        header = response.headers.get("retry-after")
        if header is not None:
            try:
                return min(max(float(header), 0.0), _MAX_RETRY_AFTER)
            except ValueError:
                pass
    return random.uniform(0, backoff * (2**attempt))


def plan_body(
    dataset_id: str | None, labels: LabelsLike | None, config: Mapping[str, Any]
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if dataset_id is not None:
        body["dataset_id"] = dataset_id
    if labels is not None:
        body["labels"] = labels_to_json(labels)
    for key, value in config.items():
        if key == "weights" and value is not None:
            value = np.asarray(value, dtype=np.float64).tolist()
        body[key] = value
    return body


def stream_params(
    epoch: int, rank: int, world_size: int, offset: int, limit: int | None, space: str
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "epoch": epoch,
        "rank": rank,
        "world_size": world_size,
        "offset": offset,
        "space": space,
    }
    if limit is not None:
        params["limit"] = limit
    return params


class SamplePlanClient:
    """A synchronous client for the sampleplan service.

    Args:
        base_url: where the service listens, e.g. ``"http://127.0.0.1:8000"``.
        token: a bearer token, if the service requires one.
        timeout: seconds for connect and for each read.
        retries: further attempts after a connection error, a 5xx or a 429.
        backoff: base of the exponential backoff between attempts, in seconds.
        http_client: an ``httpx.Client`` to use instead of a new one (tests inject one
            with an ``httpx.MockTransport``); it is not closed by :meth:`close`.

    Raises :class:`~client.SamplePlanError` subclasses only.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        token: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.25,
        http_client: httpx.Client | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries should be a non-negative integer, but got retries={retries}")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self._owns_client = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)
        self._headers = headers

    # -- context management ---------------------------------------------------------------

    def close(self) -> None:
        if self._owns_client:
            self._http.close()

    def __enter__(self) -> SamplePlanClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request with retries; return the successful response or raise."""
        headers = {**self._headers, **kwargs.pop("headers", {})}
        url = self.base_url + path

        def attempt() -> httpx.Response:
            response = self._http.request(method, url, headers=headers, **kwargs)
            _check_status(response)
            return response

        return self._retrying(method, path, attempt)

    def _retrying(self, method: str, path: str, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` until it succeeds, retrying transport errors, 5xx and 429."""
        for number in range(self.retries + 1):
            response: httpx.Response | None = None
            try:
                return attempt()
            except _RetryableStatus as exc:
                response = exc.response
                if number == self.retries:
                    raise error_from_response(response) from None
            except httpx.TimeoutException as exc:
                if number == self.retries:
                    raise TimeoutError(f"{method} {path}: no answer in time ({exc})") from exc
            except httpx.TransportError as exc:
                if number == self.retries:
                    raise TransportError(f"{method} {path}: cannot reach {self.base_url} ({exc})") from exc
            time.sleep(retry_delay(number, self.backoff, response))
        raise SamplePlanError("unreachable")  # pragma: no cover

    def _array(
        self,
        path: str,
        key: str,
        dtype: npt.DTypeLike,
        *,
        params: Mapping[str, Any] | None,
        binary: bool,
    ) -> npt.NDArray[Any]:
        """An array endpoint's values: streamed into a preallocated array, or from JSON."""
        if not binary:
            data = self._json("GET", path, params=params)
            return np.asarray(data[key], dtype=dtype)
        # identity: see NOTE [Reading speed] in client/_arrays.py.
        headers = {**self._headers, "Accept": BINARY, "Accept-Encoding": "identity"}
        url = self.base_url + path

        def attempt() -> npt.NDArray[Any]:
            with self._http.stream("GET", url, params=params, headers=headers) as response:
                _check_status(response)
                return read_array(response, dtype, key)

        return self._retrying("GET", path, attempt)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    # -- endpoints ------------------------------------------------------------------------

    def create_dataset(self, labels: LabelsLike, *, binary: bool = True) -> Dataset:
        """Upload labels (ints or strings, in sample order); the same labels give the same id.

        Integer labels (lists, numpy arrays, tensors) go as raw binary unless
        ``binary=False``; anything else goes as JSON. Either way the id is the same.
        """
        encoded = binary_labels(labels) if binary else None
        if encoded is None:
            body = {"labels": labels_to_json(labels)}
            return Dataset.from_json(self._json("POST", "/v1/datasets", json=body))
        data, dtype = encoded
        return Dataset.from_json(
            self._json(
                "POST",
                "/v1/datasets",
                content=data,
                params={"dtype": dtype},
                headers={"Content-Type": BINARY},
            )
        )

    def create_dataset_from_file(
        self,
        path: str | os.PathLike[str],
        *,
        media_type: str | None = None,
        label_column: str = "label",
        dtype: str = "int64",
    ) -> Dataset:
        """Upload a dataset file: ``.npy``, ``.csv``, ``.jsonl``/``.ndjson``, ``.txt`` (paths).

        ``media_type`` overrides the guess from the suffix (``"application/octet-stream"``
        with ``dtype="int32"`` or ``"int64"`` for raw integers). ``label_column`` names
        the CSV column or JSON Lines key holding the labels; a ``.txt`` file lists paths
        in ``ImageFolder`` layout, ``class_name/file``.
        """
        file = Path(path)
        media_type = media_type or manifest_media_type(file)
        return Dataset.from_json(
            self._json(
                "POST",
                "/v1/datasets",
                content=file.read_bytes(),
                params={"label_column": label_column, "dtype": dtype},
                headers={"Content-Type": media_type},
            )
        )

    def get_dataset(self, dataset_id: str) -> Dataset:
        return Dataset.from_json(self._json("GET", f"/v1/datasets/{dataset_id}"))

    def create_plan(
        self, *, dataset_id: str | None = None, labels: LabelsLike | None = None, **config: Any
    ) -> Plan:
        """Create (or find) a plan; ``config`` takes any field of the plan request."""
        return Plan.from_json(self._json("POST", "/v1/plans", json=plan_body(dataset_id, labels, config)))

    def get_plan(self, plan_id: str) -> Plan:
        return Plan.from_json(self._json("GET", f"/v1/plans/{plan_id}"))

    def weights(self, plan_id: str, *, binary: bool = True) -> npt.NDArray[np.float64]:
        """Per-sample float64 weights of the plan's population (binary transport unless
        ``binary=False``, which asks for JSON; the values are the same)."""
        path = f"/v1/plans/{plan_id}/weights"
        return self._array(path, "weights", np.float64, params=None, binary=binary)

    def indices(
        self,
        plan_id: str,
        *,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        offset: int = 0,
        limit: int | None = None,
        space: str = "population",
        binary: bool = True,
    ) -> npt.NDArray[np.int64]:
        """A page of a rank's stream for an epoch, as int64 (binary transport unless
        ``binary=False``)."""
        params = stream_params(epoch, rank, world_size, offset, limit, space)
        path = f"/v1/plans/{plan_id}/indices"
        return self._array(path, "indices", np.int64, params=params, binary=binary)

    def sample(self, labels: LabelsLike, **fields: Any) -> dict[str, Any]:
        """``POST /v1/sample``: counts, weights and indices, nothing stored."""
        result: dict[str, Any] = self._json("POST", "/v1/sample", json=plan_body(None, labels, fields))
        return result

    def health(self) -> bool:
        """``True`` when the service is live and its database reachable."""
        try:
            self.request("GET", "/readyz")
        except SamplePlanError:
            return False
        return True
