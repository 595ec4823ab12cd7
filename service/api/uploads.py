"""Dataset uploads: the request body's ``Content-Type`` picks the parser.

============================  =========================================================
``application/json``          ``{"labels": [...]}``: all integers or all strings
``application/x-npy``         a ``.npy`` file: 1-d integers or unicode strings
``application/octet-stream``  raw little-endian integers; ``?dtype=int32|int64``
                              (default ``int64``)
``text/csv``                  a CSV file with a header; ``?label_column=`` (default
                              ``label``) names the label column
``application/x-ndjson``      JSON Lines (also ``application/jsonl``); ``?label_column=``
                              names the key
``text/plain``                file paths in ``ImageFolder`` layout, one per line
============================  =========================================================

Text bodies are UTF-8 unless their ``Content-Type`` names a ``charset``. The parsers are
pure (:mod:`service.core.manifests`); this module only maps media types onto them and
keeps the JSON form's errors identical to FastAPI's own body validation.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from service.api import examples
from service.api.schemas import DatasetCreate
from service.core import manifests
from service.core.labels import Labels, labels_from_list
from service.errors import UnsupportedMediaType

RawDtype = Literal["int32", "int64"]

JSON = "application/json"
NPY = "application/x-npy"
OCTET_STREAM = "application/octet-stream"
CSV = "text/csv"
NDJSON = "application/x-ndjson"
PATHS = "text/plain"

#: Accepted spellings of JSON Lines, all parsed alike.
_NDJSON_ALIASES = frozenset(
    {NDJSON, "application/jsonl", "application/x-jsonlines", "application/jsonlines"}
)

UPLOAD_MEDIA_TYPES: tuple[str, ...] = (JSON, NPY, OCTET_STREAM, CSV, NDJSON, PATHS)

_BINARY = {"type": "string", "format": "binary"}
_TEXT = {"type": "string"}

#: The ``requestBody`` of ``POST /v1/datasets`` in the OpenAPI document.
UPLOAD_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        JSON: {
            "schema": DatasetCreate.model_json_schema(),
            "examples": {
                "labels": examples.openapi_example("String labels", examples.DATASET_CREATE),
                "ints": examples.openapi_example("Integer labels", {"labels": [0, 0, 0, 1, 2, 2]}),
            },
        },
        NPY: {"schema": _BINARY},
        OCTET_STREAM: {"schema": _BINARY},
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
    },
}


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


def _labels_from_json(body: bytes) -> Labels:
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
    try:
        parsed = DatasetCreate.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from exc
    return labels_from_list(parsed.labels)


def labels_from_upload(
    body: bytes, content_type: str | None, *, label_column: str = "label", dtype: RawDtype = "int64"
) -> Labels:
    """Parse an upload body by its ``Content-Type`` (see the module docstring).

    Raises :class:`UnsupportedMediaType` for a media type not in the table, and the
    parsers' :class:`~service.errors.InvalidLabels` for bad content.
    """
    media_type, params = parse_content_type(content_type)
    charset = params.get("charset")
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
    if media_type == NPY:
        return manifests.labels_from_npy(body)
    if media_type == OCTET_STREAM:
        return manifests.labels_from_raw(body, dtype)
    if media_type == CSV:
        return manifests.labels_from_csv(
            manifests.decode_text(body, charset, "CSV manifest"), label_column
        )
    if media_type in _NDJSON_ALIASES:
        return manifests.labels_from_jsonl(
            manifests.decode_text(body, charset, "JSON Lines manifest"), label_column
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
        '| `application/json` | `{"labels": [...]}`, all integers or all strings |\n'
        "| `application/x-npy` | a `.npy` file: a 1-d array of integers or unicode strings "
        "(never unpickled) |\n"
        "| `application/octet-stream` | raw little-endian integers; `dtype=int32` or `int64` "
        "(default) |\n"
        "| `text/csv` | a CSV file with a header line; `label_column` (default `label`) names "
        "the column |\n"
        "| `application/x-ndjson` | JSON Lines, one object per line; `label_column` names the "
        "key |\n"
        "| `text/plain` | one path per line in `ImageFolder` layout, `class_name/file` |\n\n"
        "CSV cells that are all plain integers (`-?(0|[1-9][0-9]*)`) make integer labels; "
        "otherwise labels are strings. Path lists give string labels (the class folder names) "
        "in line order; classes are sorted and indexed exactly as "
        "`torchvision.datasets.ImageFolder` indexes them. "
        "Text is UTF-8 unless the Content-Type names a `charset`."
    )
