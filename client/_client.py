"""``SamplePlanClient`` and ``AsyncSamplePlanClient``: typed methods for every endpoint.

Both clients send the same :class:`~sampleplan.client._endpoints.Call` objects and retry them under
the same :class:`~sampleplan.client._retry.RetryPolicy`; each method here is one line that hands a
call to :meth:`send`. Only sending and sleeping differ between the two.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

import anyio
import httpx
import numpy as np
import numpy.typing as npt

from sampleplan.client import _endpoints as endpoints
from sampleplan.client._endpoints import Call, LabelsLike
from sampleplan.client._exceptions import NotFoundError, SamplePlanError
from sampleplan.client._folders import image_folder_targets
from sampleplan.client._models import ClassPage, ClassRow, Dataset, Plan, Run
from sampleplan.client._progress import attach_progress, require_tqdm
from sampleplan.client._retry import RetryPolicy
from sampleplan.core.runs import UpdateOp
from sampleplan.core.streams import Space, StreamRequest

__all__ = ["AsyncSamplePlanClient", "SamplePlanClient"]


def _space(space: str) -> Space:
    """The caller's ``space`` as given: the service judges it (a 422 for anything else)."""
    return cast(Space, space)


T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 60.0

# Opening a pool is rare (once per client and process): one lock for all of them, so that
# no client holds a lock of its own (NOTE [Pickling clients]).
_OPENING = threading.Lock()


class _ClientOptions:
    """What both clients are configured with; builds the request for a call."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float | httpx.Timeout,
        retries: int,
        backoff: float,
        progress: bool,
    ) -> None:
        if progress:
            require_tqdm()
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = RetryPolicy(retries=retries, backoff=backoff)
        self.progress = progress
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    @property
    def retries(self) -> int:
        return self.retry.retries

    @property
    def backoff(self) -> float:
        return self.retry.backoff

    def _build(self, http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> httpx.Request:
        return http.build_request(
            call.method,
            self.base_url + call.path,
            params=call.params,
            json=call.json,
            content=call.content,
            headers={**self._headers, **call.headers},
        )

    def _client_kwargs(self) -> dict[str, Any]:
        return {"timeout": self.timeout}

    # NOTE [Pickling clients]
    #     A client's connection pool (and its locks) cannot cross a process boundary, but
    #     its configuration can: a pickled or deep-copied client carries base URL, token,
    #     timeout and retry policy, and opens its own pool at its first request. Lightning's
    #     ddp_spawn and DataLoader workers pickle the sampler, and with it its client. A
    #     caller's injected http_client is theirs: it cannot be rebuilt, so it refuses.
    _owns_client: bool
    _http_client: httpx.Client | httpx.AsyncClient | None

    def __getstate__(self) -> dict[str, Any]:
        if not self._owns_client:
            raise TypeError(
                f"a {type(self).__name__} built on a caller's http_client cannot be pickled or "
                "copied; build it from base_url and token so that the copy opens its own"
            )
        state = self.__dict__.copy()
        state["_http_client"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class SamplePlanClient(_ClientOptions):
    """A synchronous client for the sampleplan service.

    Args:
        base_url: where the service listens, e.g. ``"http://127.0.0.1:8000"``.
        token: a bearer token, if the service requires one.
        timeout: seconds for connect and for each read (or an ``httpx.Timeout``).
        retries: further attempts after a connection error, a timeout, a 5xx or a 429.
        backoff: base of the exponential backoff between attempts, in seconds (with full
            jitter; a ``Retry-After`` header wins).
        progress: show a tqdm progress bar while a large body (over 1 MiB) downloads;
            needs ``tqdm`` (the ``progress`` extra).
        http_client: an ``httpx.Client`` to use instead of a new one (tests inject one
            with an ``httpx.MockTransport``). Its own timeout applies, and :meth:`close`
            leaves it open.

    Usable as a context manager, which closes it. Raises :class:`~client.SamplePlanError`
    subclasses only; see :mod:`sampleplan.client._exceptions` for the tree.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 3,
        backoff: float = 0.25,
        progress: bool = False,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(
            base_url, token, timeout=timeout, retries=retries, backoff=backoff, progress=progress
        )
        self._owns_client = http_client is None
        self._http_client: httpx.Client | None = http_client

    @property
    def _http(self) -> httpx.Client:
        """The connection pool, opened at the first request (NOTE [Pickling clients])."""
        if self._http_client is None:
            with _OPENING:
                if self._http_client is None:
                    self._http_client = httpx.Client(**self._client_kwargs())
        return self._http_client

    def close(self) -> None:
        """Close the connection pool (not an injected ``http_client``)."""
        if self._owns_client and self._http_client is not None:
            self._http_client.close()

    def __enter__(self) -> SamplePlanClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def send(self, call: Call[T]) -> T:
        """Send ``call``, retrying under the policy, and parse its answer.

        Array calls read a successful body straight into a preallocated array as it
        streams in (NOTE [Reading speed] in ``client/_arrays.py``); a body cut short is a
        transport error and is retried like one.
        """
        request = self._build(self._http, call)
        for attempt in range(self.retry.attempts):
            try:
                response = self._http.send(request, stream=True)
                try:
                    if self.progress:
                        attach_progress(response, call.short_name, asynchronous=False)
                    if call.array is not None and response.is_success:
                        return call.array.read(response)  # type: ignore[return-value]
                    response.read()
                finally:
                    response.close()
            except httpx.HTTPError as exc:
                delay = self.retry.after_error(attempt, exc, call.name, self.base_url)
            else:
                wait = self.retry.after_response(attempt, response)
                if wait is None:
                    return call.parse(response)
                delay = wait
            time.sleep(delay)
        raise AssertionError("the retry policy raises on the last attempt")  # pragma: no cover

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send any request with retries; the successful response, or raise."""
        call: Call[httpx.Response] = Call(method, path, lambda r: r, **kwargs)
        return self.send(call)

    # -- endpoints ------------------------------------------------------------------------

    def create_dataset(
        self, labels: LabelsLike, *, binary: bool = True, lengths: npt.ArrayLike | None = None
    ) -> Dataset:
        """Upload labels (ints or strings, in sample order); the same labels give the same id.

        ``labels``: a list, a numpy array, a torch tensor, a pyarrow ``Array`` or
        ``ChunkedArray``, a Hugging Face ``datasets`` column (``ds["label"]``, read from the
        dataset's Arrow table without a copy, or ``ds.data.column("label")``), or a pandas
        ``Series`` or ``Categorical``. Integer labels go as raw binary; other
        pyarrow and pandas labels as an Arrow IPC stream (strings dictionary-encoded; needs
        the ``arrow`` extra for pandas); the rest, or anything with ``binary=False``, as
        JSON. Either way the id is the same.

        ``lengths``: one integer per sample (token counts), stored with the labels for
        mixtures that mix tokens (``mixing={"unit": "tokens"}``); the dataset then has an
        id of its own, and its answer says ``total_tokens``. Sent as an Arrow IPC stream.
        """
        return self.send(endpoints.create_dataset(labels, binary=binary, lengths=lengths))

    def create_dataset_from_file(
        self,
        path: str | os.PathLike[str],
        *,
        media_type: str | None = None,
        label_column: str = "label",
        dtype: str = "int64",
        label_separator: str | None = None,
    ) -> Dataset:
        """Upload a dataset file: ``.npy``, ``.npz``, ``.csv``, ``.jsonl``/``.ndjson``,
        ``.txt`` (paths), ``.parquet``, ``.arrow``/``.feather`` (Arrow IPC file or stream).

        ``media_type`` overrides the guess from the suffix (``"application/octet-stream"``
        with ``dtype="int32"`` or ``"int64"`` for raw integers) and sends the file as it
        is. ``label_column`` names the CSV, Parquet or Arrow column or the JSON Lines key
        holding the labels; ``label_separator`` (one character) splits CSV cells into
        label sets, and a ``.npz`` holds label sets as ``offsets`` and ``values``. Parquet
        and Arrow files are read here (the ``arrow`` extra), memory-mapped, and only the
        label column is sent, never the whole file (a list column is label sets); a
        missing column raises ``ValueError`` listing the columns there are. A ``.txt``
        file lists paths in ``ImageFolder`` layout, ``class_name/file``.
        """
        return self.send(
            endpoints.create_dataset_from_file(
                Path(path),
                media_type=media_type,
                label_column=label_column,
                dtype=dtype,
                label_separator=label_separator,
            )
        )

    def create_dataset_from_folder(
        self,
        root: str | os.PathLike[str],
        *,
        extensions: str | Sequence[str] | None = None,
        is_valid_file: Callable[[str], bool] | None = None,
    ) -> Dataset:
        """Upload an ``ImageFolder`` tree's labels: its samples as ``ImageFolder(root)`` lists
        them (:func:`~client.image_folder_targets`), sent as a path list.

        The dataset's classes are the folder's class names and sample ``i`` is
        ``ImageFolder(root).samples[i]``, so ``dataset.classes == ImageFolder(root).classes``
        and plan indices index the ``ImageFolder`` directly. A class folder without a
        valid file is an error, as in ``ImageFolder`` by default (a dataset has no class
        without samples, so its class indices would no longer be ImageFolder's).
        """
        targets = image_folder_targets(root, extensions=extensions, is_valid_file=is_valid_file)
        return self.send(endpoints.create_dataset_from_folder(targets))

    def get_dataset(self, dataset_id: str) -> Dataset:
        """A stored dataset's size, classes and class counts."""
        return self.send(endpoints.get_dataset(dataset_id))

    def create_plan(
        self, *, dataset_id: str | None = None, labels: LabelsLike | None = None, **config: Any
    ) -> Plan:
        """Create (or find) a plan; ``config`` takes any field of the plan request.

        A mixture of sources gives ``sources`` (and no ``dataset_id`` or ``labels``)::

            plan = api.create_plan(
                sources=[{"name": "web", "dataset_id": web.id, "weight": 7},
                         {"name": "math", "plan_id": math_plan.id, "weight": 1}],
                mixing={"proportions": "weights"}, num_samples=100_000, seed=0)
            plan.sources[0].realised_share  # each source's share, passes and warning

        Its indices are positions in ``ConcatDataset`` of the sources' datasets, in order.
        """
        return self.send(endpoints.create_plan(dataset_id, labels, config))

    def get_plan(self, plan_id: str, *, epoch: int | None = None) -> Plan:
        """A plan's config, class table and the versions that define its streams.

        ``epoch``: the class table and ``num_samples`` of that epoch (a plan with a schedule).
        """
        return self.send(endpoints.get_plan(plan_id, epoch))

    def classes(
        self, plan_id: str, offset: int = 0, limit: int = 1_000, *, epoch: int | None = None
    ) -> ClassPage:
        """Rows ``offset .. offset + limit - 1`` of a plan's class table (at most 10 000)."""
        return self.send(endpoints.classes(plan_id, offset, limit, epoch))

    def all_classes(self, plan: Plan) -> list[ClassRow]:
        """``plan``'s whole class table: ``plan.classes`` if complete, else read by the page."""
        rows = list(plan.classes)
        while len(rows) < plan.num_classes:
            page = self.classes(
                plan.id, len(rows), endpoints.CLASS_PAGE_ROWS, epoch=plan.epoch or None
            )
            if not page.classes:
                break
            rows += page.classes
        return rows

    def weights(
        self, plan_id: str, *, epoch: int | None = None, binary: bool = True
    ) -> npt.NDArray[np.float64]:
        """Per-sample float64 weights of the plan's population (``binary=False``: via JSON).

        ``epoch``: that epoch's weights (they differ by epoch only for a plan with a schedule).
        """
        return self.send(endpoints.weights(plan_id, epoch=epoch, binary=binary))

    def codes(self, dataset_id: str, *, binary: bool = True) -> npt.NDArray[np.int64]:
        """The int64 class index of every sample of a dataset (``binary=False``: via JSON).

        For label sets: one code per label occurrence; :meth:`offsets` delimits samples.
        """
        return self.send(endpoints.codes(dataset_id, binary=binary))

    def offsets(self, dataset_id: str, *, binary: bool = True) -> npt.NDArray[np.int64]:
        """A label-set dataset's CSR offsets: sample ``i``'s codes are ``codes[o[i]:o[i+1]]``."""
        return self.send(endpoints.offsets(dataset_id, binary=binary))

    def lengths(self, dataset_id: str, *, binary: bool = True) -> npt.NDArray[np.int64]:
        """A dataset's per-sample token lengths (its upload's ``length_column``)."""
        return self.send(endpoints.lengths(dataset_id, binary=binary))

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
        start: int = 0,
        pad: bool = True,
        drop_last: bool = False,
    ) -> npt.NDArray[np.int64]:
        """A page of a rank's stream for an epoch, as int64 (``binary=False``: via JSON).

        ``start``, ``pad`` and ``drop_last`` deal the epoch from a global position and pad,
        keep or drop its ragged tail (NOTE [Dealing] in ``sampleplan/core/dealing.py``).
        """
        request = StreamRequest(
            epoch=epoch,
            rank=rank,
            world_size=world_size,
            offset=offset,
            limit=limit,
            space=_space(space),
            start=start,
            pad=pad,
            drop_last=drop_last,
            check=False,
        )
        return self.send(endpoints.indices(plan_id, request, binary=binary))

    def batches(
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
        """A page of a rank's batches of a batch plan: int64, ``(batches, batch_size)``.

        ``offset`` and ``limit`` count batches (``binary=False``: via JSON).
        """
        request = StreamRequest(
            epoch=epoch,
            rank=rank,
            world_size=world_size,
            offset=offset,
            limit=limit,
            space=_space(space),
            check=False,
        )
        return self.send(endpoints.batches(plan_id, request, binary=binary))

    def batches_summary(
        self,
        plan_id: str,
        *,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        space: str = "population",
    ) -> dict[str, Any]:
        """Per-class counts and SHA-256 of a rank's batches for an epoch."""
        request = StreamRequest(
            epoch=epoch, rank=rank, world_size=world_size, space=_space(space), check=False
        )
        return self.send(endpoints.batches_summary(plan_id, request))

    def create_run(self, run_id: str, plan_id: str) -> Run:
        """Create (or find) run ``run_id`` of ``plan_id`` (409 if it belongs to another plan)."""
        return self.send(endpoints.create_run(run_id, plan_id))

    def get_run(self, run_id: str) -> Run:
        """A run's plan, frozen epochs and number of updates."""
        return self.send(endpoints.get_run(run_id))

    def delete_run(self, run_id: str) -> bool:
        """Delete run ``run_id`` with its updates and frozen epochs; ``False`` if no run had
        that id. A retry whose first try went through (its answer was lost) is ``True``."""
        try:
            self.send(endpoints.delete_run(run_id))
        except NotFoundError as exc:
            # A 404 to a retry: an earlier try may have deleted it.
            return exc.attempts > 1
        return True

    def update_weights(
        self,
        run_id: str,
        indices: npt.ArrayLike,
        values: npt.ArrayLike,
        *,
        epoch: int,
        rank: int = 0,
        step: int = 0,
        op: UpdateOp = "set",
        alpha: float | None = None,
    ) -> Run:
        """Send one update made during epoch ``epoch``; it changes epoch ``epoch + 1`` on.

        ``op`` is ``"set"``, ``"mul"`` or ``"ema"`` (with ``alpha`` in (0, 1]); updates of an
        epoch apply in the order ``(step, rank, arrival)``. :class:`~client.ClientRequestError`
        (409) when epoch ``epoch + 1`` has been served already.
        """
        return self.send(
            endpoints.update_weights(
                run_id, indices, values, epoch=epoch, rank=rank, step=step, op=op, alpha=alpha
            )
        )

    def run_weights(
        self, run_id: str, epoch: int, *, binary: bool = True
    ) -> npt.NDArray[np.float64]:
        """The float64 weights epoch ``epoch`` of the run draws from (this freezes the epoch)."""
        return self.send(endpoints.run_weights(run_id, epoch=epoch, binary=binary))

    def run_indices(
        self,
        run_id: str,
        *,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        offset: int = 0,
        limit: int | None = None,
        space: str = "population",
        binary: bool = True,
        start: int = 0,
        pad: bool = True,
        drop_last: bool = False,
    ) -> npt.NDArray[np.int64]:
        """A page of a rank's stream of the run for an epoch (this freezes the epoch).

        ``start``, ``pad`` and ``drop_last`` deal the epoch as for a plan's ``indices``.
        """
        request = StreamRequest(
            epoch=epoch,
            rank=rank,
            world_size=world_size,
            offset=offset,
            limit=limit,
            space=_space(space),
            start=start,
            pad=pad,
            drop_last=drop_last,
            check=False,
        )
        return self.send(endpoints.run_indices(run_id, request, binary=binary))

    def sample(self, labels: LabelsLike, **fields: Any) -> dict[str, Any]:
        """``POST /v1/sample``: counts, weights and indices, nothing stored."""
        return self.send(endpoints.sample(labels, fields))

    def health(self) -> bool:
        """``True`` when the service is live and its database reachable."""
        try:
            return self.send(endpoints.ready())
        except SamplePlanError:
            return False


class AsyncSamplePlanClient(_ClientOptions):
    """The asynchronous twin of :class:`SamplePlanClient`, on ``httpx.AsyncClient``.

    The same arguments (``http_client`` is an ``httpx.AsyncClient``), the same methods as
    coroutines, the same errors. Use ``async with`` or ``await client.aclose()``.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 3,
        backoff: float = 0.25,
        progress: bool = False,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            base_url, token, timeout=timeout, retries=retries, backoff=backoff, progress=progress
        )
        self._owns_client = http_client is None
        self._http_client: httpx.AsyncClient | None = http_client

    @property
    def _http(self) -> httpx.AsyncClient:
        """The connection pool, opened at the first request (NOTE [Pickling clients])."""
        if self._http_client is None:
            with _OPENING:
                if self._http_client is None:
                    self._http_client = httpx.AsyncClient(**self._client_kwargs())
        return self._http_client

    async def aclose(self) -> None:
        """Close the connection pool (not an injected ``http_client``)."""
        if self._owns_client and self._http_client is not None:
            await self._http_client.aclose()

    async def __aenter__(self) -> AsyncSamplePlanClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def send(self, call: Call[T]) -> T:
        """Send ``call``, retrying under the policy, and parse its answer (as the sync one)."""
        request = self._build(self._http, call)
        for attempt in range(self.retry.attempts):
            try:
                response = await self._http.send(request, stream=True)
                try:
                    if self.progress:
                        attach_progress(response, call.short_name, asynchronous=True)
                    if call.array is not None and response.is_success:
                        return await call.array.aread(response)  # type: ignore[return-value]
                    await response.aread()
                finally:
                    await response.aclose()
            except httpx.HTTPError as exc:
                delay = self.retry.after_error(attempt, exc, call.name, self.base_url)
            else:
                wait = self.retry.after_response(attempt, response)
                if wait is None:
                    return call.parse(response)
                delay = wait
            await anyio.sleep(delay)
        raise AssertionError("the retry policy raises on the last attempt")  # pragma: no cover

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send any request with retries; the successful response, or raise."""
        call: Call[httpx.Response] = Call(method, path, lambda r: r, **kwargs)
        return await self.send(call)

    # -- endpoints: see SamplePlanClient for what each returns ----------------------------

    async def create_dataset(
        self, labels: LabelsLike, *, binary: bool = True, lengths: npt.ArrayLike | None = None
    ) -> Dataset:
        """Upload labels (ints or strings, in sample order); the same labels give the same id.

        ``labels``: a list, a numpy array, a torch tensor, a pyarrow ``Array`` or
        ``ChunkedArray``, a Hugging Face ``datasets`` column (``ds["label"]``, read from the
        dataset's Arrow table without a copy, or ``ds.data.column("label")``), or a pandas
        ``Series`` or ``Categorical``. Integer labels go as raw binary; other
        pyarrow and pandas labels as an Arrow IPC stream (strings dictionary-encoded; needs
        the ``arrow`` extra for pandas); the rest, or anything with ``binary=False``, as
        JSON. Either way the id is the same.

        ``lengths``: one integer per sample (token counts), stored with the labels for
        mixtures that mix tokens (``mixing={"unit": "tokens"}``); the dataset then has an
        id of its own, and its answer says ``total_tokens``. Sent as an Arrow IPC stream.
        """
        return await self.send(endpoints.create_dataset(labels, binary=binary, lengths=lengths))

    async def create_dataset_from_file(
        self,
        path: str | os.PathLike[str],
        *,
        media_type: str | None = None,
        label_column: str = "label",
        dtype: str = "int64",
        label_separator: str | None = None,
    ) -> Dataset:
        """Upload a dataset file: ``.npy``, ``.npz``, ``.csv``, ``.jsonl``/``.ndjson``,
        ``.txt`` (paths), ``.parquet``, ``.arrow``/``.feather`` (Arrow IPC file or stream).

        ``media_type`` overrides the guess from the suffix (``"application/octet-stream"``
        with ``dtype="int32"`` or ``"int64"`` for raw integers) and sends the file as it
        is. ``label_column`` names the CSV, Parquet or Arrow column or the JSON Lines key
        holding the labels; ``label_separator`` (one character) splits CSV cells into
        label sets, and a ``.npz`` holds label sets as ``offsets`` and ``values``. Parquet
        and Arrow files are read here (the ``arrow`` extra), memory-mapped, and only the
        label column is sent, never the whole file (a list column is label sets); a
        missing column raises ``ValueError`` listing the columns there are. A ``.txt``
        file lists paths in ``ImageFolder`` layout, ``class_name/file``.
        """
        return await self.send(
            endpoints.create_dataset_from_file(
                Path(path),
                media_type=media_type,
                label_column=label_column,
                dtype=dtype,
                label_separator=label_separator,
            )
        )

    async def create_dataset_from_folder(
        self,
        root: str | os.PathLike[str],
        *,
        extensions: str | Sequence[str] | None = None,
        is_valid_file: Callable[[str], bool] | None = None,
    ) -> Dataset:
        """Upload an ``ImageFolder`` tree's labels: its samples as ``ImageFolder(root)`` lists
        them (:func:`~client.image_folder_targets`), sent as a path list.

        The dataset's classes are the folder's class names and sample ``i`` is
        ``ImageFolder(root).samples[i]``, so ``dataset.classes == ImageFolder(root).classes``
        and plan indices index the ``ImageFolder`` directly. A class folder without a
        valid file is an error, as in ``ImageFolder`` by default (a dataset has no class
        without samples, so its class indices would no longer be ImageFolder's).
        """
        # Listing a large tree blocks: keep it off the event loop.
        targets = await anyio.to_thread.run_sync(
            lambda: image_folder_targets(root, extensions=extensions, is_valid_file=is_valid_file)
        )
        return await self.send(endpoints.create_dataset_from_folder(targets))

    async def get_dataset(self, dataset_id: str) -> Dataset:
        """A stored dataset's size, classes and class counts."""
        return await self.send(endpoints.get_dataset(dataset_id))

    async def create_plan(
        self, *, dataset_id: str | None = None, labels: LabelsLike | None = None, **config: Any
    ) -> Plan:
        """Create (or find) a plan; ``config`` takes any field of the plan request.

        A mixture of sources gives ``sources`` (and no ``dataset_id`` or ``labels``)::

            plan = api.create_plan(
                sources=[{"name": "web", "dataset_id": web.id, "weight": 7},
                         {"name": "math", "plan_id": math_plan.id, "weight": 1}],
                mixing={"proportions": "weights"}, num_samples=100_000, seed=0)
            plan.sources[0].realised_share  # each source's share, passes and warning

        Its indices are positions in ``ConcatDataset`` of the sources' datasets, in order.
        """
        return await self.send(endpoints.create_plan(dataset_id, labels, config))

    async def get_plan(self, plan_id: str, *, epoch: int | None = None) -> Plan:
        """A plan's config, class table and the versions that define its streams.

        ``epoch``: the class table and ``num_samples`` of that epoch (a plan with a schedule).
        """
        return await self.send(endpoints.get_plan(plan_id, epoch))

    async def classes(
        self, plan_id: str, offset: int = 0, limit: int = 1_000, *, epoch: int | None = None
    ) -> ClassPage:
        """Rows ``offset .. offset + limit - 1`` of a plan's class table (at most 10 000)."""
        return await self.send(endpoints.classes(plan_id, offset, limit, epoch))

    async def all_classes(self, plan: Plan) -> list[ClassRow]:
        """``plan``'s whole class table: ``plan.classes`` if complete, else read by the page."""
        rows = list(plan.classes)
        while len(rows) < plan.num_classes:
            page = await self.classes(
                plan.id, len(rows), endpoints.CLASS_PAGE_ROWS, epoch=plan.epoch or None
            )
            if not page.classes:
                break
            rows += page.classes
        return rows

    async def weights(
        self, plan_id: str, *, epoch: int | None = None, binary: bool = True
    ) -> npt.NDArray[np.float64]:
        """Per-sample float64 weights of the plan's population (``binary=False``: via JSON).

        ``epoch``: that epoch's weights (they differ by epoch only for a plan with a schedule).
        """
        return await self.send(endpoints.weights(plan_id, epoch=epoch, binary=binary))

    async def codes(self, dataset_id: str, *, binary: bool = True) -> npt.NDArray[np.int64]:
        """The int64 class index of every sample of a dataset (``binary=False``: via JSON)."""
        return await self.send(endpoints.codes(dataset_id, binary=binary))

    async def offsets(self, dataset_id: str, *, binary: bool = True) -> npt.NDArray[np.int64]:
        """A label-set dataset's CSR offsets: sample ``i``'s codes are ``codes[o[i]:o[i+1]]``."""
        return await self.send(endpoints.offsets(dataset_id, binary=binary))

    async def lengths(self, dataset_id: str, *, binary: bool = True) -> npt.NDArray[np.int64]:
        """A dataset's per-sample token lengths (its upload's ``length_column``)."""
        return await self.send(endpoints.lengths(dataset_id, binary=binary))

    async def indices(
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
        start: int = 0,
        pad: bool = True,
        drop_last: bool = False,
    ) -> npt.NDArray[np.int64]:
        """A page of a rank's stream for an epoch, as int64 (``binary=False``: via JSON).

        ``start``, ``pad`` and ``drop_last`` deal the epoch from a global position and pad,
        keep or drop its ragged tail (NOTE [Dealing] in ``sampleplan/core/dealing.py``).
        """
        request = StreamRequest(
            epoch=epoch,
            rank=rank,
            world_size=world_size,
            offset=offset,
            limit=limit,
            space=_space(space),
            start=start,
            pad=pad,
            drop_last=drop_last,
            check=False,
        )
        return await self.send(endpoints.indices(plan_id, request, binary=binary))

    async def batches(
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
        """A page of a rank's batches of a batch plan: int64, ``(batches, batch_size)``.

        ``offset`` and ``limit`` count batches (``binary=False``: via JSON).
        """
        request = StreamRequest(
            epoch=epoch,
            rank=rank,
            world_size=world_size,
            offset=offset,
            limit=limit,
            space=_space(space),
            check=False,
        )
        return await self.send(endpoints.batches(plan_id, request, binary=binary))

    async def batches_summary(
        self,
        plan_id: str,
        *,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        space: str = "population",
    ) -> dict[str, Any]:
        """Per-class counts and SHA-256 of a rank's batches for an epoch."""
        request = StreamRequest(
            epoch=epoch, rank=rank, world_size=world_size, space=_space(space), check=False
        )
        return await self.send(endpoints.batches_summary(plan_id, request))

    async def create_run(self, run_id: str, plan_id: str) -> Run:
        """Create (or find) run ``run_id`` of ``plan_id`` (409 if it belongs to another plan)."""
        return await self.send(endpoints.create_run(run_id, plan_id))

    async def get_run(self, run_id: str) -> Run:
        """A run's plan, frozen epochs and number of updates."""
        return await self.send(endpoints.get_run(run_id))

    async def delete_run(self, run_id: str) -> bool:
        """Delete run ``run_id`` with its updates and frozen epochs; ``False`` if no run had
        that id. A retry whose first try went through (its answer was lost) is ``True``."""
        try:
            await self.send(endpoints.delete_run(run_id))
        except NotFoundError as exc:
            # A 404 to a retry: an earlier try may have deleted it.
            return exc.attempts > 1
        return True

    async def update_weights(
        self,
        run_id: str,
        indices: npt.ArrayLike,
        values: npt.ArrayLike,
        *,
        epoch: int,
        rank: int = 0,
        step: int = 0,
        op: UpdateOp = "set",
        alpha: float | None = None,
    ) -> Run:
        """Send one update made during epoch ``epoch``; it changes epoch ``epoch + 1`` on.

        ``op`` is ``"set"``, ``"mul"`` or ``"ema"`` (with ``alpha`` in (0, 1]); updates of an
        epoch apply in the order ``(step, rank, arrival)``. :class:`~client.ClientRequestError`
        (409) when epoch ``epoch + 1`` has been served already.
        """
        return await self.send(
            endpoints.update_weights(
                run_id, indices, values, epoch=epoch, rank=rank, step=step, op=op, alpha=alpha
            )
        )

    async def run_weights(
        self, run_id: str, epoch: int, *, binary: bool = True
    ) -> npt.NDArray[np.float64]:
        """The float64 weights epoch ``epoch`` of the run draws from (this freezes the epoch)."""
        return await self.send(endpoints.run_weights(run_id, epoch=epoch, binary=binary))

    async def run_indices(
        self,
        run_id: str,
        *,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        offset: int = 0,
        limit: int | None = None,
        space: str = "population",
        binary: bool = True,
        start: int = 0,
        pad: bool = True,
        drop_last: bool = False,
    ) -> npt.NDArray[np.int64]:
        """A page of a rank's stream of the run for an epoch (this freezes the epoch).

        ``start``, ``pad`` and ``drop_last`` deal the epoch as for a plan's ``indices``.
        """
        request = StreamRequest(
            epoch=epoch,
            rank=rank,
            world_size=world_size,
            offset=offset,
            limit=limit,
            space=_space(space),
            start=start,
            pad=pad,
            drop_last=drop_last,
            check=False,
        )
        return await self.send(endpoints.run_indices(run_id, request, binary=binary))

    async def sample(self, labels: LabelsLike, **fields: Any) -> dict[str, Any]:
        """``POST /v1/sample``: counts, weights and indices, nothing stored."""
        return await self.send(endpoints.sample(labels, fields))

    async def health(self) -> bool:
        """``True`` when the service is live and its database reachable."""
        try:
            return await self.send(endpoints.ready())
        except SamplePlanError:
            return False
