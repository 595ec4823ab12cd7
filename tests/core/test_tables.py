"""Labels from Arrow columns and Parquet/Arrow files: the same canonical labels as a list.

The oracle is the labels as a plain Python list through ``labels_from_list`` (the JSON
path), and the dataset hash written out here from its definition.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampleplan.core import codes as codes_module
from sampleplan.core.errors import InputTooLarge, InvalidLabels
from sampleplan.core.labels import labels_from_array, labels_from_int_chunks, labels_from_list
from sampleplan.core.tables import labels_from_arrow, read_label_column


def sha256_of_labels(kind: str, classes: list[Any], codes: np.ndarray) -> str:
    """The dataset id as docs/design.md defines it (domain, kind, classes JSON, LE codes)."""
    h = hashlib.sha256(b"sampleplan/dataset/v1\n")
    h.update(kind.encode() + b"\n")
    h.update(json.dumps(classes, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
    h.update(codes.astype(codes.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def test_dataset_ids_are_pinned() -> None:
    # Computed with the release before Arrow support: ids must never change.
    ints = labels_from_list([4, 0, 0, 9, 4, 4, 1])
    names = labels_from_list(["dog", "cat", "cat", "emu", "dog"])
    assert ints.digest() == sha256_of_labels(
        "int", [0, 1, 4, 9], np.array([2, 0, 0, 3, 2, 2, 1], "u1")
    )
    assert names.digest() == sha256_of_labels(
        "str", ["cat", "dog", "emu"], np.array([1, 0, 0, 2, 1], "u1")
    )
    assert ints.digest() == "a7b57693b70c8f7f990348f0765c66723bc45bc3ab9e3475ddeab7306cd3f0e9"
    assert names.digest() == "7af051626c6e2726fd1188977b6c78a70d92d320376bd184b020614b0d3806c4"


VALUES = [4, 0, 0, 9, 4, 4, 1, 9]
NAMES = ["dog", "cat", "cat", "émeu", "dog", "Zebra", "", "cat"]


def arrow_forms(values: list[Any]) -> list[tuple[str, Any]]:
    plain = pa.array(values)
    forms: list[tuple[str, Any]] = [
        ("array", plain),
        ("chunked, uneven chunks", pa.chunked_array([values[:3], values[3:4], [], values[4:]])),
        ("dictionary", plain.dictionary_encode()),
        (
            "chunked dictionaries that differ",
            pa.chunked_array(
                [pa.array(values[:5]).dictionary_encode(), pa.array(values[5:]).dictionary_encode()]
            ),
        ),
        ("sliced", pa.array([values[0], *values, values[0]]).slice(1, len(values))),
    ]
    if isinstance(values[0], int):
        forms += [
            ("int8", pa.array(values, pa.int8())),
            ("uint16", pa.array(values, pa.uint16())),
            ("uint64", pa.array(values, pa.uint64())),
        ]
    else:
        forms += [("large_string", pa.array(values, pa.large_string()))]
    return forms


@pytest.mark.parametrize("values", [VALUES, NAMES], ids=["ints", "strings"])
def test_every_arrow_form_gives_the_labels_of_the_list(values: list[Any]) -> None:
    expected = labels_from_list(values)
    for name, column in arrow_forms(values):
        got = labels_from_arrow(column)
        assert (got.kind, got.classes) == (expected.kind, expected.classes), name
        assert got.codes.tolist() == expected.codes.tolist(), name
        assert got.digest() == expected.digest(), name
        assert got.class_counts().tolist() == expected.class_counts().tolist(), name


def test_string_classes_sort_as_python_sorts_them() -> None:
    labels = labels_from_arrow(pa.array(NAMES))
    assert list(labels.classes) == sorted(set(NAMES))  # code points: "" < "Zebra" < "cat" < "émeu"


def test_unused_and_repeated_dictionary_entries_are_not_classes() -> None:
    column = pa.DictionaryArray.from_arrays(
        pa.array([1, 1, 3, 4], pa.int32()), pa.array(["never", "b", "a", "a", "c"])
    )
    labels = labels_from_arrow(column)
    assert labels.classes == ("a", "b", "c")
    assert labels.digest() == labels_from_list(["b", "b", "a", "c"]).digest()
    ints = pa.DictionaryArray.from_arrays(pa.array([0, 2, 2], pa.int8()), pa.array([7, 99, -3]))
    assert labels_from_arrow(ints).digest() == labels_from_list([7, -3, -3]).digest()


def test_a_hugging_face_style_chunked_column() -> None:
    # datasets keeps a ClassLabel column as int64 record batches of 1000 rows each.
    rng = np.random.default_rng(3)
    values = rng.integers(0, 10, 10_500)
    column = pa.chunked_array([values[i : i + 1000] for i in range(0, values.size, 1000)])
    assert column.num_chunks == 11
    assert labels_from_arrow(column).digest() == labels_from_array(values).digest()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(-(2**40), 2**40) | st.integers(0, 20), max_size=30),
        min_size=1,
        max_size=5,
    )
)
def test_integer_chunks_equal_the_concatenated_array(chunks: list[list[int]]) -> None:
    flat = [v for chunk in chunks for v in chunk]
    arrays = [np.array(c, dtype=np.int64) for c in chunks]
    if not flat:
        with pytest.raises(InvalidLabels, match="empty"):
            labels_from_int_chunks(arrays)
        return
    got = labels_from_int_chunks(arrays)
    expected = labels_from_list(flat)
    assert got.digest() == expected.digest()
    assert got.class_counts().tolist() == np.unique(flat, return_counts=True)[1].tolist()


@pytest.mark.parametrize(
    ("column", "words"),
    [
        (pa.array([1.0, 2.0]), ["float", "double"]),
        (pa.array([True, False]), ["boolean"]),
        (pa.array([1, None, 2, None]), ["2 null", "row 1"]),
        (pa.array(["a", None]), ["null", "row 1"]),
        (pa.chunked_array([[1, 2], [3, None]]), ["null", "row 3"]),
        (pa.array([], pa.int64()), ["empty"]),
        (pa.array([{"a": 1}]), ["nested", "struct"]),
        (pa.array([b"x"], pa.binary()), ["binary"]),
        (pa.array([[1.5]]), ["list", "label sets", "double"]),
        (pa.array([[1], None]), ["null label set"]),
        (pa.array([[1, None], [3]]), ["1 null label", "empty list"]),
        (pa.array([1.0]).dictionary_encode(), ["dictionary", "double"]),
    ],
)
def test_what_is_not_a_label_column_is_refused_clearly(column: Any, words: list[str]) -> None:
    with pytest.raises(InvalidLabels) as caught:
        labels_from_arrow(column)
    for word in words:
        assert word in caught.value.detail


def parquet_bytes(table: pa.Table, **options: Any) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **options)
    return sink.getvalue()


def ipc_bytes(table: pa.Table, *, file: bool, **options: Any) -> bytes:
    sink = pa.BufferOutputStream()
    opener = pa.ipc.new_file if file else pa.ipc.new_stream
    with opener(sink, table.schema, options=pa.ipc.IpcWriteOptions(**options)) as writer:
        for batch in table.to_batches(max_chunksize=3):
            writer.write_batch(batch)
    return bytes(sink.getvalue())


TABLE = pa.table(
    {
        "x": [0.5] * len(NAMES),
        "y": NAMES,
        "i": VALUES,
        "nested": [[1]] * len(NAMES),
    }
)


@pytest.mark.parametrize(
    "data",
    [
        parquet_bytes(TABLE),
        parquet_bytes(TABLE, use_dictionary=False, row_group_size=3),
        ipc_bytes(TABLE, file=True),
        ipc_bytes(TABLE, file=False),
        ipc_bytes(TABLE, file=False, compression="zstd"),
    ],
    ids=["parquet", "parquet plain, row groups", "arrow file", "arrow stream", "arrow zstd"],
)
def test_files_give_the_labels_of_the_list(data: bytes) -> None:
    fmt = "parquet" if data.startswith(b"PAR1") else "arrow"
    for column, values in (("y", NAMES), ("i", VALUES)):
        labels = labels_from_arrow(read_label_column(data, fmt, column))
        assert labels.digest() == labels_from_list(values).digest()


def test_a_missing_column_lists_the_columns_there_are() -> None:
    for data, fmt in ((parquet_bytes(TABLE), "parquet"), (ipc_bytes(TABLE, file=True), "arrow")):
        with pytest.raises(InvalidLabels) as caught:
            read_label_column(data, fmt, "label")  # type: ignore[arg-type]
        assert "'label'" in caught.value.detail
        assert "'x', 'y', 'i', 'nested'" in caught.value.detail


@pytest.mark.parametrize(
    "data", [b"", b"PAR1 not really", b"label\n1\n2\n", b"ARROW1\x00\x00garbage"]
)
@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_what_is_not_such_a_file_is_refused(data: bytes, fmt: Any) -> None:
    with pytest.raises(InvalidLabels, match=r"not a Parquet file|not an Arrow IPC|cannot be read"):
        read_label_column(data, fmt, "label")


def test_rows_over_the_limit_are_refused_before_the_column_is_read() -> None:
    for data, fmt in ((parquet_bytes(TABLE), "parquet"), (ipc_bytes(TABLE, file=False), "arrow")):
        with pytest.raises(InputTooLarge, match="at most 5"):
            read_label_column(data, fmt, "i", max_rows=5)  # type: ignore[arg-type]
        assert len(read_label_column(data, fmt, "i", max_rows=len(VALUES))) == len(VALUES)  # type: ignore[arg-type]


# -- the kernels behind them, against numpy --------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=200), st.sampled_from(["u1", "u2", "i4", "i8"])
)
def test_kernels_match_numpy(values: list[int], dtype: str) -> None:
    codes = np.array(values, dtype=dtype)
    k = int(codes.max()) + 1
    counts = np.zeros(k, dtype=np.int64)
    codes_module.count_values(codes, counts)
    assert counts.tolist() == np.bincount(codes.astype(np.int64), minlength=k).tolist()
    assert codes_module.min_max(codes) == (int(codes.min()), int(codes.max()))
    assert codes_module.is_sorted(codes) == bool(np.all(np.diff(codes.astype(np.int64)) >= 0))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    stable = np.argsort(codes, kind="stable")
    for dt in (np.int32, np.int64):
        assert codes_module.group_by_class(codes, offsets, dt).tolist() == stable.tolist()
        assert codes_module._group_numpy(codes, dt).tolist() == stable.tolist()
    table = np.arange(k, dtype=np.float64) * 0.5
    assert codes_module.gather(table, codes).tolist() == table[codes].tolist()
    first = codes_module.first_positions(codes, k + 1)
    assert first.tolist() == [values.index(c) if c in values else -1 for c in range(k + 1)]
    per_class = codes_module.value_per_class(codes, table[codes], k)
    assert per_class is not None and per_class[counts > 0].tolist() == table[counts > 0].tolist()
    varied = table[codes].copy()
    if np.any(counts > 1):
        c = int(np.flatnonzero(counts > 1)[0])
        varied[np.flatnonzero(codes == c)[-1]] += 1.0
        assert codes_module.value_per_class(codes, varied, k) is None


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (pa.array([[3, 1, 1], [], [2]]), [[1, 3], [], [2]]),
        (pa.array([[3, 1], [], [2]], pa.large_list(pa.int32())), [[1, 3], [], [2]]),
        (pa.chunked_array([pa.array([[3, 1]]), pa.array([[], [2, 2]])]), [[1, 3], [], [2]]),
        (pa.array([[5], [9, 3], [], [2]]).slice(1, 3), [[3, 9], [], [2]]),
    ],
)
def test_list_columns_are_label_sets(column: Any, expected: list[list[int]]) -> None:
    """A list column is label sets: the same dataset as the JSON lists (issue 10)."""
    from sampleplan.core.labelsets import label_sets_from_list

    sets = labels_from_arrow(column)
    assert sets.values() == expected  # type: ignore[union-attr]
    assert sets.digest() == label_sets_from_list(expected).digest()


def test_string_and_dictionary_list_columns_are_label_sets() -> None:
    from sampleplan.core.labelsets import label_sets_from_list

    strings = pa.array([["dog", "cat"], [], ["emu"]])
    encoded = strings.cast(pa.list_(pa.dictionary(pa.int16(), pa.string())))
    expected = label_sets_from_list([["cat", "dog"], [], ["emu"]]).digest()
    assert labels_from_arrow(strings).digest() == expected
    assert labels_from_arrow(encoded).digest() == expected
    fixed = pa.array([[2, 1], [1, 1]], pa.list_(pa.int64(), 2))
    assert labels_from_arrow(fixed).values() == [[1, 2], [1]]  # type: ignore[union-attr]
