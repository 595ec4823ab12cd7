"""Array responses: content negotiation and the three wire formats of an array.

Every endpoint that answers with one large array (a plan's weights, a page of its
stream) speaks three media types, chosen by the request's ``Accept`` header:

``application/json`` (the default, and what ``*/*`` or no ``Accept`` gets)
    ``{...metadata, "<key>": [...]}``. Written straight to text (FastAPI's encoder walks
    a list item by item, which costs seconds for millions of values) and streamed in
    pieces when large. Floats keep their exact (shortest round-trip) value.
``application/octet-stream``
    The values' bytes and nothing else: little-endian ``int64`` indices or ``float64``
    weights.
``application/x-npy``
    A NumPy ``.npy`` file (format version 1.0) holding the 1-d array: ``np.load`` reads it.

Every array response carries ``X-Sampleplan-Dtype`` (the NumPy dtype string of the
values on the wire, ``<i8`` or ``<f8``) and ``X-Sampleplan-Length`` (how many values the
body holds), plus ``Vary: Accept``. A 2-d array (a page of batches) also carries
``X-Sampleplan-Shape: rows,columns``: its binary body is the values row-major, its
``.npy`` file has that shape, and its JSON value is a list of rows. Binary bodies are
streamed as slices of a memoryview over the array itself, so the array is never copied
into a second buffer; their ``Content-Length`` is exact, so a client can allocate the
result before reading.

An ``Accept`` header that allows none of the three answers 406. Negotiation follows
RFC 9110: the most specific matching media range gives an offered type its ``q``; among
equal ``q`` the more specific range wins, then the one listed first, then JSON.
"""

from __future__ import annotations

import functools
import json
import struct
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import orjson
from fastapi import Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from sampleplan.service.api.schemas import Problem
from sampleplan.service.errors import NotAcceptable

JSON = "application/json"
OCTET_STREAM = "application/octet-stream"
NPY = "application/x-npy"

#: What an array endpoint offers, in the server's order of preference.
ARRAY_MEDIA_TYPES: tuple[str, ...] = (JSON, OCTET_STREAM, NPY)

DTYPE_HEADER = "X-Sampleplan-Dtype"
LENGTH_HEADER = "X-Sampleplan-Length"
SHAPE_HEADER = "X-Sampleplan-Shape"

#: Size of the pieces a binary body is sent in. Measured on loopback (1e7 int64 values,
#: httpx reading with ``iter_raw``): 256 KiB to 1 MiB pieces all ran at the client's
#: receive speed; much smaller pieces add per-message overhead in the server.
CHUNK_BYTES = 1 << 20

#: Values per piece of a streamed JSON array (formatting runs in the threadpool).
JSON_CHUNK_VALUES = 1 << 16


# -- negotiation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _MediaRange:
    type: str
    subtype: str
    q: float
    position: int

    def specificity(self, media_type: str) -> int:
        """How specifically this range matches ``media_type``; 0 when it does not."""
        main, _, sub = media_type.partition("/")
        if self.type == "*" and self.subtype == "*":
            return 1
        if self.type != main:
            return 0
        if self.subtype == "*":
            return 2
        return 3 if self.subtype == sub else 0


def _parse_accept(accept: str) -> list[_MediaRange]:
    """The media ranges of an ``Accept`` value; malformed entries are skipped."""
    ranges: list[_MediaRange] = []
    for position, entry in enumerate(accept.split(",")):
        media, *params = (part.strip() for part in entry.split(";"))
        if not media:
            continue
        if media == "*":  # an old shorthand some clients still send
            media = "*/*"
        main, slash, sub = media.lower().partition("/")
        if not slash or not main or not sub or (main == "*" and sub != "*"):
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
        if not 0.0 <= q <= 1.0:
            continue
        ranges.append(_MediaRange(main, sub, q, position))
    return ranges


# Clients send the same few Accept values again and again: each is parsed once. (A value
# that allows nothing raises every time: exceptions are not cached.)
@functools.lru_cache(maxsize=256)
def negotiate(accept: str | None, offered: Sequence[str] = ARRAY_MEDIA_TYPES) -> str:
    """The offered media type the ``Accept`` value prefers; raises :class:`NotAcceptable`.

    No header, an empty one, or one with no well-formed entry means "anything", which
    gets ``offered[0]``.
    """
    ranges = _parse_accept(accept) if accept else []
    if not ranges:
        return offered[0]
    best: tuple[float, int, int, int] | None = None
    chosen: str | None = None
    for preference, media_type in enumerate(offered):
        matches = [(r.specificity(media_type), r) for r in ranges]
        matches = [(s, r) for s, r in matches if s > 0]
        if not matches:
            continue
        specificity, rng = max(matches, key=lambda m: (m[0], -m[1].position))
        if rng.q <= 0.0:
            continue
        key = (rng.q, specificity, -rng.position, -preference)
        if best is None or key > best:
            best, chosen = key, media_type
    if chosen is None:
        raise NotAcceptable(
            f"this endpoint answers {', '.join(offered)}; the request's Accept header "
            f"({accept!r}) allows none of them"
        )
    return chosen


async def accepted_array_type(request: Request) -> str:
    """The dependency behind :data:`ArrayMediaType`: negotiation happens before any work.

    Async so that FastAPI calls it on the event loop instead of in its threadpool.
    """
    return negotiate(request.headers.get("accept"))


#: The media type an array endpoint answers this request with (406 raised before the body).
ArrayMediaType = Annotated[str, Depends(accepted_array_type)]


# -- writing -------------------------------------------------------------------------------


#: :func:`negotiate`'s choice among the array types by ``Accept`` value (raw), bounded.
_NEGOTIATED: dict[bytes | None, str] = {}
_MAX_NEGOTIATED = 256


def negotiated(accept: bytes | None) -> str:
    """:func:`negotiate` of a raw ``Accept`` value among the array types, each value
    negotiated once (a few are sent again and again); raises :class:`NotAcceptable`."""
    media_type = _NEGOTIATED.get(accept)
    if media_type is None:
        media_type = negotiate(None if accept is None else accept.decode("latin-1"))
        if len(_NEGOTIATED) >= _MAX_NEGOTIATED:
            _NEGOTIATED.clear()
        _NEGOTIATED[accept] = media_type
    return media_type


def npy_header(dtype: np.dtype[Any], length: int | tuple[int, ...]) -> bytes:
    """The ``.npy`` v1.0 preamble of a C-order array: magic, header length, header.

    ``length`` is a 1-d array's length or any array's shape. The header is padded with
    spaces and a newline so the data starts at a multiple of 64 bytes, as ``np.save``
    writes it.
    """
    shape = (length,) if isinstance(length, int) else tuple(length)
    shape_text = f"({shape[0]},)" if len(shape) == 1 else f"({', '.join(map(str, shape))})"
    header = f"{{'descr': {dtype.str!r}, 'fortran_order': False, 'shape': {shape_text}, }}"
    padding = -(10 + len(header) + 1) % 64
    text = (header + " " * padding + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def little_endian(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``values`` as a contiguous little-endian 1-d array (no copy when it already is)."""
    return np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))


async def _memory_chunks(prefix: bytes, data: memoryview) -> AsyncIterator[bytes | memoryview]:
    # Slicing a memoryview is O(1) and copies nothing: this never blocks the event loop.
    if prefix:
        yield prefix
    for start in range(0, len(data), CHUNK_BYTES):
        yield data[start : start + CHUNK_BYTES]


def _json_number_text(values: npt.NDArray[Any]) -> str:
    if values.dtype.kind == "f":
        if values.ndim == 2:
            return ",".join(f"[{_json_number_text(row)}]" for row in values)
        return ",".join(map(float.__repr__, values.tolist()))
    # orjson writes an integer array (rows of a 2-d one as nested lists) straight from its
    # buffer, 5-10x faster than str(); it takes native byte order and C order only.
    native = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("="))
    return orjson.dumps(native, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].decode("ascii")


def json_number_bytes(values: npt.NDArray[Any]) -> bytes:
    """:func:`_json_number_text`, as bytes (no text made of an integer array's)."""
    if values.dtype.kind == "f":
        return _json_number_text(values).encode("ascii")
    native = values
    if not (values.dtype.isnative and values.flags.c_contiguous):
        native = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("="))
    return orjson.dumps(native, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]


#: Types of meta values that orjson writes as ``json.dumps`` writes them (a float's
#: text may differ; an int beyond 64 bits it refuses).
_PLAIN_TYPES = frozenset({str, int, bool, type(None)})


def json_head(meta: Mapping[str, Any], key: str) -> bytes:
    """``{...meta,"<key>":[`` as ``json.dumps(meta, separators=(",", ":"))`` writes it.

    ``json``, not orjson, for anything but plain values in printable ASCII: meta echoes the
    request (an offset may be beyond 64 bits), ``json`` escapes every non-ASCII character,
    and orjson writes them (and DEL) as they are. For what both write alike, orjson
    takes a fraction of the time (a cached page's head is written for every request).
    """
    text: bytes | None = None
    if _PLAIN_TYPES.issuperset(map(type, meta.values())):
        try:
            text = orjson.dumps(meta)
        except TypeError:  # an int beyond 64 bits, a key that is not a str
            text = None
        if text is not None and (not text.isascii() or b"\x7f" in text):
            text = None
    if text is None:
        text = json.dumps(dict(meta), separators=(",", ":")).encode("ascii")
    comma = b"," if meta else b""
    return text[:-1] + comma + b'"' + key.encode("ascii") + b'":['


def _json_chunks(head: str, values: npt.NDArray[Any], step: int) -> Iterator[str]:
    # A plain iterator: Starlette runs each step in its threadpool, off the event loop.
    yield head
    for start in range(0, values.shape[0], step):
        text = _json_number_text(values[start : start + step])
        yield text if start == 0 else "," + text
    yield "]}"


def array_response(
    media_type: str,
    values: npt.NDArray[Any],
    *,
    meta: Mapping[str, Any],
    key: str,
    headers: Mapping[str, str] | None = None,
    head_only: bool = False,
    status_code: int = 200,
) -> Response:
    """``values`` in the negotiated ``media_type`` (see the module docstring).

    ``meta`` and ``key`` shape the JSON body ``{**meta, key: [...]}``; binary bodies carry
    only the values, and ``headers`` (route-specific ``X-Sampleplan-*`` metadata) go on
    every format. ``head_only`` answers a ``HEAD`` request for a binary type with the same
    headers (``Content-Length`` included) and no body. ``values`` may be 2-d (see the
    module docstring).
    """
    wire = little_endian(values)
    all_headers = {
        DTYPE_HEADER: wire.dtype.str,
        LENGTH_HEADER: str(wire.size),
        "Vary": "Accept",
        **(headers or {}),
    }
    if wire.ndim == 2:
        all_headers[SHAPE_HEADER] = f"{wire.shape[0]},{wire.shape[1]}"
    if media_type in (OCTET_STREAM, NPY):
        data = wire.reshape(-1).data.cast("B")
        prefix = npy_header(wire.dtype, wire.shape) if media_type == NPY else b""
        all_headers["Content-Length"] = str(len(prefix) + len(data))
        if head_only:
            return Response(status_code=status_code, media_type=media_type, headers=all_headers)
        if len(data) <= CHUNK_BYTES:
            # One piece: a plain response sends it in one message, a streamed one in three.
            return Response(
                prefix + data.tobytes(),
                status_code=status_code,
                media_type=media_type,
                headers=all_headers,
            )
        return StreamingResponse(
            _memory_chunks(prefix, data),
            status_code=status_code,
            media_type=media_type,
            headers=all_headers,
        )
    head = json_head(meta, key)
    # HEAD of JSON gets the whole response (the server drops the body): its length is
    # only known once the text is written.
    if wire.size <= JSON_CHUNK_VALUES:
        content = head + json_number_bytes(wire) + b"]}"
        return Response(
            content=content, status_code=status_code, media_type=JSON, headers=all_headers
        )
    step = max(1, JSON_CHUNK_VALUES // max(1, wire.size // max(1, wire.shape[0])))
    return StreamingResponse(
        _json_chunks(head.decode("ascii"), wire, step),
        status_code=status_code,
        media_type=JSON,
        headers=all_headers,
    )


def array_json_response(
    meta: dict[str, Any], key: str, values: npt.NDArray[Any], *, status_code: int = 200
) -> Response:
    """``{**meta, key: [...]}`` as JSON (for endpoints that answer JSON only)."""
    return array_response(JSON, values, meta=meta, key=key, status_code=status_code)


_BINARY_SCHEMA = {"type": "string", "format": "binary"}


def array_responses(
    what: str, dtype: str, json_example: Mapping[str, Any], model: type[BaseModel]
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of an array endpoint: its three media types and headers, and 406.

    ``model`` is the JSON body's schema (the route returns a raw ``Response``, so FastAPI
    cannot infer it, and the fuzz test checks answers against it).
    """
    return {
        200: {
            "model": model,
            "description": (
                f"{what}. JSON by default; with `Accept: application/octet-stream` the raw "
                f"little-endian `{dtype}` values, with `Accept: application/x-npy` a `.npy` file."
            ),
            "content": {
                JSON: {"example": dict(json_example)},
                OCTET_STREAM: {"schema": _BINARY_SCHEMA},
                NPY: {"schema": _BINARY_SCHEMA},
            },
            "headers": {
                DTYPE_HEADER: {
                    "description": f"NumPy dtype string of the values on the wire: `{dtype}`.",
                    "schema": {"type": "string"},
                },
                LENGTH_HEADER: {
                    "description": "How many values the body holds.",
                    "schema": {"type": "integer"},
                },
            },
        },
        406: {
            "model": Problem,
            "description": "The Accept header allows none of application/json, "
            "application/octet-stream, application/x-npy.",
        },
    }
