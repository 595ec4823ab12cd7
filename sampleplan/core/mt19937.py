"""MT19937 exactly as torch's CPU generator runs it: seeding, output words, skip, jump.

torch's ``Generator().manual_seed(seed)`` is MT19937 seeded with ``init_genrand(seed &
0xffffffff)``; each ``uniform_real_distribution<double>`` takes two consecutive 32-bit
outputs ``r1, r2`` and uses the 53-bit integer ``k = (r1 & 0x1FFFFF) << 32 | r2``
(``u = k * 2**-53``). This module produces those ``k`` ("draw words") and moves a
generator state forward without producing anything. A state is numpy's: ``(key, pos)``,
624 uint32 words and the index of the next output, 624 meaning "twist first".

* :func:`fill_draw_words` writes the next draw words into an int64 array. The twist runs
  in two split loops without modulo (as in the reference implementation) and tempering
  runs over whole blocks, so both vectorise.
* :func:`advance` skips ``count`` outputs: by twisting without tempering when that is
  cheap, else by :func:`jump`.
* :func:`jump` moves a state ``count`` outputs ahead in O(degree**2 / word) whatever
  ``count`` (Haramoto, Matsumoto, Nishimura, Panneton, L'Ecuyer, "Efficient jump ahead
  for F2-linear random number generators", INFORMS J. Computing 20(3), 2008): the state
  after ``J`` single-word steps ``T`` is ``p(T)`` applied to the state, with
  ``p(x) = x**J mod phi(x)`` and ``phi`` the characteristic polynomial of ``T``.

Kernels are compiled by numba when it is available (:data:`sampleplan.core.jit.NUMBA`);
without it, :func:`advance` and :func:`fill_draw_words` fall back to numpy's own
MT19937, and :func:`jump` is unavailable (:data:`JUMP_AVAILABLE`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from sampleplan.core.jit import NUMBA, compile_kernel

__all__ = [
    "JUMP_AVAILABLE",
    "MT19937State",
    "advance",
    "fill_draw_words",
    "jump",
    "state_for_seed",
]

Key = npt.NDArray[np.uint32]
#: A generator state as numpy's MT19937 holds it: ``(key, pos)``.
MT19937State = tuple[Key, int]

_N: Final = 624
_M: Final = 397
_MATRIX_A: Final = 0x9908B0DF
_UPPER: Final = 0x80000000
_LOWER: Final = 0x7FFFFFFF
_LOW21: Final = 0x1FFFFF

# NOTE [The characteristic polynomial of MT19937]
#     ``phi`` is the minimal polynomial of the one-word step ``T`` on the 19937 bits of
#     state that matter (the upper bit of the oldest word and the 623 other words). It is
#     irreducible, so the sequence of any single output bit has ``phi`` as its minimal
#     polynomial: Berlekamp-Massey over 2 * 19937 such bits recovers it, which is how these
#     exponents were found and how ``tests/core/test_mt19937.py`` checks them against
#     numpy's generator. It has 135 terms; the largest below 19937 is 19314, so a reduction
#     can clear 64 bits above the degree at a time without touching the bits it clears.
# fmt: off
_PHI_EXPONENTS: Final = (
    19937, 19314, 19087, 18860, 18691, 18633, 18406, 18237, 18179, 18068, 17952, 17841,
    17783, 17725, 17498, 17445, 17329, 17271, 17160, 17044, 16933, 16875, 16822, 16817,
    16595, 16590, 16537, 16421, 16368, 16363, 16252, 16141, 16136, 16025, 15967, 15909,
    15682, 15629, 15576, 15513, 15455, 15349, 15344, 15228, 15117, 15059, 15006, 15001,
    14953, 14779, 14774, 14721, 14605, 14552, 14547, 14436, 14325, 14320, 14209, 14151,
    14093, 13866, 13813, 13760, 13697, 13639, 13533, 13528, 13412, 13301, 13243, 13190,
    13185, 13137, 12963, 12958, 12905, 12789, 12736, 12731, 12673, 12620, 12509, 12504,
    12393, 12335, 12277, 11997, 11944, 11881, 11838, 11717, 11712, 11611, 11485, 11384,
    11374, 11321, 11215, 11157, 11147, 11089, 10920, 10761, 10693, 10128, 9969, 9901,
    9505, 8206, 7979, 7752, 7583, 7525, 7477, 7129, 6569, 6337, 5661, 4753, 4362, 4135,
    3908, 3681, 3454, 3227, 3000, 2773, 2493, 1870, 1643, 1585, 1416, 1189, 0,
)
# fmt: on
_PHI_DEGREE: Final = 19937

#: Skipping more outputs than this costs more by twisting than by jumping (both about 3 ms
#: at 2**25 here; a jump costs that at any distance, 1e12 outputs included).
_JUMP_MIN_OUTPUTS: Final = 1 << 25


def state_for_seed(seed: int) -> MT19937State:
    """The state ``torch.Generator().manual_seed(seed)`` starts from (a fresh key copy)."""
    # RandomState's integer seeding is init_genrand, as torch's; MT19937(seed) is not.
    seeded = np.random.RandomState(operator.index(seed) & 0xFFFFFFFF).get_state(legacy=False)
    return np.array(seeded["state"]["key"], dtype=np.uint32), int(seeded["state"]["pos"])


def _numpy_generator(key: Key, pos: int) -> np.random.MT19937:
    generator = np.random.MT19937(0)
    generator.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": pos}}
    return generator


def _read_back(generator: np.random.MT19937, key: Key) -> int:
    state = generator.state["state"]
    key[:] = state["key"]
    return int(state["pos"])


# --- kernels ---------------------------------------------------------------------------
# Plain functions, compiled below when numba is importable. uint32 arithmetic stays in
# uint32 (explicit np.uint32 constants), which lets LLVM vectorise the loops.


def _twist_kernel(key: Key) -> None:
    """One block twist: ``key`` becomes the next 624 untempered words."""
    upper, lower, matrix = np.uint32(_UPPER), np.uint32(_LOWER), np.uint32(_MATRIX_A)
    one, zero = np.uint32(1), np.uint32(0)
    # Split where ``t + M`` wraps: no modulo, and no loop reads a word it wrote less than
    # 227 words earlier, so each loop vectorises.
    for t in range(_N - _M):
        y = (key[t] & upper) | (key[t + 1] & lower)
        key[t] = key[t + _M] ^ (y >> one) ^ ((zero - (y & one)) & matrix)
    for t in range(_N - _M, _N - 1):
        y = (key[t] & upper) | (key[t + 1] & lower)
        key[t] = key[t + _M - _N] ^ (y >> one) ^ ((zero - (y & one)) & matrix)
    y = (key[_N - 1] & upper) | (key[0] & lower)
    key[_N - 1] = key[_M - 1] ^ (y >> one) ^ ((zero - (y & one)) & matrix)


def _fill_draw_words_kernel(key: Key, pos: int, out: npt.NDArray[np.int64]) -> int:
    """Writes ``len(out)`` draw words from ``(key, pos)``; returns the new ``pos``."""
    n = out.shape[0]
    words = np.empty(2 * _N + 2, dtype=np.uint32)  # tempered outputs not yet paired
    have = 0
    done = 0
    while done < n:
        if pos == _N:
            _twist(key)
            pos = 0
        # Temper the rest of the block (or what the remaining draws need) in one pass.
        take = min(_N - pos, 2 * (n - done) - have)
        for i in range(take):
            y = key[pos + i]
            y ^= y >> np.uint32(11)
            y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
            y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
            y ^= y >> np.uint32(18)
            words[have + i] = y
        pos += take
        have += take
        pairs = have >> 1
        for i in range(pairs):
            out[done + i] = ((np.int64(words[2 * i]) & _LOW21) << 32) | np.int64(words[2 * i + 1])
        done += pairs
        if have & 1:  # a draw straddles two blocks: keep its first word
            words[0] = words[have - 1]
        have &= 1
    return pos


def _skip_kernel(key: Key, pos: int, count: int) -> int:
    """Skips ``count`` outputs by twisting (tempering is skipped too); returns ``pos``."""
    if count <= _N - pos:
        return pos + count
    remaining = count - (_N - pos)
    twists = (remaining + _N - 1) // _N
    for _ in range(twists):
        _twist(key)
    return remaining - _N * (twists - 1)


def _reduce_kernel(poly: npt.NDArray[np.uint64], exponents: npt.NDArray[np.int64]) -> None:
    """``poly`` (any number of words) becomes ``poly mod phi``, in its first words."""
    degree = exponents[0]
    top = poly.shape[0] * 64
    # Clear 64 bits [p, p + 64) above the degree at a time, highest first: x**(p + b) ==
    # x**(p - degree + b) * (phi - x**degree) mod phi lands at least 623 bits lower.
    p = degree + ((top - degree - 1) // 64) * 64
    while p >= degree:
        word, shift = p >> 6, p & 63
        chunk = poly[word] >> np.uint64(shift)
        if shift and word + 1 < poly.shape[0]:
            chunk |= poly[word + 1] << np.uint64(64 - shift)
        if chunk:
            # Clear the chunk's bits (only those at or above the degree exist here).
            poly[word] ^= chunk << np.uint64(shift)
            if shift and word + 1 < poly.shape[0]:
                poly[word + 1] ^= chunk >> np.uint64(64 - shift)
            for t in range(1, exponents.shape[0]):
                at = p - degree + exponents[t]
                w, s = at >> 6, at & 63
                poly[w] ^= chunk << np.uint64(s)
                if s:
                    poly[w + 1] ^= chunk >> np.uint64(64 - s)
        p -= 64


def _spread_kernel(half: np.uint64) -> np.uint64:
    """The 32 bits of ``half`` at the even bit positions of a 64-bit word (squaring)."""
    x = half & np.uint64(0xFFFFFFFF)
    x = (x | (x << np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
    x = (x | (x << np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
    x = (x | (x << np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    x = (x | (x << np.uint64(2))) & np.uint64(0x3333333333333333)
    return (x | (x << np.uint64(1))) & np.uint64(0x5555555555555555)


def _jump_polynomial_kernel(
    bits: npt.NDArray[np.uint8], exponents: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint64]:
    """``x**e mod phi`` for ``e`` given by its binary digits ``bits``, most significant first.

    Bit ``i`` of the result's words is the coefficient of ``x**i``.
    """
    words = (exponents[0] + 63) // 64
    poly = np.zeros(words, dtype=np.uint64)
    square = np.zeros(2 * words + 1, dtype=np.uint64)
    poly[0] = np.uint64(1)
    for bit in range(bits.shape[0]):
        # poly = poly**2 mod phi: over F2, squaring spreads the bits to even positions.
        square[:] = 0
        for w in range(words):
            square[2 * w] = _spread(poly[w])
            square[2 * w + 1] = _spread(poly[w] >> np.uint64(32))
        if bits[bit]:  # times x: one more bit up
            for w in range(2 * words, 0, -1):
                square[w] = (square[w] << np.uint64(1)) | (square[w - 1] >> np.uint64(63))
            square[0] <<= np.uint64(1)
        _reduce(square, exponents)
        poly[:] = square[:words]
    return poly


def _step_kernel(window: Key, oldest: int) -> int:
    """One step ``T`` of a circular 624-word window; returns the new oldest slot."""
    nxt = oldest + 1 if oldest + 1 < _N else 0
    far = oldest + _M if oldest + _M < _N else oldest + _M - _N
    y = (window[oldest] & np.uint32(_UPPER)) | (window[nxt] & np.uint32(_LOWER))
    window[oldest] = (
        window[far]
        ^ (y >> np.uint32(1))
        ^ ((np.uint32(0) - (y & np.uint32(1))) & np.uint32(_MATRIX_A))
    )
    return nxt


def _apply_polynomial_kernel(key: Key, poly: npt.NDArray[np.uint64]) -> None:
    """``key`` (a window, oldest word first) becomes ``T(p(T) key)``, oldest word first."""
    acc = np.zeros(_N, dtype=np.uint32)
    oldest = 0
    top = poly.shape[0] * 64 - 1
    while top >= 0 and not (poly[top >> 6] >> np.uint64(top & 63)) & np.uint64(1):
        top -= 1
    # Horner: acc = T(acc) + c_i key, from the highest coefficient down.
    for i in range(top, -1, -1):
        oldest = _step(acc, oldest)
        if (poly[i >> 6] >> np.uint64(i & 63)) & np.uint64(1):
            head = _N - oldest
            for t in range(head):
                acc[oldest + t] ^= key[t]
            for t in range(oldest):
                acc[t] ^= key[head + t]
    # One step more: see NOTE [Jumping from any state].
    oldest = _step(acc, oldest)
    for t in range(_N - oldest):
        key[t] = acc[oldest + t]
    for t in range(oldest):
        key[_N - oldest + t] = acc[t]


# NOTE [Jumping from any state]
#     The one-word step ``T`` acts on all 624 * 32 bits of a window, but forgets the lower
#     31 bits of the oldest word at once: its characteristic polynomial is x**31 * phi,
#     and the window space splits into ker(T) (those 31 bits) and ker(phi(T)). ``p(T)``
#     with ``p = x**J mod phi`` equals ``T**J`` on ker(phi(T)) only; on ker(T) it is
#     multiplication by p(0). A window that came out of a twist lies in ker(phi(T)), but a
#     seeded or hand-made one need not. Jumping ``J - 1`` by polynomial and taking one
#     real step after it is exact for every window: the step removes whatever the
#     polynomial did to ker(T).

_PHI: Final = np.asarray(_PHI_EXPONENTS, dtype=np.int64)
# The names kernels call each other by: compiled when numba is there (never called else).
_twist: Any = _twist_kernel
_spread: Any = _spread_kernel
_reduce: Any = _reduce_kernel
_step: Any = _step_kernel
_skip: Callable[[Key, int, int], int] | None = None
_fill_draw_words: Callable[[Key, int, npt.NDArray[np.int64]], int] | None = None
_jump_polynomial: (
    Callable[[npt.NDArray[np.uint8], npt.NDArray[np.int64]], npt.NDArray[np.uint64]] | None
) = None
_apply_polynomial: Callable[[Key, npt.NDArray[np.uint64]], None] | None = None
if NUMBA is not None:
    _twist = compile_kernel(_twist_kernel)
    _spread = compile_kernel(_spread_kernel)
    _reduce = compile_kernel(_reduce_kernel)
    _step = compile_kernel(_step_kernel)
    _skip = compile_kernel(_skip_kernel)
    _fill_draw_words = compile_kernel(_fill_draw_words_kernel)
    _jump_polynomial = compile_kernel(_jump_polynomial_kernel)
    _apply_polynomial = compile_kernel(_apply_polynomial_kernel)

#: Whether :func:`jump` can run (it needs the compiled kernels).
JUMP_AVAILABLE: Final = NUMBA is not None


def _check(key: Key, pos: int, count: int) -> None:
    if key.dtype != np.uint32 or key.shape != (_N,) or not key.flags.c_contiguous:
        raise ValueError("key should be a contiguous uint32 array of 624 words")
    if not 0 <= pos <= _N:
        raise ValueError(f"pos should be in [0, 624], but got pos={pos}")
    if count < 0:
        raise ValueError(f"count should be non-negative, but got count={count}")


def jump(key: Key, pos: int, count: int) -> int:
    """Moves ``(key, pos)`` ``count`` outputs ahead by a jump polynomial; returns ``pos``.

    ``key`` is changed in place. The cost (a few milliseconds) does not depend on
    ``count``. Needs numba (:data:`JUMP_AVAILABLE`).
    """
    count = operator.index(count)
    _check(key, pos, count)
    if _jump_polynomial is None or _apply_polynomial is None:
        raise RuntimeError("MT19937 jump-ahead needs numba")
    if count == 0:
        return pos
    # ``key`` is the window the next output ``key[pos]`` comes from (after a twist when
    # pos == 624): the wanted window starts ``pos + count`` steps after its oldest word.
    steps = pos + count
    bits = np.array([int(b) for b in bin(steps - 1)[2:]], dtype=np.uint8)
    _apply_polynomial(key, _jump_polynomial(bits, _PHI))
    return 0


def advance(key: Key, pos: int, count: int) -> int:
    """Moves ``(key, pos)`` ``count`` outputs ahead, the cheaper way; returns ``pos``."""
    count = operator.index(count)
    _check(key, pos, count)
    if _skip is None:
        generator = _numpy_generator(key, pos)
        generator.random_raw(count, output=False)
        return _read_back(generator, key)
    if count >= _JUMP_MIN_OUTPUTS:
        return jump(key, pos, count)
    return int(_skip(key, pos, count))


def fill_draw_words(key: Key, pos: int, out: npt.NDArray[np.int64]) -> int:
    """Writes the next ``len(out)`` draw words ``(r1 & 0x1FFFFF) << 32 | r2``; returns ``pos``.

    ``key`` is advanced in place; ``out`` must be a contiguous int64 array.
    """
    _check(key, pos, 0)
    if _fill_draw_words is None:
        generator = _numpy_generator(key, pos)
        raw = generator.random_raw(2 * out.shape[0])
        np.bitwise_and(raw[0::2], _LOW21, out=raw[0::2])
        out[:] = ((raw[0::2] << np.uint64(32)) | raw[1::2]).view(np.int64)
        return _read_back(generator, key)
    return int(_fill_draw_words(key, pos, out))
