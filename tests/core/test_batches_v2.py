"""``batches-v2`` (NOTE [batches-v2]): written out again, its guarantees, and the peer.

The reference below implements NOTE [batches-v2] scalar, in Python integers, from the
text (steps 1 to 3 are ``batches-v1``'s, whose reference is in ``test_batches.py``).
The guarantees are checked on the long-tail labels the issue measured (66 classes, 300
down to 1 sample; m = 4, batch 32) over many epochs and seeds, beside
pytorch-metric-learning's ``MPerClassSampler`` drawing from the same labels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning.samplers import MPerClassSampler

from sampleplan.core.batches import BATCHES_V2, BatchTable, batching_from_json
from sampleplan.core.config import PlanConfig
from sampleplan.core.errors import InvalidPlanConfig
from sampleplan.core.labels import labels_from_list
from sampleplan.core.prepared import prepare_plan
from tests.helpers.batches_spec import M64, TAG, spec_members, spec_mix, spec_perm
from tests.helpers.philox import spec_philox4x64_10


def spec_group(members: list[int], k_member: int, k: int, t: int, q: int) -> list[int]:
    """Step 4': the ``t``-th group of ``q`` members of class ``k``."""
    n = len(members)
    out = []
    for i in range(q):
        if n >= q:
            per_cycle = n // q
            c, p = t // per_cycle, (t % per_cycle) * q + i
        else:
            c, p = t * (-(-q // n)) + i // n, i % n
        key = spec_mix((spec_mix(k_member ^ k) + c) & M64)
        out.append(members[spec_perm(n, key, p)])
    return out


def spec_batch_v2(
    codes: Sequence[int], batching: dict[str, Any], seed: int, epoch: int, b: int
) -> list[int]:
    members = spec_members(codes)
    k_class, k_member, _, _ = spec_philox4x64_10((0, 0, 0, TAG), (seed, epoch))
    if batching["kind"] == "class_quota":
        out: list[int] = []
        for name in sorted(batching["quota"], key=int):
            q = batching["quota"][name]
            out += spec_group(members[int(name)], k_member, int(name), b, q)
        return out
    m, size = batching["m"], batching["batch_size"]
    classes = sorted(members)
    big_k, g = len(classes), size // m
    per_round = big_k // g
    dealt_total = per_round * g
    left_out = big_k - dealt_total
    r, u = divmod(b, per_round)
    k_round, k_round2, _, _ = spec_philox4x64_10((r, 1, 0, TAG), (seed, epoch))
    o = (r * left_out) % big_k
    w = min(o, dealt_total)
    out = []
    for slot in range(g):
        z = u * g + slot
        if z < w:
            d = dealt_total - w + spec_perm(w, k_round, z)
        else:
            d = spec_perm(dealt_total - w, k_round2, z - w)
        h = (o + left_out + d) % big_k
        k = classes[spec_perm(big_k, k_class, h)]
        t = r - (r * left_out - h + big_k - 1) // big_k
        out += spec_group(members[k], k_member, k, t, m)
    return out


def _codes(counts: Sequence[int], seed: int = 0) -> np.ndarray:
    codes = [c for c, n in enumerate(counts) for _ in range(n)]
    return np.random.default_rng(seed).permutation(codes)


def _table(
    codes: np.ndarray, batching: dict[str, Any], num_batches: int | None = None
) -> BatchTable:
    spec = batching_from_json(batching)
    assert spec is not None
    return BatchTable.build(codes, list(range(int(codes.max()) + 1)), spec, num_batches, BATCHES_V2)


#: The issue's long tail: 66 classes, 300 samples down to 1 (geometrically: 3 564 samples;
#: linearly: 9 933).
LONG_TAIL = np.round(np.geomspace(300, 1, 66)).astype(np.int64)
LINEAR_TAIL = np.round(np.linspace(300, 1, 66)).astype(np.int64)
M, BATCH = 4, 32


def _groups(batches: np.ndarray, codes: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Every class group of every batch: (groups of m positions, their class)."""
    groups = batches.reshape(-1, m)
    classes = codes[groups]
    assert (classes == classes[:, :1]).all(), "a group mixes classes"
    return groups, classes[:, 0]


def _measure(batches: np.ndarray, codes: np.ndarray, counts: np.ndarray) -> dict[str, int]:
    """The issue's measures over one epoch's batches (rows of BATCH positions)."""
    groups, cls = _groups(batches, codes, M)
    distinct = np.array([len(set(g)) for g in groups.tolist()])
    n = counts[cls]
    appearances = np.bincount(cls, minlength=counts.shape[0])
    return {
        "repeats": int(((n >= M) & (distinct < M)).sum()),
        "lacking": int(((n < M) & (distinct < n)).sum()),
        "spread": int(appearances.max() - appearances.min()),
        "missing": int((appearances == 0).sum()),
        "groups": int(groups.shape[0]),
    }


def test_the_definition_is_the_one_written_out() -> None:
    codes = _codes((9, 2, 5, 1, 7, 3, 4), seed=3)
    for batching in (
        {"kind": "m_per_class", "m": 3, "batch_size": 9},
        {"kind": "m_per_class", "m": 4, "batch_size": 8},
        {"kind": "class_quota", "quota": {"0": 4, "3": 2, "5": 5}},
    ):
        table = _table(codes, batching, 40)
        for seed, epoch in ((0, 0), (7, 3), (2**40, 11)):
            drawn = table.draw(seed, epoch, np.arange(40))
            for b in (0, 1, 7, 22, 39):
                assert drawn[b].tolist() == spec_batch_v2(codes.tolist(), batching, seed, epoch, b)


@settings(max_examples=30, deadline=None)
@given(
    counts=st.lists(st.integers(1, 11), min_size=1, max_size=9),
    m=st.integers(1, 5),
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
    epoch=st.integers(0, 40),
)
def test_any_m_per_class_plan_keeps_the_guarantees(
    counts: list[int], m: int, data: st.DataObject, seed: int, epoch: int
) -> None:
    g = data.draw(st.integers(1, len(counts)))
    codes = _codes(counts, seed=seed % 7)
    batching = {"kind": "m_per_class", "m": m, "batch_size": m * g}
    table = _table(codes, batching, data.draw(st.integers(1, 30)))
    batches = table.draw(seed, epoch, np.arange(table.num_batches))
    n = np.asarray(counts)
    groups, cls = _groups(batches, codes, m)
    appearances = np.zeros(len(counts), dtype=np.int64)
    for b in range(table.num_batches):
        rows = slice(b * g, (b + 1) * g)
        assert len(set(cls[rows].tolist())) == g  # distinct classes in a batch
        np.add.at(appearances, cls[rows], 1)
        assert appearances.max() - appearances.min() <= 1  # after every whole batch
    for group, k in zip(groups.tolist(), cls.tolist(), strict=True):
        seen = Counter(group)
        if n[k] >= m:
            assert len(seen) == m
        else:  # a whole permutation, then the start of the next
            assert len(seen) == n[k]
            assert max(seen.values()) - min(seen.values()) <= 1
    b = table.num_batches - 1
    assert batches[b].tolist() == spec_batch_v2(codes.tolist(), batching, seed, epoch, b)


def test_class_quota_groups_never_repeat_a_sample_of_a_class_large_enough() -> None:
    codes = _codes((13, 3, 7), seed=2)
    table = _table(codes, {"kind": "class_quota", "quota": {"0": 5, "1": 5, "2": 7}}, 50)
    for seed in range(4):
        batches = table.draw(seed, 1, np.arange(50))
        for row in batches.tolist():
            a, b, c = row[:5], row[5:10], row[10:]
            assert len(set(a)) == 5 and len(set(c)) == 7
            assert set(b) == set(np.flatnonzero(codes == 1).tolist())


def _peer_epoch(codes: np.ndarray, seed: int) -> np.ndarray:
    """MPerClassSampler's epoch of as many samples as the population (our default length)."""
    from pytorch_metric_learning.utils import common_functions

    common_functions.NUMPY_RANDOM = np.random.RandomState(seed)
    sampler = MPerClassSampler(
        torch.from_numpy(codes), M, batch_size=BATCH, length_before_new_iter=codes.shape[0]
    )
    return np.fromiter(iter(sampler), dtype=np.int64).reshape(-1, BATCH)


@pytest.mark.parametrize("counts", [LONG_TAIL, LINEAR_TAIL], ids=["geometric", "linear"])
def test_long_tail_over_many_epochs_and_seeds_against_mperclasssampler(
    counts: np.ndarray,
) -> None:
    """The issue's labels: no repeated sample in a group of a class with m or more, no
    class of fewer lacking a member, appearances within one round, none missing; the
    peer, on the same labels and epoch length, measured beside (figures in the docs)."""
    codes = _codes(counts, seed=0)
    table = _table(codes, {"kind": "m_per_class", "m": M, "batch_size": BATCH})
    assert table.num_batches == codes.shape[0] // BATCH
    ours: Counter[str] = Counter()
    peer: Counter[str] = Counter()
    worst_spread = {"ours": 0, "peer": 0}
    for seed in range(6):
        for epoch in range(10):
            found = _measure(table.draw(seed, epoch, np.arange(table.num_batches)), codes, counts)
            ours.update(found)
            worst_spread["ours"] = max(worst_spread["ours"], found["spread"])
            assert found["repeats"] == 0 and found["lacking"] == 0
            assert found["spread"] <= 1 and found["missing"] == 0
        found = _measure(_peer_epoch(codes, seed), codes, counts)
        peer.update(found)
        worst_spread["peer"] = max(worst_spread["peer"], found["spread"])
    # The peer draws each group without replacement from a class of m or more, as we do,
    # and with replacement from a smaller one (members missing); its classes are dealt
    # independently each batch, so its spread of appearances is far wider.
    assert peer["repeats"] == 0
    if ((counts > 1) & (counts < M)).any():  # classes of 2 or 3: the peer leaves some out
        assert peer["lacking"] > 0
    assert worst_spread["peer"] > 2 * worst_spread["ours"]


@pytest.mark.parametrize(
    ("m", "batch_size", "classes", "peer_message", "our_message"),
    [
        (3, 32, 66, "m_per_class must divide batch_size", "m must divide batch_size"),
        (
            4,
            32,
            7,
            "m \\* \\(number of unique labels\\) must be >= batch_size",
            "m \\* \\(number of classes with samples\\) must be >= batch_size",
        ),
    ],
)
def test_the_peers_argument_checks_are_refused_the_same_way(
    m: int, batch_size: int, classes: int, peer_message: str, our_message: str
) -> None:
    counts = LONG_TAIL[:classes]
    codes = _codes(counts)
    with pytest.raises(AssertionError, match=peer_message):
        MPerClassSampler(
            torch.from_numpy(codes), m, batch_size=batch_size, length_before_new_iter=codes.shape[0]
        )
    labels = labels_from_list(codes.tolist())
    with pytest.raises(InvalidPlanConfig, match=our_message):
        prepare_plan(
            labels,
            PlanConfig(
                batching=batching_from_json(
                    {"kind": "m_per_class", "m": m, "batch_size": batch_size}
                ),
                definitions={"batches": "batches-v2"},
            ),
        )


def test_a_length_under_one_batch_is_refused_as_no_batch_at_all() -> None:
    """The peer asserts ``length_before_new_iter >= batch_size``; our epoch length is
    ``num_batches``, and fewer than one batch is refused."""
    codes = _codes(LONG_TAIL)
    with pytest.raises(AssertionError):
        MPerClassSampler(
            torch.from_numpy(codes), M, batch_size=BATCH, length_before_new_iter=BATCH - 1
        )
    with pytest.raises(InvalidPlanConfig, match="num_batches should be a positive"):
        PlanConfig(
            batching=batching_from_json({"kind": "m_per_class", "m": M, "batch_size": BATCH}),
            num_batches=0,
            definitions={"batches": "batches-v2"},
        )


def test_pinned_batches() -> None:
    """batches-v2 pinned: a change here is a new version, not a new expected value."""
    codes = _codes((6, 2, 9, 1, 4), seed=5)
    table = _table(codes, {"kind": "m_per_class", "m": 2, "batch_size": 4}, 6)
    assert table.draw(3, 2, np.arange(6)).tolist() == PINNED


PINNED = [
    [16, 20, 7, 3],
    [10, 10, 14, 4],
    [5, 1, 8, 11],
    [10, 10, 13, 12],
    [5, 1, 0, 6],
    [10, 10, 8, 11],
]
