"""Manifest parsers: every format gives the dataset its JSON upload gives, or says what is wrong."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampleplan.core.errors import InvalidLabels, UnsupportedEncoding
from sampleplan.core.labels import Labels, labels_from_list
from sampleplan.core.manifests import (
    decode_text,
    labels_from_csv,
    labels_from_jsonl,
    labels_from_npy,
    labels_from_paths,
    labels_from_raw,
)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def pickled_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def same(a: Labels, b: Labels) -> None:
    assert a.digest() == b.digest()
    assert a.classes == b.classes
    assert a.codes.tolist() == b.codes.tolist()


INT_LABELS = [3, 0, 0, 7, 3, -2, 0]
STR_LABELS = ["dog", "cat", "cat", "émeu", "dog"]


def test_npy_integer_arrays_of_every_width_and_byte_order() -> None:
    expected = labels_from_list(INT_LABELS)
    for dtype in ("<i1", "<i2", "<i4", "<i8", ">i4", ">i8"):
        same(labels_from_npy(npy_bytes(np.array(INT_LABELS, dtype=dtype))), expected)
    unsigned = [5, 0, 9, 9]
    for dtype in ("<u1", "<u2", ">u4", "<u8"):
        same(
            labels_from_npy(npy_bytes(np.array(unsigned, dtype=dtype))), labels_from_list(unsigned)
        )


def test_npy_unicode_strings() -> None:
    same(labels_from_npy(npy_bytes(np.array(STR_LABELS))), labels_from_list(STR_LABELS))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (npy_bytes(np.array([1.0, 2.0])), "dtype float64"),
        (npy_bytes(np.array([True, False])), "booleans"),
        (npy_bytes(np.array([b"a", b"b"])), "byte strings"),
        (npy_bytes(np.zeros((2, 2), dtype=np.int64)), "1-d array, got shape (2, 2)"),
        (npy_bytes(np.array([], dtype=np.int64)), "must not be empty"),
        (npy_bytes(np.array([], dtype="<U1")), "must not be empty"),
        (npy_bytes(np.array([2**63], dtype=np.uint64)), "int64"),
        (b"PK\x03\x04rest", ".npz archive"),
        (b"not numpy at all", "magic string"),
        (npy_bytes(np.arange(10))[:-5], "cannot be read"),
        (pickled_npy(np.array(["a", 1], dtype=object)), "cannot be read"),
    ],
)
def test_bad_npy(data: bytes, words: str) -> None:
    with pytest.raises(InvalidLabels) as info:
        labels_from_npy(data)
    assert words in info.value.detail


def test_raw_int32_and_int64() -> None:
    expected = labels_from_list(INT_LABELS)
    same(labels_from_raw(np.array(INT_LABELS, "<i4").tobytes(), "int32"), expected)
    same(labels_from_raw(np.array(INT_LABELS, "<i8").tobytes(), "int64"), expected)
    same(labels_from_raw(np.array(INT_LABELS, "<i8").tobytes()), expected)


@pytest.mark.parametrize(
    ("data", "dtype", "words"),
    [
        (b"\x00" * 13, "int64", "13 bytes, which is not a multiple of 8"),
        (b"\x00" * 6, "int32", "not a multiple of 4"),
        (b"", "int64", "must not be empty"),
        (b"\x00" * 8, "float64", "dtype should be one of int32, int64"),
    ],
)
def test_bad_raw(data: bytes, dtype: str, words: str) -> None:
    with pytest.raises(InvalidLabels) as info:
        labels_from_raw(data, dtype)
    assert words in info.value.detail


def test_csv_integer_and_string_columns() -> None:
    text = "path,label\n" + "".join(f"f{i}.png,{v}\n" for i, v in enumerate(INT_LABELS))
    same(labels_from_csv(text, "label"), labels_from_list(INT_LABELS))
    text = "label;x\n".replace(";", ",") + "".join(f'"{v}",1\r\n' for v in STR_LABELS)
    same(labels_from_csv(text, "label"), labels_from_list(STR_LABELS))


def test_csv_cells_are_integers_only_when_all_are_plain_integers() -> None:
    # NOTE [Integers in text manifests]: "007" keeps the column strings, so 7 and 007 differ.
    labels = labels_from_csv("label\n7\n007\n+7\n", "label")
    assert labels.kind == "str" and labels.classes == ("+7", "007", "7")
    assert labels_from_csv("label\n-1\n0\n10\n", "label").classes == (-1, 0, 10)


def test_csv_details() -> None:
    # A BOM (as Excel writes it), quoted commas and newlines, blank lines, another column name.
    text = '\ufeffname,target\n"a, b",x\n\n"multi\nline",y\nc,x\n'
    same(labels_from_csv(text, "target"), labels_from_list(["x", "y", "x"]))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "the CSV manifest is empty"),
        ("\n\n", "the CSV manifest is empty"),
        ("label\n", "has a header but no rows"),
        ("path,cls\na,1\n", "no column 'label' (its columns: 'path', 'cls')"),
        ("label,label\n1,2\n", "more than once"),
        (
            "path,label\na,1\nb,2,3\n",
            "line 3 of the CSV manifest has 3 fields, but the header has 2",
        ),
        ("path,label\na,1\nb\n", "line 3 of the CSV manifest has 1 fields"),
        ("path,label\na,1\nb,\n", "line 3 of the CSV manifest has an empty 'label' field"),
        ('label\n"unterminated\n', "not valid CSV"),
        ("label\n99999999999999999999\n", "int64"),
    ],
)
def test_bad_csv(text: str, words: str) -> None:
    with pytest.raises(InvalidLabels) as info:
        labels_from_csv(text, "label")
    assert words in info.value.detail


def test_jsonl() -> None:
    lines = [json.dumps({"path": f"{i}.png", "label": v}) for i, v in enumerate(INT_LABELS)]
    same(labels_from_jsonl("\n".join(lines) + "\n", "label"), labels_from_list(INT_LABELS))
    lines = [json.dumps({"y": v}, ensure_ascii=False) for v in STR_LABELS]
    same(labels_from_jsonl("\r\n".join(lines) + "\r\n\r\n", "y"), labels_from_list(STR_LABELS))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "the JSON Lines manifest is empty"),
        ("\n  \n", "the JSON Lines manifest is empty"),
        ('{"label": 1}\n{"label": 2\n', "line 2 of the JSON Lines manifest is not valid JSON"),
        ('{"label": 1}\n[1]\n', "line 2 of the JSON Lines manifest is a list, not a JSON object"),
        ('{"label": 1}\n{"lab": 2}\n', "line 2 of the JSON Lines manifest has no 'label' key"),
        ('{"label": 1.5}\n', "line 1 of the JSON Lines manifest: 'label' is a float (1.5)"),
        ('{"label": true}\n', "'label' is a boolean"),
        ('{"label": null}\n', "'label' is null"),
        (
            '{"label": 1}\n\n{"label": "cat"}\n',
            "line 3 of the JSON Lines manifest: 'label' is a str but on line 1",
        ),
        ('{"label": 36893488147419103232}\n', "int64"),
    ],
)
def test_bad_jsonl(text: str, words: str) -> None:
    with pytest.raises(InvalidLabels) as info:
        labels_from_jsonl(text, "label")
    assert words in info.value.detail


def image_folder_classes(root: Path) -> list[str]:
    """``torchvision.datasets.folder.find_classes``, verbatim in substance."""
    return sorted(entry.name for entry in os.scandir(root) if entry.is_dir())


def test_paths_index_classes_as_image_folder(tmp_path: Path) -> None:
    # Names chosen so that naive orders differ: case, digits, accents, a nested folder.
    files = [
        "dog/1.png",
        "Zebra/a.jpg",
        "cat/x/2.png",
        "10/x.png",
        "2/y.png",
        "cat/1.png",
        "éclair/e.png",
        "dog/0.png",
    ]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    classes = image_folder_classes(tmp_path)
    labels = labels_from_paths("\n".join(files) + "\n")
    assert list(labels.classes) == classes
    class_to_idx = {c: i for i, c in enumerate(classes)}
    # Samples keep the line order; each code is ImageFolder's class index.
    assert labels.codes.tolist() == [class_to_idx[f.split("/")[0]] for f in files]
    same(labels, labels_from_list([f.split("/")[0] for f in files]))


def test_paths_details() -> None:
    same(
        labels_from_paths("./cat/1.png\r\ncat/2.png\r\n\r\ndog/3.png"),
        labels_from_list(["cat", "cat", "dog"]),
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "the path list is empty"),
        ("\n\n", "the path list is empty"),
        ("cat/1.png\nfile.png\n", "line 2 of the path list ('file.png') has no class folder"),
        ("/data/cat/1.png\n", "line 1 of the path list is absolute"),
        ("cat/\n", "names a folder, not a file"),
        ("cat/sub/\n", "names a folder, not a file"),
        ("../x.png\n", "has no class folder name"),
    ],
)
def test_bad_paths(text: str, words: str) -> None:
    with pytest.raises(InvalidLabels) as info:
        labels_from_paths(text)
    assert words in info.value.detail


def test_decode_text() -> None:
    assert decode_text("\ufeffcafé".encode(), None, "CSV manifest") == "café"
    assert decode_text("café".encode("latin-1"), "latin-1", "CSV manifest") == "café"
    with pytest.raises(InvalidLabels) as info:
        decode_text(b"label\nok\ncaf\xe9\n", None, "CSV manifest")
    assert "not valid UTF-8: byte 0xe9 at offset 12 (line 3)" in info.value.detail
    with pytest.raises(UnsupportedEncoding) as unknown:
        decode_text(b"x", "klingon", "CSV manifest")
    assert "unknown charset 'klingon'" in unknown.value.detail


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(
        st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=30),
        st.lists(
            st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=6),
            min_size=1,
            max_size=30,
        ),
    )
)
def test_every_format_gives_the_json_dataset(values: list[int] | list[str]) -> None:
    expected = labels_from_list(values)
    formats = [labels_from_npy(npy_bytes(np.array(values)))]
    formats.append(
        labels_from_jsonl("".join(json.dumps({"label": v}) + "\n" for v in values), "label")
    )
    if isinstance(values[0], int):
        formats.append(labels_from_raw(np.array(values, "<i8").tobytes(), "int64"))
        formats.append(labels_from_csv("label\n" + "".join(f"{v}\n" for v in values), "label"))
    else:
        strings = [str(v) for v in values]
        if not all(re.fullmatch(r"-?(0|[1-9][0-9]*)", v) for v in strings):
            buffer = io.StringIO(newline="")
            writer = csv.writer(buffer)
            writer.writerow(["label", "other"])
            writer.writerows([v, "x"] for v in strings)
            formats.append(labels_from_csv(buffer.getvalue(), "label"))
        if all(
            v.strip() and "/" not in v and v not in (".", "..") and not ({"\n", "\r"} & set(v))
            for v in strings
        ):
            formats.append(labels_from_paths("".join(f"{v}/img.png\n" for v in strings)))
    for labels in formats:
        same(labels, expected)
