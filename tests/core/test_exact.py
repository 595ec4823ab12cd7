"""``sampleplan.core.exact`` reproduces torch.multinomial's with-replacement stream, bit for bit.

Real torch is the oracle everywhere: random weight vectors of every awkward shape, seeds
inside and beyond 32 bits, random ``[start, stop)`` cuts, and generator states crafted so
that the uniform double is exactly 0, exactly a cumulative weight, or its largest value.
Every backend this interpreter has is checked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sampleplan.core import exact, mt19937
from sampleplan.core.exact import Backend, CumulativeTable, draw_exact_with_replacement

ROOT = Path(__file__).resolve().parents[2]
Weights = npt.NDArray[np.float64]

backends = pytest.mark.parametrize("backend", exact.AVAILABLE_BACKENDS)


def torch_stream(weights: Weights, seed: int, n: int) -> npt.NDArray[np.int64]:
    """The oracle: ``torch.multinomial`` with replacement, float64 weights, a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    tensor = torch.as_tensor(weights, dtype=torch.float64)
    return torch.multinomial(tensor, n, True, generator=generator).numpy()


# --- weight vectors --------------------------------------------------------------------

PROFILES = (
    "uniform",
    "log_uniform",
    "sparse",
    "extreme",
    "ties",
    "trailing_zeros",
    "one_nonzero",
    "subnormal",
    "overflowing_sum",
)


def build_weights(profile: str, size: int, rng: np.random.Generator) -> Weights:
    w: npt.NDArray[Any]
    if profile == "uniform":
        w = rng.random(size)
    elif profile == "log_uniform":
        w = np.exp(rng.uniform(-40.0, 40.0, size))
    elif profile == "sparse":
        w = rng.random(size) * (rng.random(size) < 0.2)
    elif profile == "extreme":  # 1e-300 next to 1e300
        w = 10.0 ** rng.uniform(-300.0, 300.0, size) * (rng.random(size) < 0.7)
    elif profile == "ties":  # inverse class frequency, the service's usual weights
        labels = rng.integers(0, size // 10 + 1, size)
        w = 1.0 / np.bincount(labels)[labels]
    elif profile == "trailing_zeros":  # cum plateaus at 1.0
        w = rng.random(size)
        w[int(rng.integers(1, size + 1)) :] = 0.0
    elif profile == "one_nonzero":
        w = np.zeros(size)
        w[rng.integers(size)] = rng.choice([5e-324, 1.0, 1e300])
    elif profile == "subnormal":
        w = rng.integers(0, 4, size) * 5e-324
    elif profile == "overflowing_sum":  # finite weights whose running sum reaches inf
        w = rng.random(size) * 1.7e308
    else:  # pragma: no cover - a typo in PROFILES
        raise AssertionError(profile)
    if not (w > 0).any():
        w[rng.integers(size)] = 1.0
    return w.astype(np.float64)


@st.composite
def generated_weights(draw: st.DrawFn, max_size: int = 2000) -> Weights:
    profile = draw(st.sampled_from(PROFILES))
    size = draw(st.integers(1, max_size))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return build_weights(profile, size, rng)


awkward_floats = st.one_of(
    st.sampled_from([0.0, -0.0]),
    st.sampled_from([5e-324, 2.2250738585072014e-308, 1e-300, 0.5, 1.0, 3.0, 1e300, 1.79e308]),
    st.floats(min_value=0.0, max_value=1e300, allow_subnormal=True),
)


@st.composite
def adversarial_weights(draw: st.DrawFn) -> Weights:
    """Short vectors of arbitrary non-negative floats (zeros, subnormals, huge values)."""
    w = draw(hnp.arrays(np.float64, st.integers(1, 30), elements=awkward_floats))
    if not (w > 0).any():
        w[draw(st.integers(0, w.shape[0] - 1))] = 1.0
    return w


weight_vectors = st.one_of(generated_weights(), adversarial_weights())

seeds = st.one_of(
    st.integers(0, 2**32 - 1),
    st.integers(2**32, 2**64 - 1),  # seed + epoch beyond 32 bits: only the low bits count
    st.integers(-(2**63), -1),  # torch accepts these too
)


@st.composite
def cuts(draw: st.DrawFn, max_n: int = 3000) -> tuple[int, int, int]:
    """``(n, start, stop)`` with ``2 <= n`` and ``0 <= start <= stop <= n``."""
    n = draw(st.integers(2, max_n))
    start = draw(st.integers(0, n))
    stop = draw(st.integers(start, n))
    return n, start, stop


# --- the stream equals torch's ----------------------------------------------------------


@backends
@settings(max_examples=250, deadline=None)
@given(weights=weight_vectors, seed=seeds, cut=cuts())
def test_slices_equal_torch(
    backend: Backend, weights: Weights, seed: int, cut: tuple[int, int, int]
) -> None:
    n, start, stop = cut
    table = CumulativeTable.from_weights(weights, backend=backend)
    got = draw_exact_with_replacement(table, seed, start, stop, backend=backend)
    expected = torch_stream(weights, seed, n)[start:stop]
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)


@backends
@pytest.mark.parametrize("profile", ["uniform", "ties", "extreme"])
def test_large_table_pages_equal_torch(backend: Backend, profile: str) -> None:
    weights = build_weights(profile, 100_000, np.random.default_rng(7))
    table = CumulativeTable.from_weights(weights, backend=backend)
    seed = 2**32 + 12345
    expected = torch_stream(weights, seed, 300_000)
    for start, stop in [(0, 300_000), (0, 1), (123_457, 123_458), (250_000, 300_000)]:
        got = draw_exact_with_replacement(table, seed, start, stop, backend=backend)
        np.testing.assert_array_equal(got, expected[start:stop])


@backends
def test_single_category_is_always_zero(backend: Backend) -> None:
    table = CumulativeTable.from_weights(np.array([0.25]), backend=backend)
    got = draw_exact_with_replacement(table, 3, 10, 1000, backend=backend)
    np.testing.assert_array_equal(got, np.zeros(990, dtype=np.int64))
    np.testing.assert_array_equal(got, torch_stream(np.array([0.25]), 3, 1000)[10:])


@backends
@pytest.mark.parametrize("start", [0, 1, 5000])
def test_empty_slice(backend: Backend, start: int) -> None:
    table = CumulativeTable.from_weights(np.array([1.0, 2.0]), backend=backend)
    got = draw_exact_with_replacement(table, 0, start, start, backend=backend)
    assert got.dtype == np.int64
    assert got.shape == (0,)


@backends
def test_trailing_zero_weights_are_never_drawn(backend: Backend) -> None:
    weights = np.array([1.0, 2.0, 0.0, 3.0] + [0.0] * 1000)
    table = CumulativeTable.from_weights(weights, backend=backend)
    got = draw_exact_with_replacement(table, 99, 0, 20_000, backend=backend)
    np.testing.assert_array_equal(got, torch_stream(weights, 99, 20_000))
    assert set(np.unique(got).tolist()) == {0, 1, 3}


def test_only_the_low_32_bits_of_the_seed_matter() -> None:
    table = CumulativeTable.from_weights(np.arange(1.0, 50.0))
    low = draw_exact_with_replacement(table, 5, 0, 100)
    for seed in (5 + 2**32, 5 + 2**40, 5 - 2**32):
        np.testing.assert_array_equal(draw_exact_with_replacement(table, seed, 0, 100), low)


def test_backends_build_the_same_table() -> None:
    rng = np.random.default_rng(3)
    for profile in PROFILES:
        weights = build_weights(profile, 5000, rng)
        tables = [
            CumulativeTable.from_weights(weights, backend=b) for b in exact.AVAILABLE_BACKENDS
        ]
        for table in tables[1:]:
            np.testing.assert_array_equal(table.cum, tables[0].cum)
            np.testing.assert_array_equal(table.guide, tables[0].guide)


def test_table_is_immutable() -> None:
    table = CumulativeTable.from_weights(np.array([1.0, 0.0, 3.0]))
    assert table.size == 3
    assert table.cum[-1] == 1.0
    assert table.nbytes >= table.cum.nbytes
    with pytest.raises(ValueError, match="read-only"):
        table.cum[0] = 0.5
    with pytest.raises(ValueError, match="read-only"):
        table.guide[0] = 1


# --- crafted generator states: exact values of u ----------------------------------------
# torch's CPU generator state (torch.Generator.get_state) is the legacy THGenerator POD:
# the_initial_seed u64 @0, left i32 @8, seeded i32 @12, next u64 @16, state[624] u64 @24.
# The next output is tempered state[next] unless ``--left`` hits 0 (then it twists).

_LEFT, _NEXT, _WORDS = 8, 16, 24


def _untemper(y: int) -> int:
    """Inverse of MT19937's output tempering."""
    y ^= y >> 18
    y ^= (y << 15) & 0xEFC60000
    t = y
    for _ in range(5):
        t = y ^ ((t << 7) & 0x9D2C5680)
    y = t & 0xFFFFFFFF
    t = y
    for _ in range(3):
        t = y ^ (t >> 11)
    return t & 0xFFFFFFFF


def crafted_generators(ks: list[int], base_seed: int) -> tuple[torch.Generator, np.random.MT19937]:
    """A torch and a numpy generator whose next draws have the 53-bit integers ``ks``.

    That is, torch's next uniform doubles are ``k * 2**-53``; afterwards both continue
    from the same (crafted) key.
    """
    first = 1  # state words [1, 1 + 2 len(ks)) are overwritten; torch needs left <= 624
    assert 2 * len(ks) <= 624 - first
    bit_generator = np.random.MT19937(0)
    bit_generator.state = {
        "bit_generator": "MT19937",
        "state": {"key": torch_words(base_seed), "pos": 624},
    }
    bit_generator.random_raw(first)  # twist once: the key is now a mid-stream state
    key = np.array(bit_generator.state["state"]["key"], dtype=np.uint32)
    for i, k in enumerate(ks):
        key[first + 2 * i] = _untemper((k >> 32) & 0x1FFFFF)
        key[first + 2 * i + 1] = _untemper(k & 0xFFFFFFFF)
    bit_generator.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": first}}

    generator = torch.Generator().manual_seed(base_seed)
    raw = generator.get_state().numpy().copy()
    raw[_LEFT : _LEFT + 4].view(np.int32)[0] = 625 - first
    raw[_NEXT : _NEXT + 8].view(np.uint64)[0] = first
    raw[_WORDS : _WORDS + 624 * 8].view(np.uint64)[:] = key
    generator.set_state(torch.from_numpy(raw))
    return generator, bit_generator


def torch_words(seed: int) -> npt.NDArray[np.uint32]:
    """The 624 words of ``torch.Generator().manual_seed(seed)``, checking the layout."""
    raw = torch.Generator().manual_seed(seed).get_state().numpy()
    assert raw[_LEFT : _LEFT + 4].view(np.int32)[0] == 1, "torch's generator state layout changed"
    assert raw[_NEXT : _NEXT + 8].view(np.uint64)[0] == 0, "torch's generator state layout changed"
    words = raw[_WORDS : _WORDS + 624 * 8].view(np.uint64)
    assert words[0] == seed & 0xFFFFFFFF, "torch's generator state layout changed"
    return words.astype(np.uint32)


def test_crafted_generators_give_the_uniforms_asked_for() -> None:
    ks = [0, 1, 2**52, 2**53 - 1, 123456789]
    generator, bit_generator = crafted_generators(ks, 11)
    uniforms = torch.empty(len(ks), dtype=torch.float64).uniform_(generator=generator)
    assert uniforms.tolist() == [k * 2.0**-53 for k in ks]
    raw = bit_generator.random_raw(2 * len(ks))
    assert (((raw[0::2] & 0x1FFFFF) << 32) | raw[1::2]).tolist() == ks


@backends
def test_u_zero_draws_index_zero_even_with_zero_weight(backend: Backend) -> None:
    # u == 0.0 happens with probability 2**-53: torch then returns index 0, weight or not.
    weights = np.array([0.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    ks = [0, 2**52, 2**53 - 1, 1, 2**53 // 3]
    generator, bit_generator = crafted_generators(ks, 5)
    expected = torch.multinomial(torch.as_tensor(weights), 12, True, generator=generator).numpy()
    table = CumulativeTable.from_weights(weights, backend=backend)
    got = exact._draw_from_generator(table, bit_generator, 12, backend=backend)
    np.testing.assert_array_equal(got, expected)
    # 0 (u == 0), 2 (u == 1/2 lies in (1/3, 2/3]), 3 (the first 1.0), 1 (tiny u).
    assert got[:4].tolist() == [0, 2, 3, 1]


@st.composite
def uniforms_at_boundaries(draw: st.DrawFn, weights: Weights) -> list[int]:
    """53-bit integers whose uniform hits a cumulative weight or a guide bucket edge exactly."""
    with np.errstate(over="ignore"):
        cum = np.cumsum(weights)
    cum = cum / cum[-1] if np.isfinite(cum[-1]) else np.zeros_like(cum)
    bits = max(0, (weights.shape[0] - 1).bit_length())
    candidates = [0, 1, 2**53 - 1]
    candidates += [int(c * 2.0**53) for c in cum if c < 1.0]  # exact when c * 2**53 is whole
    candidates += [g << (53 - bits) for g in range(1 << min(bits, 8))]
    picked = draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=300))
    return [max(0, min(2**53 - 1, k + draw(st.integers(-1, 1)))) for k in picked]


@backends
@settings(max_examples=120, deadline=None)
@given(data=st.data(), weights=weight_vectors, base_seed=st.integers(0, 2**32 - 1))
def test_exact_boundary_uniforms_equal_torch(
    backend: Backend, data: st.DataObject, weights: Weights, base_seed: int
) -> None:
    ks = data.draw(uniforms_at_boundaries(weights))
    n = max(2, len(ks) + data.draw(st.integers(0, 400)))  # past the crafted words too
    generator, bit_generator = crafted_generators(ks, base_seed)
    expected = torch.multinomial(torch.as_tensor(weights), n, True, generator=generator).numpy()
    table = CumulativeTable.from_weights(weights, backend=backend)
    got = exact._draw_from_generator(table, bit_generator, n, backend=backend)
    np.testing.assert_array_equal(got, expected)


# --- backends and arguments -------------------------------------------------------------


def test_default_backend_is_available() -> None:
    assert exact.BACKEND in exact.AVAILABLE_BACKENDS
    assert "numpy" in exact.AVAILABLE_BACKENDS


_FALLBACK_SCRIPT = """
import json, sys
{prelude}
from sampleplan.core import exact
table = exact.CumulativeTable.from_weights(exact.np.arange(1.0, 300.0))
drawn = exact.draw_exact_with_replacement(table, 77, 1000, 1500)
print(json.dumps([exact.BACKEND, drawn.tolist()]))
"""


@pytest.mark.parametrize(
    ("prelude", "env"),
    [
        ("sys.modules['numba'] = None  # import numba raises ImportError", {}),
        ("", {"NUMBA_DISABLE_JIT": "1"}),
    ],
    ids=["numba-missing", "numba-jit-disabled"],
)
def test_numpy_fallback_when_numba_is_unusable(prelude: str, env: dict[str, str]) -> None:
    if prelude == "" and "numba" not in exact.AVAILABLE_BACKENDS:
        pytest.skip("numba is not installed")
    process = subprocess.run(
        [sys.executable, "-c", _FALLBACK_SCRIPT.format(prelude=prelude)],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    backend, drawn = json.loads(process.stdout)
    assert backend == "numpy"
    assert drawn == torch_stream(np.arange(1.0, 300.0), 77, 1500)[1000:].tolist()


def test_unknown_or_missing_backend_is_rejected() -> None:
    table = CumulativeTable.from_weights(np.ones(3))
    with pytest.raises(ValueError, match="backend should be one of"):
        draw_exact_with_replacement(table, 0, 0, 5, backend="cuda")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("weights", "error", "match"),
    [
        (np.ones(3, dtype=np.float32), TypeError, "float64"),
        (np.array([1, 2, 3]), TypeError, "float64"),
        (np.ones((2, 2)), ValueError, "1-d"),
        (np.ones(0), ValueError, "non-empty"),
        (np.array([1.0, -0.5]), ValueError, "non-negative"),
        (np.array([1.0, np.nan]), ValueError, "finite"),
        (np.array([1.0, np.inf]), ValueError, "finite"),
        (np.zeros(4), ValueError, "positive sum"),
    ],
)
def test_bad_weights_are_rejected(weights: Weights, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        CumulativeTable.from_weights(weights)


@pytest.mark.parametrize(
    ("seed", "start", "stop", "match"),
    [
        (0, 5, 4, "start <= stop"),
        (0, -1, 4, "start <= stop"),
        (2**64, 0, 4, "seed should be in"),
        (-(2**63) - 1, 0, 4, "seed should be in"),
    ],
)
def test_bad_draw_arguments_are_rejected(seed: int, start: int, stop: int, match: str) -> None:
    table = CumulativeTable.from_weights(np.ones(3))
    with pytest.raises(ValueError, match=match):
        draw_exact_with_replacement(table, seed, start, stop)


# --- layouts and cores: partitioned lookups, split draws, jumps ---------------------------

numba_only = pytest.mark.skipif("numba" not in exact.AVAILABLE_BACKENDS, reason="needs numba")


@contextmanager
def partitioned_lookups() -> Iterator[None]:
    """Every table, however small, searched through the partitioned (sorted) path."""
    saved = exact._PARTITION_MIN_BYTES
    exact._PARTITION_MIN_BYTES = 0
    try:
        yield
    finally:
        exact._PARTITION_MIN_BYTES = saved


@numba_only
@settings(max_examples=120, deadline=None)
@given(weights=weight_vectors, seed=seeds, cut=cuts(), threads=st.integers(1, 4))
def test_partitioned_and_split_slices_equal_torch(
    weights: Weights, seed: int, cut: tuple[int, int, int], threads: int
) -> None:
    n, start, stop = cut
    table = CumulativeTable.from_weights(weights)
    expected = torch_stream(weights, seed, n)[start:stop]
    with partitioned_lookups():
        got = draw_exact_with_replacement(table, seed, start, stop, threads=threads)
    np.testing.assert_array_equal(got, expected)
    got = draw_exact_with_replacement(table, seed, start, stop, threads=threads)
    np.testing.assert_array_equal(got, expected)


@numba_only
@settings(max_examples=40, deadline=None)
@given(data=st.data(), weights=weight_vectors, base_seed=st.integers(0, 2**32 - 1))
def test_exact_boundary_uniforms_partitioned_and_split(
    data: st.DataObject, weights: Weights, base_seed: int
) -> None:
    ks = data.draw(uniforms_at_boundaries(weights))
    n = max(2, len(ks) + data.draw(st.integers(0, 400)))
    threads = data.draw(st.integers(1, 3))
    generator, bit_generator = crafted_generators(ks, base_seed)
    expected = torch.multinomial(torch.as_tensor(weights), n, True, generator=generator).numpy()
    table = CumulativeTable.from_weights(weights)
    with partitioned_lookups():
        got = exact._draw_from_generator(table, bit_generator, n, threads=threads)
    np.testing.assert_array_equal(got, expected)


@numba_only
@pytest.mark.parametrize("profile", ["uniform", "ties", "extreme"])
def test_partitioned_table_pages_equal_torch_on_every_core_count(profile: str) -> None:
    # 300_000 categories: 3.5 MB of table, searched through the partitioned path.
    weights = build_weights(profile, 300_000, np.random.default_rng(11))
    table = CumulativeTable.from_weights(weights)
    assert exact._bin_bits(table) > 0
    seed = 2**32 + 99
    expected = torch_stream(weights, seed, 2_500_000)
    pages = [
        (0, 2_500_000),
        (7, 8),
        (1_234_567, 1_234_569),
        (311, 2_000_003),
        (2_499_999, 2_500_000),
    ]
    for start, stop in pages:
        for threads in (1, 2, 3):
            got = draw_exact_with_replacement(table, seed, start, stop, threads=threads)
            np.testing.assert_array_equal(
                got, expected[start:stop], err_msg=f"{start, stop, threads}"
            )


@numba_only
def test_late_page_reached_by_a_jump_equals_torch() -> None:
    # 2e7 draws skipped: 4e7 generator outputs, past the point where jumping is cheaper
    # than twisting. torch reaches the same place with uniform_ (one double per draw).
    start = 20_000_000
    assert 2 * start >= mt19937._JUMP_MIN_OUTPUTS
    weights = build_weights("ties", 5000, np.random.default_rng(3))
    generator = torch.Generator().manual_seed(17)
    torch.empty(start, dtype=torch.float64).uniform_(generator=generator)
    expected = torch.multinomial(torch.as_tensor(weights), 3000, True, generator=generator)
    table = CumulativeTable.from_weights(weights)
    for threads in (1, 2):
        got = draw_exact_with_replacement(table, 17, start, start + 3000, threads=threads)
        np.testing.assert_array_equal(got, expected.numpy())


@numba_only
def test_split_draw_without_idle_helpers_draws_on_the_caller() -> None:
    # Another request holds every helper: the split draw does all parts itself.
    weights = build_weights("uniform", 1000, np.random.default_rng(5))
    table = CumulativeTable.from_weights(weights)
    expected = torch_stream(weights, 8, 50_000)
    exact.configure_parallelism(threads=3, min_draws=2)
    try:
        helpers = exact._parallelism.idle_helpers
        assert helpers.acquire(blocking=False) and helpers.acquire(blocking=False)
        try:
            np.testing.assert_array_equal(
                draw_exact_with_replacement(table, 8, 10, 50_000), expected[10:]
            )
        finally:
            helpers.release()
            helpers.release()
        np.testing.assert_array_equal(
            draw_exact_with_replacement(table, 8, 10, 50_000), expected[10:]
        )
    finally:
        exact.configure_parallelism()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"threads": 0}, "threads should be"), ({"min_draws": 1}, "min_draws should be")],
)
def test_bad_parallelism_is_rejected(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        exact.configure_parallelism(**kwargs)
    table = CumulativeTable.from_weights(np.ones(3))
    with pytest.raises(ValueError, match="threads should be"):
        draw_exact_with_replacement(table, 0, 0, 5, threads=0)


@numba_only
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_split_draws_work_in_a_forked_child() -> None:
    # The parent's helper threads do not survive a fork; the child gets fresh ones.
    weights = build_weights("uniform", 500, np.random.default_rng(9))
    table = CumulativeTable.from_weights(weights)
    expected = torch_stream(weights, 4, 20_000)
    np.testing.assert_array_equal(
        draw_exact_with_replacement(table, 4, 0, 20_000, threads=2), expected
    )
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a multi-threaded process may deadlock: that
        # hazard (helper threads missing in the child) is what this test checks.
        warnings.simplefilter("ignore", DeprecationWarning)
        child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        same = np.array_equal(draw_exact_with_replacement(table, 4, 0, 20_000, threads=2), expected)
        os._exit(0 if same else 1)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            pytest.fail("the split draw in the forked child hung")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0
