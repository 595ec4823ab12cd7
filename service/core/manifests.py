"""Labels from manifest files: CSV, JSON Lines, ``.npy`` and ImageFolder path lists.

Pure parsing (text or bytes in, :class:`~service.core.labels.Labels` out, no file I/O), so
that the HTTP layer and the ``sampleplan`` CLI read manifests the same way. Every problem
is an :class:`~service.errors.InvalidLabels` that names the line or row at fault.

NOTE [Labels from text]
    CSV cells are text. A column whose every value is a canonical decimal integer
    (``0``, ``17``, ``-3``; not ``007`` or ``+1``, which would merge with ``7`` and
    ``1``) gives integer labels, so a CSV of ``0/1/2`` targets names the same dataset as
    the JSON list ``[0, 1, 2]``; any other column gives string labels. Surrounding
    whitespace is dropped and an empty cell is an error. JSON Lines values keep their
    JSON type: integers or strings, never floats, booleans or null.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence

import numpy as np

from service.core.labels import Labels, labels_from_array, labels_from_list, labels_from_strings
from service.errors import InvalidLabels

#: The column read when none is named and the header has one called this.
DEFAULT_COLUMN = "label"

_CANONICAL_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_INT64 = np.iinfo(np.int64)


def _strip_bom(text: str) -> str:
    return text[1:] if text.startswith("\ufeff") else text


def _pick_column(columns: Sequence[str], column: str | None, where: str) -> str:
    if column is not None:
        if column not in columns:
            raise InvalidLabels(
                f"{where} has no column {column!r}; its columns are {', '.join(map(repr, columns))}"
            )
        return column
    if DEFAULT_COLUMN in columns:
        return DEFAULT_COLUMN
    if len(columns) == 1:
        return columns[0]
    raise InvalidLabels(
        f"{where} has columns {', '.join(map(repr, columns))}: name the label column "
        f"(none is called {DEFAULT_COLUMN!r})"
    )


def _typed(values: list[str]) -> Labels:
    """String cells to labels: integers when every cell is one; see NOTE [Labels from text]."""
    if all(_CANONICAL_INT.fullmatch(v) for v in values):
        ints = [int(v) for v in values]
        if all(_INT64.min <= v <= _INT64.max for v in ints):
            return labels_from_array(np.array(ints, dtype=np.int64))
    return labels_from_strings(values)


def labels_from_csv(text: str, column: str | None = None) -> Labels:
    """Labels from a CSV manifest with a header row, one sample per row, in row order.

    ``column`` names the label column; by default the column ``label``, or the only
    column. See NOTE [Labels from text] for how cells become integer or string labels.
    """
    reader = csv.reader(io.StringIO(_strip_bom(text), newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise InvalidLabels(
                "the CSV manifest is empty: expected a header row, then one row per sample"
            )
        names = [cell.strip() for cell in header]
        index = names.index(_pick_column(names, column, "the CSV header"))
        values: list[str] = []
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank lines, e.g. a trailing newline
            line = reader.line_num
            if index >= len(row):
                raise InvalidLabels(
                    f"CSV line {line} has {len(row)} cells, but the label column "
                    f"{names[index]!r} is cell {index + 1}"
                )
            value = row[index].strip()
            if not value:
                raise InvalidLabels(
                    f"CSV line {line} has an empty label in column {names[index]!r}"
                )
            values.append(value)
    except csv.Error as exc:
        raise InvalidLabels(f"the CSV manifest cannot be parsed: {exc}") from exc
    if not values:
        raise InvalidLabels("the CSV manifest has a header but no rows: labels must not be empty")
    return _typed(values)


def _jsonl_values(text: str, column: str | None) -> Iterator[object]:
    key: str | None = None
    for number, line in enumerate(_strip_bom(text).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidLabels(f"JSON Lines line {number} is not valid JSON: {exc.msg}") from exc
        if isinstance(item, dict):
            if key is None:
                key = _pick_column(list(item), column, f"JSON Lines line {number}")
            if key not in item:
                raise InvalidLabels(f"JSON Lines line {number} has no key {key!r}")
            value = item[key]
        elif column is None:
            value = item  # a bare label per line
        else:
            raise InvalidLabels(
                f"JSON Lines line {number} is a {type(item).__name__}, "
                f"not an object with key {column!r}"
            )
        if type(value) not in (int, str):
            shown = json.dumps(value)[:40]
            raise InvalidLabels(
                f"JSON Lines line {number}: labels must be integers or strings, got {shown}"
            )
        yield value


def labels_from_jsonl(text: str, column: str | None = None) -> Labels:
    """Labels from JSON Lines: one object per line (``{"path": …, "label": 3}``), in line order.

    ``column`` names the key; by default ``label``, or the only key. Without ``column``,
    lines may also be bare labels (``3`` or ``"cat"``). Labels keep their JSON type.
    """
    values = list(_jsonl_values(text, column))
    if not values:
        raise InvalidLabels("the JSON Lines manifest has no lines: labels must not be empty")
    return labels_from_list(values)


def labels_from_npy(data: bytes) -> Labels:
    """Labels from a ``.npy`` file's bytes: a 1-d integer or unicode string array.

    Pickled (object) arrays are refused: loading them would run code from the upload.
    """
    if data.startswith(b"PK"):
        raise InvalidLabels("this is an .npz archive, not a .npy file: save one array with np.save")
    if not data.startswith(b"\x93NUMPY"):
        raise InvalidLabels("not a .npy file: it does not start with the .npy magic bytes")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise InvalidLabels(
                "the .npy array holds Python objects, which are not loaded; save integer or "
                "unicode string labels (np.asarray(labels, dtype=str))"
            ) from exc
        raise InvalidLabels(f"not a valid .npy file: {exc}") from exc
    except (OSError, EOFError) as exc:
        raise InvalidLabels(f"not a valid .npy file: {exc}") from exc
    if array.dtype.kind == "U":
        if array.ndim != 1:
            raise InvalidLabels(f"labels must be a 1-d array, got shape {array.shape}")
        return labels_from_strings(array.tolist())
    return labels_from_array(array)


def labels_from_paths(text: str) -> Labels:
    """Labels from a list of file paths in ImageFolder layout ``class_name/file``, one a line.

    A sample's class is its first path component; classes are sorted and indexed exactly as
    ``torchvision.datasets.ImageFolder`` indexes its class folders (``class_to_idx``).
    Samples keep the order of the lines (ImageFolder itself walks files sorted by class
    and name: sort the list first to get its sample order). Paths are relative to the
    ImageFolder root; ``./`` prefixes and Windows separators are accepted.
    """
    classes: list[str] = []
    for number, line in enumerate(_strip_bom(text).splitlines(), start=1):
        path = line.strip().replace("\\", "/")
        if not path:
            continue
        while path.startswith("./"):
            path = path[2:]
        if path.startswith("/") or re.match(r"[A-Za-z]:/", path):
            raise InvalidLabels(
                f"path list line {number} is absolute ({line.strip()!r}): write paths relative to "
                "the ImageFolder root, as class_name/file"
            )
        name, sep, rest = path.partition("/")
        if not sep or not name or not rest.strip("/"):
            raise InvalidLabels(
                f"path list line {number} ({line.strip()!r}) is not in ImageFolder layout "
                "class_name/file"
            )
        classes.append(name)
    if not classes:
        raise InvalidLabels("the path list is empty: labels must not be empty")
    return labels_from_strings(classes)
