"""Optional numba compilation for the sampling core's kernels.

The core's hot loops are written as plain Python functions over numpy arrays. When numba
imports (and ``NUMBA_DISABLE_JIT`` is not set) they are compiled; otherwise callers use
their vectorised numpy twins. :data:`NUMBA` is the imported module or ``None``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Final

__all__ = ["NUMBA", "compile_kernel"]


def _load_numba() -> Any | None:
    try:
        numba: Any = importlib.import_module("numba")
    except ImportError:
        return None
    if numba.config.DISABLE_JIT:  # the kernels would run as (very slow) Python
        return None
    return numba


#: numba, when it is importable and its JIT is enabled; else ``None``.
NUMBA: Final = _load_numba()


def compile_kernel(kernel: Callable[..., Any]) -> Any:
    """``kernel`` compiled with numba (``nogil``, cached on disk); needs :data:`NUMBA`.

    nogil=True: concurrent requests, and the two halves of a split draw, run on several
    cores at once. No ``parallel=True``: numba's thread pools are either not thread-safe
    (workqueue) or not fork-safe (GNU OpenMP); ``exact.py`` splits large draws over its
    own bounded pool instead.

    NOTE: numba's on-disk cache notices edits to a kernel's own file only. A kernel that
    calls a kernel of another module keeps its cached machine code when only the other
    module changes; kernels that call each other therefore live in one module.
    """
    assert NUMBA is not None
    try:
        # cache=True: the compile (seconds) is paid once per machine, not per process.
        return NUMBA.njit(cache=True, nogil=True)(kernel)
    except RuntimeError:  # no writable cache directory (read-only install, no home)
        return NUMBA.njit(nogil=True)(kernel)
