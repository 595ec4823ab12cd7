"""Labels from Arrow and pandas objects and from local Parquet/Arrow files, on the wire.

What goes over the wire is the cheapest binary form the service reads:

* integer labels without nulls (numpy arrays, pyarrow integer columns, pandas integer
  series): raw little-endian ``int32`` (``int64`` when a value needs it), 4 bytes a label;
* a Hugging Face ``datasets`` column (``ds["label"]``) is its Arrow column, read from
  the dataset's table without a copy (:func:`datasets_column`);
* anything else from pyarrow or pandas (strings, categoricals, dictionary columns, and
  what the service must refuse with a clear message: nulls, floats, nested types): a
  one-column Arrow IPC stream, strings dictionary-encoded first, so each distinct name
  travels once and the service turns indices into codes without a string per row.

A file (``.parquet``, ``.arrow``, ``.feather``) is memory-mapped and only its label
column is read (:func:`sampleplan.core.tables.read_label_column`, the service's own reader);
the rest of the file is never sent. pyarrow is the optional ``arrow`` extra: without it,
pyarrow objects cannot exist, pandas objects go as numpy arrays or JSON, and reading a
table file says which extra to install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

__all__ = [
    "ARROW_STREAM",
    "TABLE_SUFFIXES",
    "arrow_stream",
    "datasets_column",
    "integer_chunks",
    "is_arrow",
    "read_column",
    "to_arrow",
]

ARROW_STREAM = "application/vnd.apache.arrow.stream"

#: Local files read with pyarrow (only the label column is sent), by suffix.
TABLE_SUFFIXES: dict[str, Literal["parquet", "arrow"]] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}


def _module_of(obj: object) -> str:
    return type(obj).__module__.split(".", 1)[0]


def is_arrow(obj: object) -> bool:
    """A pyarrow ``Array`` or ``ChunkedArray`` (checked without importing pyarrow)."""
    return _module_of(obj) == "pyarrow" and hasattr(obj, "type") and hasattr(obj, "null_count")


def is_pandas(obj: object) -> bool:
    """A pandas ``Series``, ``Categorical`` or ``Index``."""
    return _module_of(obj) == "pandas" and hasattr(obj, "dtype")


def _require_pyarrow(what: str) -> Any:
    try:
        import pyarrow
    except ImportError as exc:  # pragma: no cover - the test environment has pyarrow
        raise ImportError(
            f"{what} needs pyarrow: pip install 'sampleplan[arrow]' (or pyarrow)"
        ) from exc
    return pyarrow


def datasets_column(column: object) -> Any | None:
    """The Arrow data of a Hugging Face ``datasets`` column (``ds["label"]``), else ``None``.

    ``datasets`` 4 and later answer ``ds["label"]`` with a lazy ``Column``, which numpy
    would read value by value through Python. Its dataset's Arrow table holds the column
    already: that ``ChunkedArray`` is returned as it is (no copy), or, for a dataset that
    is a selection of another (``select``, ``shuffle``, ``train_test_split``), the
    selected rows of it, taken in Arrow (the label column only).
    """
    if _module_of(column) != "datasets" or type(column).__name__ != "Column":
        return None
    source, name = getattr(column, "source", None), getattr(column, "column_name", None)
    table = getattr(source, "data", None)
    if _module_of(source) != "datasets" or not isinstance(name, str) or table is None:
        return None  # a column of a column (nested features): read as a sequence
    arrow = table.column(name)
    selection = getattr(source, "_indices", None)
    if selection is not None:
        arrow = arrow.take(selection.column(0))
    return arrow


def to_arrow(labels: Any) -> Any | None:
    """A pyarrow array for pyarrow, ``datasets`` and pandas labels, ``None`` for anything else.

    pandas objects convert only when pyarrow is installed (categoricals become
    dictionary arrays, nullable integers keep their nulls); otherwise ``None``, and the
    caller sends them as numpy arrays or JSON.
    """
    if is_arrow(labels):
        return labels
    column = datasets_column(labels)
    if column is not None:
        return column
    if is_pandas(labels):
        try:
            import pyarrow as pa
        except ImportError:  # pragma: no cover - the test environment has pyarrow
            return None
        return pa.array(labels)
    return None


def integer_chunks(column: Any) -> list[Any] | None:
    """The numpy chunks of an integer column without nulls (zero-copy), else ``None``."""
    import pyarrow as pa

    if not pa.types.is_integer(column.type) or column.null_count:
        return None
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    return [chunk.to_numpy(zero_copy_only=True) for chunk in chunks]


def arrow_stream(column: Any, lengths: Any | None = None) -> bytes:
    """A one-column (``label``) Arrow IPC stream of ``column``, strings dictionary-encoded;
    with ``lengths`` (one integer per sample), a second column ``length``."""
    import pyarrow as pa

    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = column.dictionary_encode()
    if isinstance(column, pa.ChunkedArray):
        table = pa.table({"label": column})
    else:
        table = pa.table({"label": pa.chunked_array([column], type=column.type)})
    if lengths is not None:
        table = table.append_column("length", pa.chunked_array([pa.array(lengths)]))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def read_column(path: Path, column: str) -> Any:
    """The ``column`` of a local Parquet or Arrow IPC file, read alone (memory-mapped).

    Raises ``ValueError`` when the file is not such a file or lacks the column (the
    message lists the columns it has).
    """
    pa = _require_pyarrow(f"reading {path.name!r}")
    from sampleplan.core.errors import InputNames, SamplingError
    from sampleplan.core.tables import read_label_column

    fmt = TABLE_SUFFIXES[path.suffix.lower()]
    names = InputNames(source=repr(path.name), column_option="label_column=")
    try:
        with pa.memory_map(str(path)) as source:
            return read_label_column(source, fmt, column, names=names)
    except SamplingError as exc:
        raise ValueError(exc.detail) from exc
