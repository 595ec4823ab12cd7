"""``sampleplan.core.mt19937`` against numpy's MT19937 (torch's generator, as tested in test_exact).

numpy's generator stepping one output at a time is the oracle for draw words, skips and
jumps; numpy's own ``jumped()`` (a fixed jump of 2**128) checks the jump polynomial
arithmetic independently, and Berlekamp-Massey on numpy's outputs rederives the
characteristic polynomial the jumps are computed modulo.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampleplan.core import mt19937

needs_jump = pytest.mark.skipif(not mt19937.JUMP_AVAILABLE, reason="jump-ahead needs numba")
Key = npt.NDArray[np.uint32]


def numpy_generator(key: Key, pos: int) -> np.random.MT19937:
    generator = np.random.MT19937(0)
    generator.state = {"bit_generator": "MT19937", "state": {"key": key.copy(), "pos": pos}}
    return generator


def stepped(key: Key, pos: int, count: int) -> np.random.MT19937:
    """numpy's generator ``count`` outputs after ``(key, pos)``."""
    generator = numpy_generator(key, pos)
    generator.random_raw(count, output=False)
    return generator


def same_future(key: Key, pos: int, generator: np.random.MT19937, words: int = 2000) -> None:
    """``(key, pos)`` and ``generator`` produce the same next outputs (across a twist)."""
    np.testing.assert_array_equal(
        numpy_generator(key, pos).random_raw(words), generator.random_raw(words)
    )


@st.composite
def states(draw: st.DrawFn) -> tuple[Key, int]:
    """Seeded states, states after some outputs, and arbitrary keys (not from a twist)."""
    kind = draw(st.sampled_from(["seeded", "stepped", "arbitrary"]))
    key, pos = mt19937.state_for_seed(draw(st.integers(0, 2**32 - 1)))
    if kind == "stepped":
        generator = stepped(key, pos, draw(st.integers(0, 5000)))
        state = generator.state["state"]
        return np.array(state["key"], dtype=np.uint32), int(state["pos"])
    if kind == "arbitrary":
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        return rng.integers(0, 2**32, 624, dtype=np.uint32), draw(st.integers(0, 624))
    return key, pos


def test_seeded_state_is_torchs() -> None:
    key, pos = mt19937.state_for_seed(2**32 + 5)
    assert pos == 624
    assert key[0] == 5  # init_genrand puts the (low 32 bits of the) seed first
    np.testing.assert_array_equal(key, np.random.RandomState(5).get_state()[1])


@settings(max_examples=60, deadline=None)
@given(state=states(), count=st.integers(0, 3000))
def test_draw_words_equal_numpys_outputs(state: tuple[Key, int], count: int) -> None:
    key, pos = state
    expected = numpy_generator(key, pos)
    raw = expected.random_raw(2 * count)
    out = np.empty(count, dtype=np.int64)
    pos = mt19937.fill_draw_words(key, pos, out)
    np.testing.assert_array_equal(out, ((raw[0::2] & 0x1FFFFF) << np.uint64(32)) | raw[1::2])
    same_future(key, pos, expected)


@settings(max_examples=60, deadline=None)
@given(state=states(), count=st.integers(0, 20_000))
def test_advance_equals_stepping(state: tuple[Key, int], count: int) -> None:
    key, pos = state
    expected = stepped(key, pos, count)
    pos = mt19937.advance(key, pos, count)
    same_future(key, pos, expected)


@needs_jump
@settings(max_examples=60, deadline=None)
@given(state=states(), count=st.integers(0, 100_000))
def test_jump_equals_stepping_from_any_state(state: tuple[Key, int], count: int) -> None:
    key, pos = state
    expected = stepped(key, pos, count)
    pos = mt19937.jump(key, pos, count)
    same_future(key, pos, expected)


@needs_jump
def test_jump_equals_stepping_up_to_1e9_outputs() -> None:
    # One numpy generator steps through sorted random offsets up to 1e9 outputs; every
    # offset is also reached by one jump from the start.
    rng = np.random.default_rng(20261130)
    offsets = np.sort(rng.integers(0, 1_000_000_000, 6))
    start_key, start_pos = mt19937.state_for_seed(int(rng.integers(0, 2**32)))
    walker = numpy_generator(start_key, start_pos)
    walked = 0
    for offset in offsets.tolist():
        walker.random_raw(offset - walked, output=False)
        walked = offset
        key = start_key.copy()
        pos = mt19937.jump(key, start_pos, offset)
        after = numpy_generator(key, pos)
        probe = walker.random_raw(700)  # across a twist of both
        walked += 700
        np.testing.assert_array_equal(after.random_raw(700), probe, err_msg=f"offset {offset}")
        key = start_key.copy()
        pos = mt19937.advance(key, start_pos, offset)  # whichever way is cheaper
        np.testing.assert_array_equal(numpy_generator(key, pos).random_raw(700), probe)


@needs_jump
@pytest.mark.parametrize("seed", [0, 5, 2**32 - 1])
def test_jump_of_2_pow_128_agrees_with_numpys_jumped(seed: int) -> None:
    # numpy's jumped() moves a fresh state's window 2**128 one-word steps ahead and keeps
    # it as a circular buffer whose oldest word is at ``pos``. It does not take the extra
    # step of NOTE [Jumping from any state], so the lower 31 bits of that oldest word (the
    # bits the recurrence never reads again) may differ; every other bit must agree.
    key, pos = mt19937.state_for_seed(seed)
    theirs = numpy_generator(key, pos).jumped().state["state"]
    oldest = int(theirs["pos"])
    window = np.concatenate([theirs["key"][oldest:], theirs["key"][:oldest]])
    # A fresh state's next output is the word after the window: 624 steps are its own.
    pos = mt19937.jump(key, pos, 2**128 - 624)
    assert pos == 0
    np.testing.assert_array_equal(key[1:], window[1:])
    assert key[0] >> 31 == window[0] >> 31


def berlekamp_massey(bits: npt.NDArray[np.uint8]) -> list[int]:
    """Exponents of the minimal polynomial of a bit sequence over F2, highest first."""
    n = bits.shape[0]
    c = np.zeros(n + 1, dtype=np.uint8)
    b = np.zeros(n + 1, dtype=np.uint8)
    c[0] = b[0] = 1
    length, last = 0, -1
    for i in range(n):
        window = bits[i - length : i][::-1] if length else bits[:0]
        discrepancy = (int(bits[i]) + int(np.dot(c[1 : length + 1], window))) & 1
        if discrepancy:
            previous = c.copy()
            shift = i - last
            c[shift:] ^= b[: n + 1 - shift]
            if 2 * length <= i:
                length, last, b = i + 1 - length, i, previous
    return [length - e for e in range(length + 1) if c[e]]


def test_characteristic_polynomial_is_recovered_from_numpys_outputs() -> None:
    outputs = np.random.MT19937(7).random_raw(2 * 19937 + 64)
    exponents = berlekamp_massey((outputs & np.uint64(1)).astype(np.uint8))
    assert tuple(exponents) == mt19937._PHI_EXPONENTS


@pytest.mark.parametrize(
    ("pos", "count", "match"),
    [(625, 0, "pos should be"), (-1, 0, "pos should be"), (0, -1, "count should be")],
)
def test_bad_states_are_rejected(pos: int, count: int, match: str) -> None:
    key, _ = mt19937.state_for_seed(0)
    with pytest.raises(ValueError, match=match):
        mt19937.advance(key, pos, count)
    with pytest.raises(ValueError, match="key should be"):
        mt19937.advance(key.astype(np.int64), 0, 0)  # type: ignore[arg-type]
