"""``SamplePlanClient``: typed methods for every endpoint of the sampleplan service."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

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
        for attempt in range(self.retries + 1):
            response: httpx.Response | None = None
            try:
                response = self._http.request(method, url, headers=headers, **kwargs)
            except httpx.TimeoutException as exc:
                if attempt == self.retries:
                    raise TimeoutError(f"{method} {path}: no answer in time ({exc})") from exc
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise TransportError(f"{method} {path}: cannot reach {self.base_url} ({exc})") from exc
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in _RETRY_STATUSES or attempt == self.retries:
                    raise error_from_response(response)
            time.sleep(retry_delay(attempt, self.backoff, response))
        raise SamplePlanError("unreachable")  # pragma: no cover

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    # -- endpoints ------------------------------------------------------------------------

    def create_dataset(self, labels: LabelsLike) -> Dataset:
        """Upload labels (ints or strings, in sample order); the same labels give the same id."""
        return Dataset.from_json(self._json("POST", "/v1/datasets", json={"labels": labels_to_json(labels)}))

    def get_dataset(self, dataset_id: str) -> Dataset:
        return Dataset.from_json(self._json("GET", f"/v1/datasets/{dataset_id}"))

    def create_plan(
        self, *, dataset_id: str | None = None, labels: LabelsLike | None = None, **config: Any
    ) -> Plan:
        """Create (or find) a plan; ``config`` takes any field of the plan request."""
        return Plan.from_json(self._json("POST", "/v1/plans", json=plan_body(dataset_id, labels, config)))

    def get_plan(self, plan_id: str) -> Plan:
        return Plan.from_json(self._json("GET", f"/v1/plans/{plan_id}"))

    def weights(self, plan_id: str) -> npt.NDArray[np.float64]:
        """Per-sample float64 weights of the plan's population."""
        data = self._json("GET", f"/v1/plans/{plan_id}/weights")
        return np.asarray(data["weights"], dtype=np.float64)

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
    ) -> npt.NDArray[np.int64]:
        """A page of a rank's stream for an epoch, as int64."""
        params = stream_params(epoch, rank, world_size, offset, limit, space)
        data = self._json("GET", f"/v1/plans/{plan_id}/indices", params=params)
        return np.asarray(data["indices"], dtype=np.int64)

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
