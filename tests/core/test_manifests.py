"""Labels from manifests: CSV, JSON Lines, .npy and ImageFolder path lists."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

from service.core.labels import labels_from_list
from service.core.manifests import (
    labels_from_csv,
    labels_from_jsonl,
    labels_from_npy,
    labels_from_paths,
)
from service.errors import InvalidLabels


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def test_csv_integer_column_names_the_same_dataset_as_json() -> None:
    text = "path,label\na.png,2\nb.png,0\nc.png,2\nd.png,-1\n"
    labels = labels_from_csv(text)
    assert labels.kind == "int"
    assert labels.values() == [2, 0, 2, -1]
    assert labels.digest() == labels_from_list([2, 0, 2, -1]).digest()


def test_csv_string_labels_named_column_bom_and_whitespace() -> None:
    text = "\ufefffile;kind\n".replace(";", ",") + "a.png, cat \nb.png,dog\n\nc.png,cat\n"
    labels = labels_from_csv(text, "kind")
    assert labels.kind == "str"
    assert labels.values() == ["cat", "dog", "cat"]


def test_csv_non_canonical_integers_stay_strings() -> None:
    # "007" and "7" are different classes in the file; as integers they would merge.
    labels = labels_from_csv("label\n007\n7\n")
    assert labels.kind == "str"
    assert labels.classes == ("007", "7")


def test_csv_single_column_is_the_label() -> None:
    assert labels_from_csv("target\n1\n1\n0\n").values() == [1, 1, 0]


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("", None, "empty"),
        ("path,label\n", None, "no rows"),
        ("path,target\na,1\n", None, "name the label column"),
        ("path,label\na,1\n", "class", "no column 'class'"),
        ("path,label\na,1\nb\n", None, "line 3 has 1 cells"),
        ("path,label\na,1\nb,  \n", None, "line 3 has an empty label"),
        ('path,label\na,"unterminated\n', None, "cannot be parsed"),
    ],
)
def test_csv_errors_name_the_problem(text: str, column: str | None, message: str) -> None:
    with pytest.raises(InvalidLabels, match=message):
        labels_from_csv(text, column)


def test_jsonl_objects_and_bare_values() -> None:
    objects = '{"path": "a.png", "label": "cat"}\n{"path": "b.png", "label": "dog"}\n\n'
    assert labels_from_jsonl(objects).values() == ["cat", "dog"]
    assert labels_from_jsonl('{"y": 3}\n{"y": 1}\n').values() == [3, 1]
    assert labels_from_jsonl('{"a": 1, "y": 3}\n', "y").values() == [3]
    assert labels_from_jsonl("3\n1\n1\n").values() == [3, 1, 1]


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("", None, "no lines"),
        (
            '{"label": 1}\n{"label": 2.0}\n',
            None,
            "line 2: labels must be integers or strings, got 2.0",
        ),
        ('{"label": true}\n', None, "got true"),
        ('{"label": null}\n', None, "got null"),
        ('{"label": 1}\n{"other": 2}\n', None, "line 2 has no key 'label'"),
        ('{"label": 1}\n{oops\n', None, "line 2 is not valid JSON"),
        ('{"label": 1}\n{"label": "cat"}\n', None, "all integers or all strings"),
        ("3\n", "label", "not an object"),
    ],
)
def test_jsonl_errors_name_the_line(text: str, column: str | None, message: str) -> None:
    with pytest.raises(InvalidLabels, match=message):
        labels_from_jsonl(text, column)


def test_npy_integers_and_strings() -> None:
    ints = np.array([3, 1, 3, 0], dtype=np.int32)
    assert labels_from_npy(npy(ints)).digest() == labels_from_list([3, 1, 3, 0]).digest()
    strings = np.array(["cat", "dog", "cat"])
    assert labels_from_npy(npy(strings)).values() == ["cat", "dog", "cat"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (npy(np.array(["cat", 1], dtype=object)), "Python objects"),
        (npy(np.array([0.5, 1.0])), "dtype float64"),
        (npy(np.array([[1, 2], [3, 4]])), "1-d"),
        (b"PK\x03\x04 not really a zip", ".npz archive"),
        (b"label\n1\n", "magic"),
        (npy(np.array([1, 2, 3]))[:-6], "not a valid .npy"),
    ],
)
def test_npy_errors(data: bytes, message: str) -> None:
    with pytest.raises(InvalidLabels, match=message):
        labels_from_npy(data)


def test_paths_index_classes_as_imagefolder_does(tmp_path: Path) -> None:
    files = ["dog/1.png", "Zebra/x.jpg", "ant/a.png", "dog/2.png", "émeu/e.png", "ant/sub/b.png"]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).touch()
    # torchvision.datasets.folder.find_classes, verbatim in effect.
    classes = sorted(entry.name for entry in os.scandir(tmp_path) if entry.is_dir())
    class_to_idx = {name: i for i, name in enumerate(classes)}

    labels = labels_from_paths("\n".join(files) + "\n")
    assert list(labels.classes) == classes
    assert labels.codes.tolist() == [class_to_idx[f.split("/")[0]] for f in files]


def test_paths_accept_dot_slash_and_backslashes() -> None:
    assert labels_from_paths("./cat/1.png\r\ndog\\2.png\n\n").values() == ["cat", "dog"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("cat/1.png\n/data/dog/2.png\n", "line 2 is absolute"),
        ("C:\\data\\cat\\1.png\n", "absolute"),
        ("cat/1.png\nloose.png\n", "line 2 .* class_name/file"),
        ("cat/\n", "class_name/file"),
    ],
)
def test_paths_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidLabels, match=message):
        labels_from_paths(text)
