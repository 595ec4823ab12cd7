"""numba, when it is there: the compiled kernels of the core load through here.

numba is a dependency of the server, not of the client (whose offline fallback reuses
the core), so every kernel has a numpy twin and :data:`NUMBA` is ``None`` without it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Final


def load_numba() -> Any | None:
    """The numba module, or ``None`` when it is missing or disabled."""
    try:
        numba: Any = importlib.import_module("numba")
    except ImportError:
        return None
    if numba.config.DISABLE_JIT:  # the kernels would run as (very slow) Python
        return None
    return numba


def compile_kernel(numba: Any, kernel: Callable[..., Any]) -> Any:
    """``kernel`` compiled in nopython mode, releasing the GIL, cached on disk if it can be."""
    # nogil=True: concurrent requests run the kernels on several cores at once. No
    # parallel=True: numba's thread pools are either not thread-safe (workqueue) or not
    # fork-safe (GNU OpenMP), and the service already draws on every core.
    try:
        # cache=True: the compile (about a second) is paid once per machine, not per process.
        return numba.njit(cache=True, nogil=True)(kernel)
    except RuntimeError:  # no writable cache directory (read-only install, no home)
        return numba.njit(nogil=True)(kernel)


#: The numba module when the core compiles its kernels, else ``None``.
NUMBA: Final = load_numba()
