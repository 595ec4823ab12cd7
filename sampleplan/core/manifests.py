"""Manifests: labels given as a file rather than a JSON list, parsed into :class:`Labels`.

Pure functions from text or bytes to canonical labels; each raises
:class:`~sampleplan.core.errors.InvalidLabels` with a message that names the line (or byte) at
fault. The same labels give the same dataset whatever the format they came in:

``labels_from_npy(data)``
    A NumPy ``.npy`` file (never unpickled) holding a 1-d array of integers (any width,
    either byte order) or of unicode strings (``<U…``). Byte strings (``S``), booleans,
    floats and objects are refused. (NumPy's unicode arrays cannot hold a trailing NUL
    character in a string; labels with one must go as JSON.)
``labels_from_raw(data, dtype)``
    The bytes of a little-endian ``int32`` or ``int64`` array, nothing else.
``labels_from_csv(text, column, label_separator=None)``
    A CSV file with a header line; the labels are the column named ``column``. With a
    ``label_separator`` (one character) each cell is a label set split on it; an empty
    cell is a sample with no label.
``labels_from_jsonl(text, column)``
    JSON Lines: one JSON object per line; the labels are the values under ``column``
    (arrays make label sets).
``label_sets_from_npz(data)``
    A NumPy ``.npz`` archive (``np.savez``, uncompressed, never unpickled) with two
    arrays, ``offsets`` (``n + 1`` integers) and ``values`` (the labels, integers or
    unicode strings): label sets as CSR.
``labels_from_paths(text)``
    One file path per line, relative to an ``ImageFolder`` root: ``class_name/file``.

NOTE [Integers in text manifests]
    A CSV cell is text. A label column whose every cell is an integer written plainly
    (``-?(0|[1-9][0-9]*)``: no sign ``+``, no leading zeros, no spaces) holds integer
    labels, exactly as if ``[0, 3, 1, ...]`` had been uploaded as JSON. Any other cell
    makes the whole column strings, so ``"007"`` and ``"7"`` stay two classes. Cells are
    taken as written: no whitespace is stripped. In JSON Lines the JSON type decides.

NOTE [ImageFolder order]
    ``torchvision.datasets.ImageFolder`` names classes after the root's sub-folders,
    sorted as Python sorts strings, and indexes them ``0..K-1`` in that order; that is
    exactly how string labels are canonicalised here, so class ``i`` of the dataset is
    ``ImageFolder.classes[i]``. The *samples* keep the order of the lines (ImageFolder
    itself walks classes in order, then sorted file names; list the paths in that order
    to index samples as it does: the client's ``create_dataset_from_folder`` does). The
    class is the first path component (:func:`sampleplan.core.imagefolder.class_of_path`,
    the rules shared with the client's folder listing); deeper folders belong to it, as
    ``os.walk`` under a class folder finds them. Every line is a sample: filter by file
    extension before uploading. Separators are ``/``; a leading ``./`` is dropped;
    absolute paths are refused. A class folder ImageFolder would find empty cannot
    appear here (ImageFolder refuses those by default anyway).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from sampleplan.core.errors import PLAIN_INPUT, InputNames, InvalidLabels, UnsupportedEncoding
from sampleplan.core.imagefolder import class_of_path
from sampleplan.core.labels import Labels, labels_from_array, labels_from_list, labels_from_strings
from sampleplan.core.labelsets import LabelSets, label_sets_from_csr, label_sets_from_list

__all__ = [
    "RAW_DTYPES",
    "decode_text",
    "label_sets_from_npz",
    "labels_from_csv",
    "labels_from_jsonl",
    "labels_from_npy",
    "labels_from_paths",
    "labels_from_raw",
]

#: The element types of a raw upload, by the name the API takes.
RAW_DTYPES: dict[str, np.dtype[np.integer]] = {
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    # Narrow forms of class indices: 10**8 labels of 1000 classes are 0.2 GB as uint16.
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
}

_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_INT64_MAX = np.iinfo(np.int64).max
#: The longest plain integer that can be an int64: ``-9223372036854775808``.
_INT64_DIGITS = 20
_NPY_MAGIC = b"\x93NUMPY"
_BOM = "\ufeff"


def _show(value: str, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decode_text(data: bytes, charset: str | None, what: str) -> str:
    """``data`` as text: UTF-8 (a leading BOM dropped) unless ``charset`` names another.

    Raises :class:`InvalidLabels` (422) for bytes that are not valid in the charset and
    :class:`UnsupportedEncoding` (415) for a charset Python does not know.
    """
    name = (charset or "utf-8").strip().strip('"').lower()
    codec = "utf-8-sig" if name in ("utf-8", "utf8") else name
    try:
        return data.decode(codec)
    except LookupError as exc:
        raise UnsupportedEncoding(
            f"unknown charset {charset!r} for the {what}; send UTF-8"
        ) from exc
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start : exc.start + 1].hex()
        hint = (
            ""
            if charset
            else " (or name its charset, e.g. Content-Type: text/csv; charset=latin-1)"
        )
        raise InvalidLabels(
            f"the {what} is not valid {name.upper() if charset else 'UTF-8'}: byte 0x{byte} at "
            f"offset {exc.start} (line {line}); send UTF-8{hint}"
        ) from exc


def _int_cell(cell: str) -> int:
    """An integer cell as an int; one too long for int64 is refused before ``int()``, which
    would spend quadratic time on it (or refuse past 4300 digits with a ValueError)."""
    if len(cell) > _INT64_DIGITS:
        raise InvalidLabels(
            f"integer labels must fit in 64 bits (int64), but a cell has {len(cell)} characters"
        )
    return int(cell)


def _typed(values: Sequence[str]) -> Labels:
    """Labels from text cells: integers if every cell is one, else strings (NOTE above)."""
    if all(_INTEGER.fullmatch(v) for v in values):
        return labels_from_list([_int_cell(v) for v in values])
    return labels_from_strings(values)


def check_label_separator(label_separator: str | None) -> None:
    """A label separator is one character (not a quote or a line break)."""
    if label_separator is None:
        return
    if len(label_separator) != 1 or label_separator in '"\r\n':
        raise InvalidLabels(
            f"label_separator must be one character (not a quote or a line break), "
            f"got {label_separator!r}"
        )


def labels_from_csv(
    text: str,
    column: str = "label",
    label_separator: str | None = None,
    *,
    names: InputNames = PLAIN_INPUT,
) -> Labels | LabelSets:
    """Labels from the column ``column`` of a CSV file with a header line.

    Blank lines are skipped. Every other line must have as many fields as the header.
    With ``label_separator`` the cells are label sets (``"cat|dog"``; an empty cell has
    no label), typed as NOTE [Integers in text manifests] says over all their labels.
    """
    check_label_separator(label_separator)
    if text.startswith(_BOM):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    values: list[str] = []
    try:
        header = next((row for row in reader if row), None)
        if header is None:
            raise InvalidLabels(
                "the CSV manifest is empty: it needs a header line naming the columns, "
                "then one line per sample"
            )
        if header.count(column) != 1:
            if column in header:
                raise InvalidLabels(f"the CSV header names the column {column!r} more than once")
            shown = ", ".join(_show(name) for name in header[:20])
            raise InvalidLabels(
                f"the CSV header has no column {column!r} (its columns: {shown}); "
                f"name the label column with {names.column_option}"
            )
        at = header.index(column)
        width = len(header)
        for row in reader:
            if not row:
                continue
            if len(row) != width:
                raise InvalidLabels(
                    f"line {reader.line_num} of the CSV manifest has {len(row)} fields, "
                    f"but the header has {width}"
                )
            value = row[at]
            if value == "" and label_separator is None:
                raise InvalidLabels(
                    f"line {reader.line_num} of the CSV manifest has an empty {column!r} field"
                )
            values.append(value)
    except csv.Error as exc:
        raise InvalidLabels(
            f"line {reader.line_num} of the CSV manifest is not valid CSV: {exc}"
        ) from exc
    if not values:
        raise InvalidLabels("the CSV manifest has a header but no rows")
    if label_separator is not None:
        return _typed_sets([v.split(label_separator) if v else [] for v in values])
    return _typed(values)


def _typed_sets(sets: list[list[str]]) -> LabelSets:
    """Label sets from text cells: integers if every label is one, else strings."""
    for number, labels in enumerate(sets):
        if "" in labels:
            raise InvalidLabels(
                f"row {number + 1} of the CSV manifest has an empty label between separators"
            )
    if all(_INTEGER.fullmatch(v) for labels in sets for v in labels):
        return label_sets_from_list([[_int_cell(v) for v in labels] for labels in sets])
    return label_sets_from_list(sets)


def labels_from_jsonl(
    text: str, column: str = "label", *, names: InputNames = PLAIN_INPUT
) -> Labels | LabelSets:
    """Labels from JSON Lines: the value under ``column`` in each line's object.

    Blank lines are skipped. Values must be all integers or all strings (not booleans,
    floats or null), as in a JSON upload; or all arrays of them (label sets).
    """
    if text.startswith(_BOM):
        text = text[1:]
    values: list[int | str | list[Any]] = []
    first_kind: type | None = None
    first_line = 0
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidLabels(
                f"line {number} of the JSON Lines manifest is not valid JSON: {exc.msg}"
            ) from exc
        except ValueError as exc:  # an integer of more than 4300 digits
            raise InvalidLabels(
                f"line {number} of the JSON Lines manifest has an integer too long to read; "
                "integer labels must fit in 64 bits (int64)"
            ) from exc
        if not isinstance(record, dict):
            raise InvalidLabels(
                f"line {number} of the JSON Lines manifest is a {type(record).__name__}, "
                f"not a JSON object"
            )
        if column not in record:
            raise InvalidLabels(
                f"line {number} of the JSON Lines manifest has no {column!r} key; "
                f"name the label key with {names.column_option}"
            )
        value = record[column]
        kind = type(value)
        if kind is not int and kind is not str and kind is not list:
            what = (
                "null"
                if value is None
                else f"a {'boolean' if kind is bool else kind.__name__} ({value!r})"
            )
            raise InvalidLabels(
                f"line {number} of the JSON Lines manifest: {column!r} is {what}; "
                f"labels must be integers or strings (or arrays of them)"
            )
        if first_kind is None:
            first_kind, first_line = kind, number
        elif kind is not first_kind:
            raise InvalidLabels(
                f"line {number} of the JSON Lines manifest: {column!r} is a {kind.__name__} "
                f"but on line {first_line} it is a {first_kind.__name__}; "
                f"labels must be all integers or all strings"
            )
        values.append(value)
    if not values:
        raise InvalidLabels("the JSON Lines manifest is empty: it needs one JSON object per line")
    if first_kind is list:
        return label_sets_from_list(values)
    return labels_from_list(values)


def label_sets_from_npz(data: bytes, *, names: InputNames = PLAIN_INPUT) -> LabelSets:
    """Label sets from a ``.npz`` archive of ``offsets`` and ``values`` (never unpickled)."""
    if not data.startswith(b"PK"):
        raise InvalidLabels(
            f"{names.source} is not a .npz archive (np.savez): it is not a zip file"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as members:
            # Compressed members could expand far beyond the body limit: refuse them.
            if any(info.compress_type != zipfile.ZIP_STORED for info in members.infolist()):
                raise InvalidLabels(
                    "the .npz archive is compressed; save it with np.savez, not "
                    "np.savez_compressed (the upload's size limit must bound its arrays)"
                )
            arrays = {n.removesuffix(".npy") for n in members.namelist() if n.endswith(".npy")}
            if not {"offsets", "values"} <= arrays:
                raise InvalidLabels(
                    "a label-set .npz holds two arrays, 'offsets' (n + 1 integers) and "
                    f"'values' (the labels); this one has {sorted(arrays)}"
                )
            # Stored members are no larger than the body; each is read as a .npy is.
            offsets = _read_npy(members.read("offsets.npy"), "'offsets' in the .npz archive")
            values = _read_npy(members.read("values.npy"), "'values' in the .npz archive")
    except InvalidLabels:
        raise
    except (ValueError, EOFError, OSError, KeyError, zipfile.BadZipFile) as exc:
        raise InvalidLabels(f"the .npz archive cannot be read: {exc}") from exc
    if values.dtype.kind == "S":
        raise InvalidLabels(
            "label values must be integers or unicode strings, got byte strings; "
            "save them as a unicode array (e.g. values.astype(str))"
        )
    return label_sets_from_csr(offsets, values)


def _read_npy(data: bytes, what: str) -> npt.NDArray[Any]:
    """The array of a ``.npy`` file (never unpickled), once its header is checked against
    the bytes that follow it: a header may declare any shape, and reading one that
    declares more data than there is would allocate the declared size first."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        declared = math.prod(shape) * dtype.itemsize
        remaining = len(data) - stream.tell()
        if declared > remaining:
            raise InvalidLabels(
                f"{what} cannot be read: its header declares shape {shape} of {dtype.str}, "
                f"{declared} bytes, but only {remaining} bytes follow it"
            )
        return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    except InvalidLabels:
        raise
    except (ValueError, EOFError, OSError, SyntaxError, TypeError, OverflowError) as exc:
        raise InvalidLabels(f"{what} cannot be read: {exc}") from exc


def labels_from_npy(data: bytes, *, names: InputNames = PLAIN_INPUT) -> Labels:
    """Labels from a ``.npy`` file: a 1-d array of integers or unicode strings."""
    if not data.startswith(_NPY_MAGIC):
        hint = " (that is a .npz archive; send one array as .npy)" if data.startswith(b"PK") else ""
        raise InvalidLabels(
            f"{names.source} is not a .npy file: it does not start with the .npy magic string{hint}"
        )
    array = _read_npy(data, "the .npy file")
    if array.ndim != 1:
        raise InvalidLabels(f"labels must be a 1-d array, got shape {array.shape}")
    kind = array.dtype.kind
    if kind == "U":
        if array.size == 0:
            raise InvalidLabels("labels must not be empty")
        return labels_from_strings(array.tolist())
    if kind == "S":
        raise InvalidLabels(
            f"labels must be integers or unicode strings, got byte strings ({array.dtype.str}); "
            f"save them as a unicode array (e.g. array.astype(str))"
        )
    if kind == "u" and array.size and int(array.max()) > _INT64_MAX:
        raise InvalidLabels("integer labels must fit in 64 bits (int64)")
    if kind in "iu":
        array = array.astype(array.dtype.newbyteorder("="), copy=False)
    return labels_from_array(array)


def labels_from_raw(
    data: bytes, dtype: str = "int64", *, names: InputNames = PLAIN_INPUT
) -> Labels:
    """Labels from the raw bytes of a little-endian ``int32``, ``int64``, ``uint8`` or
    ``uint16`` array."""
    wire = RAW_DTYPES.get(dtype)
    if wire is None:
        raise InvalidLabels(
            f"dtype should be one of {', '.join(RAW_DTYPES)}, but got dtype={dtype!r}"
        )
    if len(data) % wire.itemsize:
        raise InvalidLabels(
            f"raw {dtype} labels take {wire.itemsize} bytes each, "
            f"but {names.source} has {len(data)} bytes, "
            f"which is not a multiple of {wire.itemsize}"
        )
    return labels_from_array(
        np.frombuffer(data, dtype=wire).astype(wire.newbyteorder("="), copy=False)
    )


def labels_from_paths(text: str) -> Labels:
    """Labels from file paths in ``ImageFolder`` layout, one per line (NOTE [ImageFolder order]).

    The labels are class names (strings), in line order; blank lines are skipped.
    """
    if text.startswith(_BOM):
        text = text[1:]
    classes: list[str] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        classes.append(class_of_path(line, number))
    if not classes:
        raise InvalidLabels("the path list is empty: it needs one class_name/file path per line")
    return labels_from_strings(classes)
