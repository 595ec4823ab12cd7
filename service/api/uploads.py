"""Dataset uploads: the request body's ``Content-Type`` picks the parser.

============================  =========================================================
``application/json``          ``{"labels": [...]}``: all integers or all strings
``application/x-npy``         a ``.npy`` file: 1-d integers or unicode strings
``application/x-npz``         label sets: a ``.npz`` of ``offsets`` and ``values``
``application/octet-stream``  raw little-endian integers;
                              ``?dtype=int32|int64|uint8|uint16`` (default ``int64``)
``text/csv``                  a CSV file with a header; ``?label_column=`` (default
                              ``label``) names the label column; ``?label_separator=``
                              (one character) makes its cells label sets
``application/x-ndjson``      JSON Lines (also ``application/jsonl``); ``?label_column=``
                              names the key
``text/plain``                file paths in ``ImageFolder`` layout, one per line
Parquet, Arrow IPC            ``application/vnd.apache.parquet``,
                              ``application/vnd.apache.arrow.stream`` or ``.file``:
                              ``?label_column=`` names the column; only it is read
============================  =========================================================

Parquet and Arrow bodies are spooled to a temporary file as they arrive (see
:func:`spooled_body`) and read from there by :mod:`sampleplan.core.tables`, so a table
many times larger than its label column is never held in memory.

Text bodies are UTF-8 unless their ``Content-Type`` names a ``charset``. The parsers are
pure (:mod:`sampleplan.core.manifests`); this module only maps media types onto them and
keeps the JSON form's errors identical to FastAPI's own body validation.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.requests import Request

from sampleplan.core import manifests
from sampleplan.core.errors import InputNames
from sampleplan.core.labels import Labels
from sampleplan.core.labelsets import LabelSets, labels_or_label_sets
from sampleplan.core.tables import TableFormat, labels_from_arrow, read_label_column
from sampleplan.service.api import examples
from sampleplan.service.api.problems import too_long_integer
from sampleplan.service.api.schemas import DatasetCreate
from sampleplan.service.errors import InvalidLabels, UnsupportedMediaType

RawDtype = Literal["int32", "int64", "uint8", "uint16"]

JSON = "application/json"
NPY = "application/x-npy"
NPZ = "application/x-npz"
OCTET_STREAM = "application/octet-stream"
CSV = "text/csv"
NDJSON = "application/x-ndjson"
PATHS = "text/plain"
PARQUET = "application/vnd.apache.parquet"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
ARROW_FILE = "application/vnd.apache.arrow.file"

#: Accepted spellings of JSON Lines, all parsed alike.
_NDJSON_ALIASES = frozenset(
    {NDJSON, "application/jsonl", "application/x-jsonlines", "application/jsonlines"}
)

#: Table formats, read by :mod:`sampleplan.core.tables` from a spooled body. An Arrow body
#: may be an IPC file or stream whichever type names it: the reader tells them apart.
TABLE_MEDIA_TYPES: dict[str, TableFormat] = {
    PARQUET: "parquet",
    "application/x-parquet": "parquet",
    ARROW_STREAM: "arrow",
    ARROW_FILE: "arrow",
    "application/vnd.apache.arrow": "arrow",
    "application/x-arrow": "arrow",
}

UPLOAD_MEDIA_TYPES: tuple[str, ...] = (
    JSON,
    NPY,
    NPZ,
    OCTET_STREAM,
    CSV,
    NDJSON,
    PATHS,
    PARQUET,
    ARROW_STREAM,
    ARROW_FILE,
)

_BINARY = {"type": "string", "format": "binary"}
_TEXT = {"type": "string"}

#: Where the OpenAPI document lists the media types of a request body that client
#: generators cannot send (NOTE [Bodies generators can send]).
OTHER_CONTENT = "x-other-content"

#: The ``requestBody`` of ``POST /v1/datasets`` in the OpenAPI document.
UPLOAD_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        JSON: {
            # Added to the document's components by sampleplan.service.api.openapi.
            "schema": {"$ref": "#/components/schemas/DatasetCreate"},
            "examples": {
                "labels": examples.openapi_example("String labels", examples.DATASET_CREATE),
                "ints": examples.openapi_example("Integer labels", {"labels": [0, 0, 0, 1, 2, 2]}),
                "lengths": examples.openapi_example(
                    "Token lengths",
                    examples.DATASET_WITH_LENGTHS_CREATE,
                    "Labels and each sample's token count (mixtures by tokens).",
                ),
                "label_sets": examples.openapi_example(
                    "Label sets", examples.LABEL_SETS_CREATE, "Multi-label: a list per sample."
                ),
            },
        },
        OCTET_STREAM: {"schema": _BINARY},
    },
    OTHER_CONTENT: {
        NPY: {"schema": _BINARY},
        NPZ: {"schema": _BINARY},
        CSV: {"schema": _TEXT, "example": "path,label\na.png,cat\nb.png,dog\n"},
        NDJSON: {
            # JSON Lines: the objects of this array, one per line (not a JSON array). OpenAPI
            # 3.1 has no keyword for a sequence of JSON texts; generators serialise it so.
            "schema": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "object", "description": "One line: a JSON object."},
                "description": "One JSON object per line; the labels are the values under "
                "`label_column` (default `label`), all integers or all strings.",
            },
            "example": '{"path": "a.png", "label": "cat"}\n{"path": "b.png", "label": "dog"}\n',
        },
        PATHS: {"schema": _TEXT, "example": "cat/0001.png\ncat/0002.png\ndog/0001.png\n"},
        PARQUET: {"schema": _BINARY},
        ARROW_STREAM: {"schema": _BINARY},
        ARROW_FILE: {"schema": _BINARY},
    },
}

# NOTE [Bodies generators can send]
#     POST /v1/datasets reads ten media types. Client generators send JSON, forms and
#     application/octet-stream, and nothing else: openapi-python-client warns once for
#     every other media type in a body's `content` and leaves it out. So `content` holds
#     the two forms a generated client can send (JSON, raw integers), and `x-other-content`
#     (OTHER_CONTENT) holds the others, in `content`'s own form: schema and example per
#     media type. The operation's description lists all ten; the schemathesis test reads
#     both maps and fuzzes every one; tests/api/test_client_generators.py holds the
#     generators to no warning.

#: How the core's messages name an upload: the request body and its query parameter.
BODY = InputNames(source="the body", column_option="the 'label_column' query parameter")


def parse_content_type(value: str | None) -> tuple[str | None, dict[str, str]]:
    """``"text/csv; charset=latin-1"`` -> ``("text/csv", {"charset": "latin-1"})``."""
    if not value or not value.strip():
        return None, {}
    media, *params = value.split(";")
    parsed: dict[str, str] = {}
    for param in params:
        name, _, arg = param.partition("=")
        parsed[name.strip().lower()] = arg.strip().strip('"')
    return media.strip().lower(), parsed


def table_format(content_type: str | None) -> TableFormat | None:
    """The table format a ``Content-Type`` names (Parquet or Arrow IPC), else ``None``."""
    media_type, _ = parse_content_type(content_type)
    return TABLE_MEDIA_TYPES.get(media_type or "")


@asynccontextmanager
async def spooled_body(request: Request) -> AsyncIterator[Path]:
    """The request body written to a temporary file as it arrives; removed afterwards.

    Memory stays at one received chunk whatever the body's size; the body-size limit
    (``BodySizeLimitMiddleware``) still counts every chunk and stops the upload at the
    one that crosses it. The writes are plain blocking writes: they land in the page
    cache in microseconds, less than handing each chunk to a thread would cost.
    ``TMPDIR`` chooses where the file goes.
    """
    handle, name = tempfile.mkstemp(prefix="sampleplan-upload-", suffix=".body")
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
        yield path
    finally:
        path.unlink(missing_ok=True)


def labels_from_table_file(
    path: Path,
    fmt: TableFormat,
    *,
    label_column: str,
    max_labels: int | None = None,
    max_decoded_bytes: int | None = None,
) -> Labels | LabelSets:
    """Labels from the ``label_column`` of a Parquet or Arrow IPC file (a spooled body).

    The file is memory-mapped: only the pages of the label column are ever touched. The
    column may decode to at most ``max_decoded_bytes`` (the body limit): a compressed
    column cannot expand past what an uncompressed body could carry.
    """
    if path.stat().st_size == 0:
        name = "a Parquet file" if fmt == "parquet" else "an Arrow IPC file or stream"
        raise InvalidLabels(f"the body is empty; send {name}")
    try:
        with pa.memory_map(str(path)) as source:
            column = read_label_column(
                source,
                fmt,
                label_column,
                max_rows=max_labels,
                max_decoded_bytes=max_decoded_bytes,
                names=BODY,
            )
            labels = labels_from_arrow(column)
            del column
    finally:
        # Arrow's allocator keeps freed memory for reuse; the decoded column (0.4 GB at
        # 10**8 int32 labels) is not needed again, and the plan that follows wants room.
        pa.default_memory_pool().release_unused()
    return labels


def _labels_from_json(body: bytes) -> tuple[Labels | LabelSets, npt.NDArray[np.int64] | None]:
    # The same errors FastAPI gives a JSON body it validates itself (see api/problems.py).
    if not body:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else "the body is not UTF-8"
        position = exc.pos if isinstance(exc, json.JSONDecodeError) else exc.start
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", position),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": message},
                }
            ]
        ) from exc
    except ValueError as exc:  # an integer of more than 4300 digits (Python's limit)
        raise InvalidLabels(too_long_integer()) from exc
    try:
        parsed = DatasetCreate.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from exc
    labels = labels_or_label_sets(parsed.labels)
    if parsed.lengths is None:
        return labels, None
    values = parsed.lengths
    if not isinstance(values, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SAMPLE_TOKENS
        for v in values
    ):
        raise InvalidLabels(
            f"'lengths' should be a list of integers in [0, {MAX_SAMPLE_TOKENS}] (token counts)"
        )
    return labels, checked_lengths(np.array(values, dtype=np.int64), labels.size, "'lengths'")


def labels_from_upload(
    body: bytes,
    content_type: str | None,
    *,
    label_column: str = "label",
    dtype: RawDtype = "int64",
    label_separator: str | None = None,
) -> tuple[Labels | LabelSets, npt.NDArray[np.int64] | None]:
    """Parse an upload body by its ``Content-Type`` (see the module docstring): its labels,
    and the token lengths a JSON body may give (``lengths``).

    Raises :class:`UnsupportedMediaType` for a media type not in the table, and the
    parsers' :class:`~sampleplan.service.errors.InvalidLabels` for bad content.
    """
    media_type, params = parse_content_type(content_type)
    charset = params.get("charset")
    manifests.check_label_separator(label_separator)
    if label_separator is not None and media_type != CSV:
        raise InvalidLabels(
            f"label_separator applies to text/csv uploads only, not to {media_type or 'this body'}"
        )
    if media_type is None:
        if not body:
            return _labels_from_json(body)
        raise UnsupportedMediaType(
            f"the request has no Content-Type; send one of {', '.join(UPLOAD_MEDIA_TYPES)}"
        )
    if media_type == JSON or (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return _labels_from_json(body)
    return _labels_from_other(body, media_type, charset, label_column, dtype, label_separator), None


def _labels_from_other(
    body: bytes,
    media_type: str,
    charset: str | None,
    label_column: str,
    dtype: RawDtype,
    label_separator: str | None,
) -> Labels | LabelSets:
    """Labels of a body that is not JSON (by its media type)."""
    if media_type == NPY:
        return manifests.labels_from_npy(body, names=BODY)
    if media_type == NPZ:
        return manifests.label_sets_from_npz(body, names=BODY)
    if media_type == OCTET_STREAM:
        return manifests.labels_from_raw(body, dtype, names=BODY)
    if media_type == CSV:
        return manifests.labels_from_csv(
            manifests.decode_text(body, charset, "CSV manifest"),
            label_column,
            label_separator,
            names=BODY,
        )
    if media_type in _NDJSON_ALIASES:
        return manifests.labels_from_jsonl(
            manifests.decode_text(body, charset, "JSON Lines manifest"), label_column, names=BODY
        )
    if media_type == PATHS:
        return manifests.labels_from_paths(manifests.decode_text(body, charset, "path list"))
    raise UnsupportedMediaType(
        f"cannot read a dataset from Content-Type {media_type!r}; "
        f"send one of {', '.join(UPLOAD_MEDIA_TYPES)}"
    )


def upload_description() -> str:
    """The operation description of ``POST /v1/datasets``: every accepted body."""
    return (
        "Stores the labels in sample order, named by the SHA-256 of their canonical content: "
        "the same labels give the same id whatever format they came in. 201 the first time, "
        "200 when the same labels were uploaded before.\n\n"
        "The `Content-Type` picks the format:\n\n"
        "| Content-Type | body |\n| --- | --- |\n"
        '| `application/json` | `{"labels": [...]}`, all integers or all strings; or label '
        "sets, `[[0, 3], [2], []]` |\n"
        "| `application/x-npy` | a `.npy` file: a 1-d array of integers or unicode strings "
        "(never unpickled) |\n"
        "| `application/x-npz` | label sets: a `.npz` archive of `offsets` (n + 1 integers) and "
        "`values` (the labels) |\n"
        "| `application/octet-stream` | raw little-endian integers; `dtype=int32`, `int64` "
        "(default), `uint8` or `uint16` |\n"
        "| `text/csv` | a CSV file with a header line; `label_column` (default `label`) names "
        "the column; `label_separator` (one character) splits its cells into label sets |\n"
        "| `application/x-ndjson` | JSON Lines, one object per line; `label_column` names the "
        "key (arrays make label sets) |\n"
        "| `text/plain` | one path per line in `ImageFolder` layout, `class_name/file` |\n"
        "| `application/vnd.apache.parquet` | a Parquet file; `label_column` names the column, "
        "the only one read (a list column makes label sets) |\n"
        "| `application/vnd.apache.arrow.stream`, `application/vnd.apache.arrow.file` | an "
        "Arrow IPC stream or file; `label_column` names the column, the only one read |\n\n"
        "CSV cells that are all plain integers (`-?(0|[1-9][0-9]*)`) make integer labels; "
        "otherwise labels are strings. Path lists give string labels (the class folder names) "
        "in line order; classes are sorted and indexed exactly as "
        "`torchvision.datasets.ImageFolder` indexes them. "
        "Text is UTF-8 unless the Content-Type names a `charset`. "
        "Table columns may hold integers, strings or dictionary-encoded integers or strings; "
        "null labels, floats, booleans and nested types are refused (422).\n\n"
        "This document's `requestBody.content` holds the JSON and raw forms, the ones client "
        f"generators send; `{OTHER_CONTENT}` holds the other formats, in the same form."
    )


#: How the core's messages name a length column: the request body and its query parameter.
LENGTHS_BODY = InputNames(source="the body", column_option="the 'length_column' query parameter")
#: The largest token count one sample may have (their sums stay exact in int64 and float64).
MAX_SAMPLE_TOKENS = 2**32 - 1


def lengths_upload_format(content_type: str | None) -> Literal["parquet", "arrow", "csv", "jsonl"]:
    """The format a ``length_column`` is read from, or a 422 for any other body."""
    fmt = table_format(content_type)
    if fmt is not None:
        return fmt
    media_type, _ = parse_content_type(content_type)
    if media_type == CSV:
        return "csv"
    if media_type in _NDJSON_ALIASES:
        return "jsonl"
    raise InvalidLabels(
        "length_column applies to tables only: Parquet, Arrow, CSV or JSON Lines bodies, "
        f"not to {media_type or 'a body without a Content-Type'}"
    )


def token_lengths_from_upload(
    fmt: Literal["parquet", "arrow", "csv", "jsonl"],
    *,
    column: str,
    size: int,
    path: Path | None = None,
    body: bytes | None = None,
    max_decoded_bytes: int | None = None,
) -> npt.NDArray[np.int64]:
    """The per-sample token counts of column ``column``: integers in
    ``[0, MAX_SAMPLE_TOKENS]``, one per sample (``size`` of them), no nulls."""
    import pyarrow.csv as pa_csv
    import pyarrow.json as pa_json

    try:
        if fmt in ("parquet", "arrow"):
            assert path is not None
            with pa.memory_map(str(path)) as source:
                values: Any = read_label_column(
                    source,
                    fmt,
                    column,
                    max_rows=size,
                    max_decoded_bytes=max_decoded_bytes,
                    names=LENGTHS_BODY,
                )
        else:
            assert body is not None
            reader = pa.BufferReader(body)
            table = pa_csv.read_csv(reader) if fmt == "csv" else pa_json.read_json(reader)
            if column not in table.column_names:
                raise InvalidLabels(
                    f"the body has no column {column!r} (the 'length_column' query parameter); "
                    f"it has {', '.join(repr(n) for n in table.column_names[:20]) or 'none'}"
                )
            values = table.column(column)
    except pa.ArrowException as exc:
        raise InvalidLabels(f"cannot read the length column {column!r}: {exc}") from exc
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if values.null_count or not pa.types.is_integer(values.type):
        raise InvalidLabels(
            f"the length column {column!r} should hold integers (token counts) with no nulls, "
            f"not {values.type}{' with nulls' if values.null_count else ''}"
        )
    return checked_lengths(
        np.asarray(values.to_numpy(zero_copy_only=False)), size, f"the length column {column!r}"
    )


def checked_lengths(lengths: npt.NDArray[Any], size: int, what: str) -> npt.NDArray[np.int64]:
    """Token counts as int64, refused (422) unless integers in ``[0, MAX_SAMPLE_TOKENS]``,
    one per label."""
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu":
        raise InvalidLabels(f"{what} should be a list of integers (token counts)")
    if lengths.shape[0] != size:
        raise InvalidLabels(f"{what} has {lengths.shape[0]} values for {size} labels")
    if lengths.shape[0] and (int(lengths.min()) < 0 or int(lengths.max()) > MAX_SAMPLE_TOKENS):
        raise InvalidLabels(
            f"{what} should hold token counts in [0, {MAX_SAMPLE_TOKENS}]; it has "
            f"{int(lengths.min())} to {int(lengths.max())}"
        )
    return lengths.astype(np.int64)
