"""Labels from Arrow columns and from Parquet or Arrow IPC files (pyarrow).

Only the label column is ever read: a Parquet file's other column chunks are not
fetched, an Arrow IPC file's other buffers are not decoded (``included_fields``), and
when the source is memory-mapped the column's buffers are used where they lie. Integer
columns are codes as they are; strings go through a dictionary (a dictionary-encoded
column's own, or one built by Arrow), so 10**8 string labels never become 10**8 Python
objects; the result is exactly :mod:`sampleplan.core.labels`' canonical form, so a dataset
has the same id whatever format it came in.

NOTE [Null labels]
    A null label is refused (422), naming how many there are and the first null row.
    Making nulls a class of their own would silently give unlabelled rows a class and a
    weight; the caller decides instead: fill them (``pc.fill_null(column, -1)`` or
    ``"unknown"``) to keep them as a class, or drop the rows. For multi-label data an
    empty list, not a null, is a sample without labels.

This module reads from an already opened ``pyarrow.NativeFile`` (or a buffer) and does no
other I/O: the service hands it the spooled request body, the client and the CLI a local
file. pyarrow is a dependency of the server and an optional extra of the client, so
nothing imports this module unless it needs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sampleplan.core.errors import PLAIN_INPUT, InputNames, InputTooLarge, InvalidLabels
from sampleplan.core.labels import Labels, labels_from_dictionary, labels_from_int_chunks
from sampleplan.core.labelsets import LabelSets, label_sets_from_csr

TableFormat = Literal["parquet", "arrow"]
ArrowColumn = Any  # pyarrow.Array | pyarrow.ChunkedArray (pyarrow ships no type hints)

#: An Arrow IPC *file* starts with these bytes; an IPC *stream* does not. Hugging Face
#: ``datasets`` writes its ``.arrow`` cache files as streams, so both are read alike.
ARROW_FILE_MAGIC = b"ARROW1"
PARQUET_MAGIC = b"PAR1"


def read_label_column(
    source: Any,
    fmt: TableFormat,
    column: str,
    *,
    max_rows: int | None = None,
    max_decoded_bytes: int | None = None,
    names: InputNames = PLAIN_INPUT,
) -> ArrowColumn:
    """The column ``column`` of a Parquet file or an Arrow IPC file or stream.

    ``source`` is a ``pyarrow.NativeFile`` (a memory map reads best) or a buffer.
    Raises :class:`InvalidLabels` when the source is not such a file or has no such
    column (the message lists the columns it has), and :class:`InputTooLarge` when it
    has more than ``max_rows`` rows (checked before the column is read) or its column
    decodes to more than ``max_decoded_bytes`` bytes (Parquet: estimated from the file's
    metadata before any page is decompressed, and checked once decoded; Arrow: counted
    batch by batch as they are decoded, so the column stops growing at the first batch
    that crosses it).
    """
    if not isinstance(source, pa.NativeFile):
        source = pa.BufferReader(source)
    if fmt == "parquet":
        return _parquet_column(source, column, max_rows, max_decoded_bytes, names)
    return _arrow_column(source, column, max_rows, max_decoded_bytes, names)


def _describe_columns(names: Sequence[str]) -> str:
    if not names:
        return "it has no columns"
    shown = ", ".join(repr(n) for n in names[:20])
    more = f" and {len(names) - 20} more" if len(names) > 20 else ""
    return f"its columns are {shown}{more}"


def _missing(column: str, columns: Sequence[str], what: str, names: InputNames) -> InvalidLabels:
    return InvalidLabels(
        f"the {what} has no column {column!r}; {_describe_columns(columns)} "
        f"(name the label column with {names.column_option})"
    )


def _check_rows(rows: int, max_rows: int | None) -> None:
    if max_rows is not None and rows > max_rows:
        raise InputTooLarge(
            f"the table has {rows} rows; this service takes at most {max_rows} labels"
        )


def _check_decoded(size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise InputTooLarge(
            f"the label column decodes to more than {max_bytes} bytes (at least {size}); "
            f"this service decodes at most {max_bytes} bytes of it (its body limit, "
            "SAMPLEPLAN_MAX_BODY_BYTES), compressed or not"
        )


def _parquet_column(
    source: Any, column: str, max_rows: int | None, max_bytes: int | None, names: InputNames
) -> ArrowColumn:
    try:
        meta = pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidLabels(f"{names.source} is not a Parquet file: {exc}") from exc
    columns = meta.schema_arrow.names
    if column not in columns:
        raise _missing(column, columns, "Parquet file", names)
    _check_rows(meta.metadata.num_rows, max_rows)
    field = meta.schema_arrow.field(column)
    # Before any page is decompressed: the pages' own uncompressed size, and at least the
    # width of each row's value (an index into the dictionary for strings) .
    width = field.type.bit_width // 8 if pa.types.is_primitive(field.type) else 4
    estimate = max(
        _parquet_uncompressed_size(meta.metadata, column), meta.metadata.num_rows * width
    )
    _check_decoded(estimate, max_bytes)
    # Strings are read as Arrow dictionaries (what Parquet usually stores them as), so
    # they are never materialised one string object per row.
    as_dictionary = [column] if _is_text(field.type) else None
    try:
        reader = pq.ParquetFile(source, read_dictionary=as_dictionary)
        decoded = reader.read(columns=[column], use_threads=False).column(0)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidLabels(f"the Parquet file cannot be read: {exc}") from exc
    _check_decoded(decoded.get_total_buffer_size(), max_bytes)  # what the estimate missed
    return decoded


def _parquet_uncompressed_size(metadata: Any, column: str) -> int:
    """Bytes of the column's pages once decompressed, from the file's metadata (a list
    column's leaves are counted too: every leaf under the column's name)."""
    total = 0
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for index in range(row_group.num_columns):
            chunk = row_group.column(index)
            path = chunk.path_in_schema
            if path == column or path.startswith(f"{column}."):
                total += int(chunk.total_uncompressed_size)
    return total


def _arrow_column(
    source: Any, column: str, max_rows: int | None, max_bytes: int | None, names: InputNames
) -> ArrowColumn:
    def open_reader(options: Any = None) -> Any:
        if source.read_at(len(ARROW_FILE_MAGIC), 0) == ARROW_FILE_MAGIC:
            return pa.ipc.open_file(source, options=options)
        source.seek(0)
        return pa.ipc.open_stream(source, options=options)

    try:
        columns = open_reader().schema.names
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidLabels(f"{names.source} is not an Arrow IPC file or stream: {exc}") from exc
    if column not in columns:
        raise _missing(column, columns, "Arrow table", names)
    # Decode only the label column's buffers: the others are skipped (and not
    # decompressed), whatever they hold.
    options = pa.ipc.IpcReadOptions(included_fields=[columns.index(column)], use_threads=False)
    chunks: list[Any] = []
    rows = 0
    decoded = 0
    try:
        reader = open_reader(options)
        if isinstance(reader, pa.ipc.RecordBatchFileReader):
            batches: Any = (reader.get_batch(i) for i in range(reader.num_record_batches))
        else:
            batches = reader
        for batch in batches:
            rows += batch.num_rows
            _check_rows(rows, max_rows)
            decoded += batch.column(0).get_total_buffer_size()
            _check_decoded(decoded, max_bytes)
            chunks.append(batch.column(0))
        field_type = reader.schema.field(0).type
    except (pa.ArrowException, OSError) as exc:
        raise InvalidLabels(f"the Arrow data cannot be read: {exc}") from exc
    return pa.chunked_array(chunks, type=field_type)


def _is_text(arrow_type: Any) -> bool:
    return bool(
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or (hasattr(pa.types, "is_string_view") and pa.types.is_string_view(arrow_type))
    )


def _is_list(arrow_type: Any) -> bool:
    return bool(
        pa.types.is_list(arrow_type)
        or pa.types.is_large_list(arrow_type)
        or pa.types.is_fixed_size_list(arrow_type)
        or (hasattr(pa.types, "is_list_view") and pa.types.is_list_view(arrow_type))
        or (hasattr(pa.types, "is_large_list_view") and pa.types.is_large_list_view(arrow_type))
    )


def _chunks(column: ArrowColumn) -> list[Any]:
    return list(column.chunks) if isinstance(column, pa.ChunkedArray) else [column]


def _first_null(column: ArrowColumn) -> int:
    start = 0
    for chunk in _chunks(column):
        if chunk.null_count:
            mask = chunk.is_null().to_numpy(zero_copy_only=False)
            return start + int(np.argmax(mask))
        start += len(chunk)
    return -1  # pragma: no cover - only called when there are nulls


def labels_from_arrow(column: ArrowColumn) -> Labels | LabelSets:
    """Canonical :class:`Labels` from a pyarrow ``Array`` or ``ChunkedArray`` of labels.

    Integers are labels as they are; strings, and dictionary-encoded integers or
    strings, go through their dictionary. Refused with :class:`InvalidLabels`: nulls
    (NOTE [Null labels]), floats, booleans, nested types, and an empty column. List
    columns are label sets: see :func:`label_sets_from_arrow`.
    """
    if not isinstance(column, pa.Array | pa.ChunkedArray):
        raise InvalidLabels(
            f"expected a pyarrow Array or ChunkedArray, got {type(column).__name__}"
        )
    arrow_type = column.type
    if _is_list(arrow_type):
        return label_sets_from_arrow(column)
    _check_label_type(arrow_type)
    if len(column) == 0:
        raise InvalidLabels("labels must not be empty: the label column has no rows")
    if column.null_count:
        raise InvalidLabels(
            f"the label column has {column.null_count} null label(s), the first in row "
            f"{_first_null(column)}; fill them with a class of your own (e.g. -1 or "
            "'unknown') or drop those rows"
        )
    if pa.types.is_integer(arrow_type):
        return labels_from_int_chunks([c.to_numpy(zero_copy_only=True) for c in _chunks(column)])
    if _is_text(arrow_type):
        # Arrow's hash-based encoding: one pass in C++, no Python string per row.
        column = column.dictionary_encode()
    return _labels_from_dictionary_column(column)


def _labels_from_dictionary_column(column: ArrowColumn) -> Labels:
    if isinstance(column, pa.ChunkedArray):
        # Chunks (Parquet row groups, record batches) may carry different dictionaries.
        column = column.unify_dictionaries()
    chunks = [c for c in _chunks(column) if len(c)]
    dictionary = chunks[0].dictionary
    if dictionary.null_count:
        raise InvalidLabels("the label column's dictionary holds nulls; labels must not be null")
    values: Any
    if pa.types.is_integer(dictionary.type):
        values = dictionary.to_numpy(zero_copy_only=False)
    else:
        values = dictionary.to_pylist()
    return labels_from_dictionary(
        values, [c.indices.to_numpy(zero_copy_only=False) for c in chunks]
    )


def _check_label_type(arrow_type: Any) -> None:
    """Refuse what is not a label: each message names the column's type and the way out."""
    if pa.types.is_integer(arrow_type) or _is_text(arrow_type):
        return
    if pa.types.is_dictionary(arrow_type):
        value_type = arrow_type.value_type
        if pa.types.is_integer(value_type) or _is_text(value_type):
            return
        raise InvalidLabels(
            f"labels must be integers or strings, got a dictionary of {value_type} values"
        )
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        raise InvalidLabels(
            f"labels must be integers or strings, got a {arrow_type} column; a float column "
            "is not read as classes (cast it to integers if its values are class indices)"
        )
    if pa.types.is_boolean(arrow_type):
        raise InvalidLabels("labels must be integers or strings, got a boolean column")
    if pa.types.is_nested(arrow_type):
        raise InvalidLabels(
            f"labels must be integers or strings, or lists of them (label sets), got a "
            f"nested column of type {arrow_type}"
        )
    raise InvalidLabels(f"labels must be integers or strings, got a {arrow_type} column")


def label_sets_from_arrow(column: ArrowColumn) -> LabelSets:
    """Label sets from a list column: the one place where list columns are read.

    The list column is checked here (its values integers or strings, no null list and no
    null label) and taken apart into the CSR form ``(offsets, values)`` that the
    multi-label core reads (:func:`sampleplan.core.labelsets.label_sets_from_csr`; strings
    and dictionary-encoded values through their dictionary). An empty list is a sample
    without labels.
    """
    value_type = column.type.value_type
    if pa.types.is_dictionary(value_type):
        value_type = value_type.value_type
    if not (pa.types.is_integer(value_type) or _is_text(value_type)):
        raise InvalidLabels(
            f"a list column holds label sets, whose labels must be integers or strings; "
            f"got a column of type {column.type}"
        )
    if len(column) == 0:
        raise InvalidLabels("labels must not be empty: the label column has no rows")
    if column.null_count:
        raise InvalidLabels(
            f"the label column has {column.null_count} null label set(s), the first in row "
            f"{_first_null(column)}; an empty list is a sample without labels"
        )
    lists = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_fixed_size_list(lists.type):
        size = lists.type.list_size
        offsets = np.arange(len(lists) + 1, dtype=np.int64) * size
        values = lists.flatten()
    elif pa.types.is_list(lists.type) or pa.types.is_large_list(lists.type):
        offsets = lists.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        offsets -= offsets[0]  # a sliced array's offsets start where its slice does
        values = lists.flatten()
    else:
        # List views: each list is (offset, size) into the values, in any order.
        starts = lists.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        sizes = lists.sizes.to_numpy(zero_copy_only=False).astype(np.int64)
        offsets = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        gather = np.arange(int(offsets[-1]), dtype=np.int64) + np.repeat(
            starts - offsets[:-1], sizes
        )
        values = lists.values.take(pa.array(gather))
    if values.null_count:
        raise InvalidLabels(
            f"the label column's lists hold {values.null_count} null label(s); labels must "
            "not be null (an empty list is a sample without labels)"
        )
    if pa.types.is_integer(values.type):
        return label_sets_from_csr(offsets, values.to_numpy(zero_copy_only=False))
    if _is_text(values.type):
        values = values.dictionary_encode()
    dictionary = values.dictionary
    if dictionary.null_count:
        raise InvalidLabels("the label column's dictionary holds nulls; labels must not be null")
    names: Any = (
        dictionary.to_numpy(zero_copy_only=False)
        if pa.types.is_integer(dictionary.type)
        else dictionary.to_pylist()
    )
    return label_sets_from_csr(
        offsets, values.indices.to_numpy(zero_copy_only=False), dictionary=names
    )
