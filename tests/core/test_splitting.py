from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import random_split

from sampleplan.core.errors import InvalidSplit
from sampleplan.core.splitting import Split


@given(
    n=st.integers(1, 300),
    fractions=st.sampled_from(
        [(0.7, 0.3), (0.8, 0.2), (0.5, 0.25, 0.25), (0.9, 0.05, 0.05), (1 / 3, 2 / 3)]
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_fractions_select_what_random_split_selects(
    n: int, fractions: tuple[float, ...], seed: int
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random_split warns about empty parts for tiny n
        expected = random_split(
            range(n), list(fractions), generator=torch.Generator().manual_seed(seed)
        )[0]
    split = Split(seed=seed, fractions=fractions)
    if len(expected) == 0:
        with pytest.raises(InvalidSplit, match="training part"):
            split.training_indices(n)
    else:
        assert split.training_indices(n).tolist() == list(expected.indices)


@given(data=st.data(), n=st.integers(2, 300), seed=st.integers(0, 2**32 - 1))
def test_lengths_select_what_random_split_selects(data: st.DataObject, n: int, seed: int) -> None:
    first = data.draw(st.integers(1, n - 1))
    lengths = (first, n - first)
    expected = random_split(range(n), list(lengths), generator=torch.Generator().manual_seed(seed))[
        0
    ]
    assert Split(seed=seed, lengths=lengths).training_indices(n).tolist() == list(expected.indices)


@pytest.mark.parametrize(
    ("split", "n", "message"),
    [
        (Split(seed=0, fractions=(0.7, 0.2)), 10, "add up to 1"),
        (
            Split(seed=0, fractions=(0.33, 0.56, 0.11)),
            10,
            "add up to 1",
        ),  # float sum > 1: torch refuses too
        (Split(seed=0, fractions=(1.5, -0.5)), 10, "each be in [0, 1]"),
        (Split(seed=0, fractions=(float("nan"), 0.5)), 10, "each be in [0, 1]"),
        (Split(seed=0, lengths=(5, 4)), 10, "add up to 9"),
        (Split(seed=0, lengths=(0, 10)), 10, "training part"),
        (Split(seed=0, lengths=(-1, 11)), 10, "non-negative"),
        (Split(seed=0, fractions=(0.0, 1.0)), 10, "training part"),
    ],
)
def test_bad_splits(split: Split, n: int, message: str) -> None:
    with pytest.raises(InvalidSplit) as info:
        split.training_indices(n)
    assert message in info.value.detail


def test_split_needs_one_form_and_a_valid_seed() -> None:
    with pytest.raises(InvalidSplit, match="exactly one"):
        Split(seed=0)
    with pytest.raises(InvalidSplit, match="exactly one"):
        Split(seed=0, fractions=(0.5, 0.5), lengths=(1, 1))
    with pytest.raises(InvalidSplit, match="two parts"):
        Split(seed=0, fractions=(1.0,))
    with pytest.raises(InvalidSplit, match="2\\*\\*32"):
        Split(seed=2**32, fractions=(0.5, 0.5))
