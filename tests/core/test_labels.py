from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sampleplan.core.errors import InvalidLabels
from sampleplan.core.labels import labels_from_array, labels_from_list


def test_int_labels_are_indexed_in_sorted_class_order() -> None:
    labels = labels_from_list([7, -3, 7, 100, -3, 7])
    assert labels.classes == (-3, 7, 100)
    assert labels.codes.tolist() == [1, 0, 1, 2, 0, 1]
    assert labels.class_counts().tolist() == [2, 3, 1]


def test_string_labels_sort_like_imagefolder() -> None:
    # ImageFolder sorts class folder names with Python's str ordering.
    labels = labels_from_list(["dog", "Cat", "cat", "dog"])
    assert labels.classes == ("Cat", "cat", "dog")
    assert labels.codes.tolist() == [2, 0, 1, 2]


@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=50))
def test_digest_depends_only_on_content(values: list[int]) -> None:
    a = labels_from_list(values)
    b = labels_from_array(np.array(values, dtype=np.int64))
    assert a.digest() == b.digest()
    assert a.values() == values


def test_digest_separates_kinds_and_orders() -> None:
    assert labels_from_list([0, 1]).digest() != labels_from_list(["0", "1"]).digest()
    assert labels_from_list([0, 1]).digest() != labels_from_list([1, 0]).digest()
    assert labels_from_list([0, 1]).digest() != labels_from_list([0, 2]).digest()


def test_dense_and_sparse_paths_agree() -> None:
    dense = labels_from_array(np.array([3, 1, 3, 0], dtype=np.int64))
    sparse = labels_from_array(np.array([3, 1, 3, 0], dtype=np.int64) * 10**12)
    assert dense.codes.tolist() == sparse.codes.tolist() == [2, 1, 2, 0]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "must not be empty"),
        ("abc", "must be a list"),
        ([1, "a"], "labels[1] is a str"),
        (["a", 1], "labels[1] is a int"),
        ([1.0, 2.0], "labels[0] is a float"),
        ([1, 2.5], "labels[1] is a float"),
        ([True, False], "boolean"),
        ([1, None], "null"),
        ([[1], [2]], "labels[0] is a list"),
        ([2**70], "int64"),
    ],
)
def test_bad_labels_say_what_is_wrong(values: object, message: str) -> None:
    with pytest.raises(InvalidLabels, match=None) as info:
        labels_from_list(values)
    assert message in info.value.detail


def test_bad_arrays() -> None:
    with pytest.raises(InvalidLabels, match="1-d"):
        labels_from_array(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(InvalidLabels, match="dtype float64"):
        labels_from_array(np.zeros(3))
