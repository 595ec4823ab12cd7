"""The stream request as the HTTP API reads it from a query and answers a page of it.

NOTE [Stream queries]
    Which page of which stream a request wants is one value,
    :class:`~sampleplan.core.streams.StreamRequest`, from the query to the core. Its
    query parameters are declared here once, as fields of pydantic query models that
    FastAPI reads whole (``Annotated[StreamQuery, Query()]``): the same names, types,
    bounds and descriptions in every route and in the OpenAPI document, each parameter
    listed on its own as before. A route takes the model of its shape (a page of a stream,
    a whole stream, a page of batches, a rank's batches) and turns it into the request
    with :meth:`StreamQueryFields.to_request`, which checks the rules between fields
    (``rank < world_size``) that no schema states. The fast lane (NOTE [Fast lane] in
    ``fastlane.py``) validates a query against the same fields and builds the request the
    same way.

    The request is made in the handler, not in a dependency of its own: FastAPI solves a
    sub-dependency before the route's path parameters, which would reorder a 422's errors
    and let a stream error hide a malformed id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
from fastapi import Query
from pydantic import BaseModel, Field
from starlette.responses import Response

from sampleplan.core.epochs import EPOCH_LIMIT
from sampleplan.core.streams import Int64Array, Space, StreamRequest
from sampleplan.service.api.arrays import (
    ARRAY_MEDIA_TYPES,
    JSON,
    NPY,
    SHAPE_HEADER,
    array_response,
    json_head,
    json_number_bytes,
    little_endian,
    npy_header,
)

__all__ = [
    "PLAN_OPENINGS",
    "RUN_OPENINGS",
    "BatchesQuery",
    "BatchesSummaryQuery",
    "PageOpenings",
    "StreamQuery",
    "StreamQueryFields",
    "StreamSummaryQuery",
    "batch_page_at_floor",
    "batch_page_response",
    "stream_page_at_floor",
    "stream_page_response",
]

# -- the parameters, declared once ----------------------------------------------------------

Epoch = Annotated[
    int, Field(ge=0, lt=EPOCH_LIMIT, description="Epoch; its generator seed is seed + epoch.")
]
Rank = Annotated[int, Field(ge=0, description="This process's rank, in [0, world_size).")]
WorldSize = Annotated[int, Field(ge=1, description="Number of ranks sharing the epoch.")]
Offset = Annotated[int, Field(ge=0, description="First position of the page in the rank's stream.")]
Limit = Annotated[int | None, Field(ge=0, description="Page length; default: to the end.")]
SpaceField = Annotated[Space, Field(description="population positions or dataset indices.")]
Start = Annotated[
    int,
    Field(
        ge=0,
        description="Global position in the epoch stream where the deal starts (an elastic "
        "resume point: what all ranks together had consumed); at most the epoch's length.",
    ),
]
Pad = Annotated[
    bool,
    Field(
        description="Pad the ragged tail by repeating the dealt stream from its beginning, as "
        "DistributedSampler does (true), or give rank r exactly stream[start + r::world_size] "
        "(false: every index once over all ranks, for evaluation)."
    ),
]
DropLast = Annotated[
    bool,
    Field(
        description="Drop the ragged tail, as DistributedSampler(drop_last=True) (then `pad` "
        "does not matter)."
    ),
]
# Batches are paged by batch, and a rank's batches are always dealt from the first.
BatchOffset = Annotated[
    int, Field(ge=0, description="First batch of the page in the rank's batches.")
]
BatchLimit = Annotated[
    int | None, Field(ge=0, description="Batches in the page; default: to the end.")
]


# -- the query models, one per shape of request ----------------------------------------------


class StreamQueryFields(BaseModel):
    """Which stream: the fields every stream query has, and the request they make."""

    epoch: Epoch = 0
    rank: Rank = 0
    world_size: WorldSize = 1

    def to_request(self) -> StreamRequest:
        """The request this query asks for (raises ``InvalidStreamRequest``, a 422)."""
        return self.request_of(dict(self))

    @staticmethod
    def request_of(fields: Mapping[str, Any]) -> StreamRequest:
        """The request of a query's validated fields, by name: what :meth:`to_request`
        makes, for the fast lane, which validates the fields without making the model (a
        model costs more than the request)."""
        return StreamRequest(**fields)


class StreamQuery(StreamQueryFields):
    """``/indices`` of a plan or a run: a page of a rank's stream, dealt as asked."""

    offset: Offset = 0
    limit: Limit = None
    space: SpaceField = "population"
    start: Start = 0
    pad: Pad = True
    drop_last: DropLast = False


class StreamSummaryQuery(StreamQueryFields):
    """``/indices/summary``: a rank's whole stream, dealt as asked."""

    space: Annotated[
        Space, Field(description="Digest population positions or dataset indices.")
    ] = "population"
    start: Start = 0
    pad: Pad = True
    drop_last: DropLast = False


class BatchesQuery(StreamQueryFields):
    """``/batches``: a page of a rank's batches."""

    offset: BatchOffset = 0
    limit: BatchLimit = None
    space: SpaceField = "population"


class BatchesSummaryQuery(StreamQueryFields):
    """``/batches/summary``: a rank's batches, whole."""

    space: SpaceField = "population"


#: The route parameters that read each model from the query string.
StreamQueryParams = Annotated[StreamQuery, Query()]
StreamSummaryQueryParams = Annotated[StreamSummaryQuery, Query()]
BatchesQueryParams = Annotated[BatchesQuery, Query()]
BatchesSummaryQueryParams = Annotated[BatchesSummaryQuery, Query()]


# -- the answer ------------------------------------------------------------------------------


def stream_page_response(
    media_type: str,
    indices: Int64Array,
    request: StreamRequest,
    num_samples: int,
    head_only: bool,
    *,
    ids: Mapping[str, str],
) -> Response:
    """A page of an index stream (a plan's or a run's) in ``media_type``.

    The JSON body is ``ids`` (what the stream belongs to), the request's stream fields and
    the rank's whole stream ``length``, then ``indices``; every format carries
    ``X-Sampleplan-Stream-Length`` and ``X-Sampleplan-Offset``.
    """
    stream_length = request.length(num_samples)
    meta = {
        **ids,
        "epoch": request.epoch,
        "rank": request.rank,
        "world_size": request.world_size,
        "offset": request.offset,
        "length": stream_length,
        "space": request.space,
        "start": request.start,
        "pad": request.pad,
        "drop_last": request.drop_last,
    }
    return array_response(
        media_type,
        indices,
        meta=meta,
        key="indices",
        headers={
            "X-Sampleplan-Stream-Length": str(stream_length),
            "X-Sampleplan-Offset": str(request.offset),
        },
        head_only=head_only,
    )


def batch_page_response(
    media_type: str,
    batches: Int64Array,
    request: StreamRequest,
    num_batches: int,
    batch_size: int,
    head_only: bool,
    *,
    ids: Mapping[str, str],
) -> Response:
    """A page of a rank's batches, ``(rows, batch_size)``, in ``media_type``.

    The JSON body is ``ids`` (the plan), the request's fields, the rank's number of
    batches (``length``) and ``batch_size``, then the rows as ``batches``; every format
    carries ``X-Sampleplan-Stream-Length``, ``X-Sampleplan-Offset`` and
    ``X-Sampleplan-Shape`` (also of an empty page, whose array numpy keeps as
    ``(0, batch_size)``).
    """
    length = request.length(num_batches)
    meta = {
        **ids,
        "epoch": request.epoch,
        "rank": request.rank,
        "world_size": request.world_size,
        "offset": request.offset,
        "length": length,
        "batch_size": batch_size,
        "space": request.space,
    }
    return array_response(
        media_type,
        batches,
        meta=meta,
        key="batches",
        headers={
            "X-Sampleplan-Stream-Length": str(length),
            "X-Sampleplan-Offset": str(request.offset),
            SHAPE_HEADER: f"{batches.shape[0]},{batch_size}",
        },
        head_only=head_only,
    )


#: The header every array of int64 values carries first (``array_response``'s order).
_DTYPE = (b"x-sampleplan-dtype", b"<i8")
_VARY = (b"vary", b"Accept")
_LITTLE_INT64 = np.dtype("<i8")
_MEDIA_TYPES = {media_type: media_type.encode("latin-1") for media_type in ARRAY_MEDIA_TYPES}
_JSON_TYPE = (b"content-type", _MEDIA_TYPES[JSON])
_CLOSING = b"]}"


class PageOpenings:
    """The openings of the JSON heads of floor pages whose meta starts with ids of
    ``names`` (``{"run_id":"...","plan_id":"...",``), by the ids' values: each set of
    ids written once (NOTE [A page at the floor in one step]).

    The opening is ``b""`` for ids a JSON writer would escape (only plain characters are
    written as they are), and the page's head is then written whole by ``json_head``."""

    __slots__ = ("_found", "names")

    #: How many sets of ids are kept before all are forgotten.
    MAX_SIZE = 4096

    def __init__(self, *names: str) -> None:
        self.names = names
        self._found: dict[tuple[str, ...], bytes] = {}

    def of(self, values: tuple[str, ...]) -> bytes:
        """The opening of a head whose ids are ``values`` (in the order of
        :attr:`names`), or ``b""`` when it is not formatted."""
        opening = self._found.get(values)
        if opening is None:
            if all(_PLAIN_ID.fullmatch(text) for text in (*self.names, *values)):
                pairs = (
                    b'"%s":"%s",' % (name.encode("ascii"), value.encode("ascii"))
                    for name, value in zip(self.names, values, strict=True)
                )
                opening = b"{" + b"".join(pairs)
            else:
                opening = b""
            if len(self._found) >= self.MAX_SIZE:
                self._found.clear()
            self._found[values] = opening
        return opening

    def ids(self, values: tuple[str, ...]) -> dict[str, str]:
        """The ids as the meta of the page's response starts with them."""
        return dict(zip(self.names, values, strict=True))


#: The openings of plans' pages (a plan's, a mixture's, a batch plan's) and of runs'.
PLAN_OPENINGS = PageOpenings("plan_id")
RUN_OPENINGS = PageOpenings("run_id", "plan_id")


# NOTE [A page at the floor in one step]
#     A page at the floor was written by four functions in turn (the page, its JSON head,
#     the head's opening, the int64 array's headers), with the page's ids in a dict made
#     for each request and read back into a tuple to find the opening written for them.
#     Under load the server's caches hold little of a request's code and data from one
#     page to the next, and every function called, every object made or looked up, costs
#     memory traffic beside its instructions: a page's part of the floor measured about
#     four times its in-process time in the server. So a stream page is written by one
#     function, :func:`stream_page_at_floor`: its head formatted in place after an
#     opening found by the ids' values (:class:`PageOpenings`), its headers listed as
#     they go out; the same bytes as ``stream_page_response`` (tests compare them).


def stream_page_at_floor(
    media_type: str,
    indices: Int64Array | None,
    numbers: memoryview | None,
    length: int,
    fields: Mapping[str, Any],
    stream_length: int,
    head_only: bool,
    openings: PageOpenings,
    ids: tuple[str, ...],
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The raw headers and the body of :func:`stream_page_response` of a 1-d page, byte
    for byte, made with less work (for the floor, NOTE [Serving at the floor] in
    ``service/api/floor.py``, NOTE [A page at the floor in one step]): from the stream
    query's validated ``fields`` (what the request is made of), the page's number of
    values and the rank's stream length, its ids' values ``ids`` (in the order of
    ``openings.names``); the headers written straight to their raw form, the JSON head
    formatted when the ids are plain, and the page's numbers taken from ``numbers`` when
    given (their JSON text, or a binary page's bytes, NOTE [Numbers written once] in
    ``epoch_cache.py``), else from ``indices``."""
    offset = fields["offset"]
    if media_type == JSON:
        opening = openings.of(ids)
        if opening:
            head = opening + _HEAD % (
                fields["epoch"],
                fields["rank"],
                fields["world_size"],
                offset,
                stream_length,
                fields["space"].encode("ascii"),
                fields["start"],
                _JSON_BOOLS[fields["pad"]],
                _JSON_BOOLS[fields["drop_last"]],
            )
        else:
            head = json_head(
                {
                    **openings.ids(ids),
                    "epoch": fields["epoch"],
                    "rank": fields["rank"],
                    "world_size": fields["world_size"],
                    "offset": offset,
                    "length": stream_length,
                    "space": fields["space"],
                    "start": fields["start"],
                    "pad": fields["pad"],
                    "drop_last": fields["drop_last"],
                },
                "indices",
            )
        if numbers is None:
            assert indices is not None
            body = b"".join((head, json_number_bytes(indices), _CLOSING))
        else:
            body = b"".join((head, numbers, _CLOSING))
        return [
            _DTYPE,
            (b"x-sampleplan-length", b"%d" % length),
            _VARY,
            (b"x-sampleplan-stream-length", b"%d" % stream_length),
            (b"x-sampleplan-offset", b"%d" % offset),
            (b"content-length", b"%d" % len(body)),
            _JSON_TYPE,
        ], body
    return _int64_page_at_floor(
        media_type,
        indices,
        numbers,
        length,
        None,
        (
            (b"x-sampleplan-stream-length", b"%d" % stream_length),
            (b"x-sampleplan-offset", b"%d" % offset),
        ),
        head_only,
    )


def _int64_page_at_floor(
    media_type: str,
    values: Int64Array | None,
    numbers: memoryview | None,
    shape: int | tuple[int, int],
    head: bytes | None,
    headers: tuple[tuple[bytes, bytes], ...],
    head_only: bool,
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The raw headers and the body :func:`~sampleplan.service.api.arrays.array_response`
    gives for an int64 page of ``shape`` (a 1-d page's length, or a matrix's rows and
    columns), with the route's ``headers`` after ``Vary``: a JSON page is ``head`` (the
    page's ``json_head``; ``None`` for a binary page), the numbers and ``]}``, a binary
    page the values' bytes (after a ``.npy`` preamble); the numbers taken from
    ``numbers`` when given (their JSON text, or a binary page's bytes, NOTE [Numbers
    written once] in ``epoch_cache.py``), else written from ``values``."""
    size = shape if isinstance(shape, int) else shape[0] * shape[1]
    written: bytes | memoryview
    if media_type == JSON:
        assert head is not None
        if numbers is None:
            assert values is not None
            written = json_number_bytes(values)
        else:
            written = numbers
        body = b"".join((head, written, _CLOSING))
        content_length = len(body)
    else:
        if numbers is None:
            assert values is not None
            written = little_endian(values).tobytes()
        else:
            written = numbers
        prefix = npy_header(_LITTLE_INT64, shape) if media_type == NPY else b""
        content_length = len(prefix) + len(written)
        body = b"" if head_only else prefix + written if prefix else bytes(written)
    return [
        _DTYPE,
        (b"x-sampleplan-length", b"%d" % size),
        _VARY,
        *headers,
        (b"content-length", b"%d" % content_length),
        (b"content-type", _MEDIA_TYPES[media_type]),
    ], body


def batch_page_at_floor(
    media_type: str,
    batches: Int64Array | None,
    numbers: memoryview | None,
    rows: int,
    batch_size: int,
    fields: Mapping[str, Any],
    length: int,
    head_only: bool,
    plan_id: str,
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """:func:`batch_page_response`'s raw headers and body, byte for byte, as
    :func:`stream_page_at_floor` makes a stream page's: from the batches query's
    validated ``fields``, the page's ``rows`` and the rank's number of batches
    (``length``), its numbers from ``numbers`` (a run of rows' text or bytes) when given,
    else from ``batches``."""
    head = None
    if media_type == JSON:
        opening = PLAN_OPENINGS.of((plan_id,))
        if opening:
            head = opening + _BATCH_HEAD % (
                fields["epoch"],
                fields["rank"],
                fields["world_size"],
                fields["offset"],
                length,
                batch_size,
                fields["space"].encode("ascii"),
            )
        else:
            meta = {
                "plan_id": plan_id,
                "epoch": fields["epoch"],
                "rank": fields["rank"],
                "world_size": fields["world_size"],
                "offset": fields["offset"],
                "length": length,
                "batch_size": batch_size,
                "space": fields["space"],
            }
            head = json_head(meta, "batches")
    return _int64_page_at_floor(
        media_type,
        batches,
        numbers,
        (rows, batch_size),
        head,
        (
            (b"x-sampleplan-stream-length", b"%d" % length),
            (b"x-sampleplan-offset", b"%d" % fields["offset"]),
            (b"x-sampleplan-shape", b"%d,%d" % (rows, batch_size)),
        ),
        head_only,
    )


#: What a JSON page's head is formatted from without a JSON writer: an id of these
#: characters (a plan's or a run's) needs no escape; ints are written in decimal by every
#: JSON writer, bools as ``true``/``false``, and a space is a plain word.
_PLAIN_ID = re.compile(r"[A-Za-z0-9._-]*")
_JSON_BOOLS = {True: b"true", False: b"false"}
_HEAD = (
    b'"epoch":%d,"rank":%d,"world_size":%d,"offset":%d,"length":%d,'
    b'"space":"%s","start":%d,"pad":%s,"drop_last":%s,"indices":['
)
_BATCH_HEAD = (
    b'"epoch":%d,"rank":%d,"world_size":%d,"offset":%d,"length":%d,'
    b'"batch_size":%d,"space":"%s","batches":['
)
